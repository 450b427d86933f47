"""A volume's write lease in etcd, and the fencing token it gives its holder.

One connector at a time mounts a volume read-write. It holds the key
``/sofs/CLUSTER_ID/owner/VOLUME_UUID``, created only if absent on a lease of ``ttl_s``
seconds, whose value names the holder. The key's create revision is the holder's *fencing
token*: etcd revisions only grow, so every later holder has a higher one. The holder declares
it to the storage nodes (wire op FENCE, :mod:`chunkstore.net.fences`), which then refuse the
writes of any earlier holder, even one that does not know it lost the lease.

The holder renews every third of the TTL and counts the lease as held only until its last
renewal plus two thirds of the TTL on its own monotonic clock (:mod:`.heldkey`), so a paused
or cut-off holder stops writing before etcd can give the volume to another.
"""

from __future__ import annotations

import logging

from chunkstore.authority.etcd import EtcdClient
from chunkstore.authority.heldkey import HeldKey
from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.errors import VolumeLeased

log = logging.getLogger("sofs.volumelease")

DEFAULT_TTL_S = 10


def owner_key(cluster_id: str, volume_uuid: str) -> bytes:
    return f"/sofs/{cluster_id}/owner/{volume_uuid}".encode()


class VolumeLease:
    """This connector's lease on one volume (see the module docstring)."""

    def __init__(self, etcd: EtcdClient, cluster_id: str, volume_uuid: str, holder: str,
                 ttl_s: int = DEFAULT_TTL_S, clock: Clock = SYSTEM_CLOCK) -> None:
        self._held = HeldKey(etcd, owner_key(cluster_id, volume_uuid), holder, ttl_s, clock)
        self.key = self._held.key
        self.holder = holder
        self.ttl_s = self._held.ttl_s
        self.token = 0  # the fencing token while held (the key's create revision)

    def acquire(self) -> int:
        """Take the lease; the fencing token. VolumeLeased if someone else holds it."""
        taken = self._held.take()
        if not taken.ours or taken.kv is None:
            raise VolumeLeased(f"the volume is held by {taken.holder} (lease "
                               f"{self.key.decode()}): it is mounted read-write there; take "
                               "it over only once that host is down or fenced")
        self.token = taken.kv.create_revision
        log.info("volume lease %s taken: fencing token %d", self.key.decode(), self.token)
        return self.token

    def valid(self) -> bool:
        """Whether the lease surely still holds (on this process's monotonic clock)."""
        return self._held.valid()

    def renew(self) -> bool:
        """Renew when due; whether the lease still holds. False for good once it ran out
        or could not be renewed in time (the volume may be someone else's now: stop
        writing)."""
        held = self._held.renew()
        if not held:
            log.error("volume lease %s lost: no more writes", self.key.decode())
        return held

    def release(self) -> None:
        """Give the volume up (a clean unmount): the next holder may take it at once."""
        self._held.release()
