"""A key held in etcd on a lease, by one process at a time: what an elected leader
(:mod:`.election`) and a volume's writer (:mod:`.volumelease`) both hold.

:meth:`HeldKey.take` creates the key only if it is absent, on a new lease of ``ttl_s``
seconds; :meth:`HeldKey.renew` renews the lease every third of its TTL. The holder counts the
key as held only until its last renewal plus two thirds of the TTL, on its own monotonic clock
(:meth:`HeldKey.valid`): a holder that cannot renew (etcd away, a long pause) stops counting
itself one before etcd can let anyone else take the key. Once etcd says the lease ran out,
the key is lost for good (taking it again is a new :meth:`take`, by whoever comes first).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from chunkstore.authority.etcd import EtcdClient, KeyValue
from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.errors import ChunkStoreError

log = logging.getLogger("sofs.heldkey")


@dataclass(frozen=True)
class Taken:
    """The outcome of :meth:`HeldKey.take`: ours (``kv`` is our key) or someone else's."""

    ours: bool
    kv: KeyValue | None  # the key as etcd holds it (None: it vanished meanwhile)

    @property
    def holder(self) -> str:
        return self.kv.value.decode(errors="replace") if self.kv is not None else "?"


class HeldKey:
    """One key this process may hold (see the module docstring)."""

    def __init__(self, etcd: EtcdClient, key: bytes, value: str, ttl_s: int,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.etcd = etcd
        self.key = key
        self.value = value
        self.ttl_s = max(2, int(ttl_s))
        self._clock = clock
        self.lease = 0
        self._renewed = 0.0  # monotonic time of the last grant or renewal

    def take(self) -> Taken:
        """Create the key on a new lease if it is absent (EtcdUnavailable: etcd away)."""
        now = self._clock.monotonic()
        lease = self.etcd.grant(self.ttl_s)
        made, there = self.etcd.create(self.key, self.value.encode(), lease=lease)
        if not made:
            self.etcd.revoke(lease)
            return Taken(False, there)
        kv, _ = self.etcd.get(self.key)
        if kv is None or kv.lease != lease:  # ran out at once (a TTL shorter than the trip)
            return Taken(False, kv)
        self.lease, self._renewed = lease, now
        return Taken(True, kv)

    def valid(self) -> bool:
        """Whether the key surely is still ours (on this process's monotonic clock)."""
        return self.lease != 0 and \
            self._clock.monotonic() < self._renewed + self.ttl_s * 2 / 3

    def renew(self) -> bool:
        """Renew when due; whether the key is still ours. False for good once etcd says
        the lease ran out, or once it could not be renewed in time."""
        if not self.lease:
            return False
        if self._clock.monotonic() >= self._renewed + self.ttl_s / 3:
            now = self._clock.monotonic()
            try:
                if self.etcd.keepalive(self.lease) > 0:
                    self._renewed = now
                else:
                    log.warning("the lease of %s ran out", self.key.decode())
                    self.lease = 0
            except ChunkStoreError as e:  # etcd away: ours only while surely held
                log.warning("cannot renew the lease of %s: %s", self.key.decode(), e)
        if self.lease and not self.valid():
            log.warning("the lease of %s was not renewed in time", self.key.decode())
            self.lease = 0
        return self.lease != 0

    def release(self) -> None:
        """Give the key up now (best effort): the next taker may have it at once."""
        if self.lease:
            try:
                self.etcd.revoke(self.lease)
            except ChunkStoreError as e:
                log.info("could not revoke the lease of %s: %s", self.key.decode(), e)
            self.lease = 0
