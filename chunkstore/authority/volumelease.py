"""A volume's write lease in etcd, and the fencing token it gives its holder.

One connector at a time mounts a volume read-write. It holds the key
``/sofs/CLUSTER_ID/owner/VOLUME_UUID``, created only if absent on a lease of ``ttl_s``
seconds, whose value names the holder. The key's create revision is the holder's *fencing
token*: etcd revisions only grow, so every later holder has a higher one. The holder declares
it to the storage nodes (wire op FENCE, :mod:`chunkstore.net.fences`), which then refuse the
writes of any earlier holder, even one that does not know it lost the lease.

The holder renews every third of the TTL and counts the lease as held only until its last
renewal plus two thirds of the TTL on its own monotonic clock (:meth:`VolumeLease.valid`), so
a paused or cut-off holder stops writing before etcd can give the volume to another.
"""

from __future__ import annotations

import logging

from chunkstore.authority.etcd import EtcdClient
from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.errors import ChunkStoreError, VolumeLeased

log = logging.getLogger("sofs.volumelease")

DEFAULT_TTL_S = 10


def owner_key(cluster_id: str, volume_uuid: str) -> bytes:
    return f"/sofs/{cluster_id}/owner/{volume_uuid}".encode()


class VolumeLease:
    """This connector's lease on one volume (see the module docstring)."""

    def __init__(self, etcd: EtcdClient, cluster_id: str, volume_uuid: str, holder: str,
                 ttl_s: int = DEFAULT_TTL_S, clock: Clock = SYSTEM_CLOCK) -> None:
        self._etcd = etcd
        self.key = owner_key(cluster_id, volume_uuid)
        self.holder = holder
        self.ttl_s = max(2, int(ttl_s))
        self._clock = clock
        self._lease = 0
        self._renewed = 0.0
        self.token = 0  # the fencing token while held (the key's create revision)

    def acquire(self) -> int:
        """Take the lease; the fencing token. VolumeLeased if someone else holds it."""
        now = self._clock.monotonic()
        lease = self._etcd.grant(self.ttl_s)
        made, there = self._etcd.create(self.key, self.holder.encode(), lease=lease)
        if not made:
            self._etcd.revoke(lease)
            who = there.value.decode(errors="replace") if there is not None else "?"
            raise VolumeLeased(f"the volume is held by {who} (lease {self.key.decode()}): it "
                               "is mounted read-write there; take it over only once that "
                               "host is down or fenced")
        kv, _ = self._etcd.get(self.key)
        if kv is None or kv.lease != lease:  # expired at once (a TTL shorter than the trip)
            raise VolumeLeased(f"the lease on {self.key.decode()} was lost while taken")
        self._lease, self._renewed, self.token = lease, now, kv.create_revision
        log.info("volume lease %s taken: fencing token %d", self.key.decode(), self.token)
        return self.token

    def valid(self) -> bool:
        """Whether the lease surely still holds (on this process's monotonic clock)."""
        return self._lease != 0 and \
            self._clock.monotonic() < self._renewed + self.ttl_s * 2 / 3

    def renew(self) -> bool:
        """Renew when due; whether the lease still holds. False for good once etcd says it
        ran out (the volume may be someone else's now: stop writing)."""
        if not self._lease:
            return False
        if self._clock.monotonic() >= self._renewed + self.ttl_s / 3:
            now = self._clock.monotonic()
            try:
                if self._etcd.keepalive(self._lease) > 0:
                    self._renewed = now
                else:
                    log.error("volume lease %s ran out: no more writes", self.key.decode())
                    self._lease = 0
            except ChunkStoreError as e:  # etcd away: valid only while surely held
                log.warning("cannot renew volume lease %s: %s", self.key.decode(), e)
        if self._lease and not self.valid():
            log.error("volume lease %s not renewed in time: no more writes",
                      self.key.decode())
            self._lease = 0
        return self._lease != 0

    def release(self) -> None:
        """Give the volume up (a clean unmount): the next holder may take it at once."""
        if self._lease:
            try:
                self._etcd.revoke(self._lease)
            except ChunkStoreError as e:
                log.info("could not revoke volume lease %s: %s", self.key.decode(), e)
            self._lease = 0
