"""One leader per cluster for a job (the healer and its scrubs), elected on an etcd lease.

The key ``/sofs/CLUSTER_ID/leader/JOB`` (:func:`leader_key`) is created, only if absent, on a
lease of ``ttl_s`` seconds; its value names the holder (host, pid, data directory). The holder
renews the lease every third of its TTL; every other candidate stands by and tries again at
each of its steps, so it takes over within one step of the lease running out (a holder that
died, hung or lost etcd). A holder that resigns (a clean stop) revokes the lease: the next
candidate takes over at once.

A holder counts itself leader only until its last renewal plus ``ttl_s`` minus a margin, on
its own monotonic clock: if it cannot renew (etcd away, a long pause), it stops acting before
etcd can hand the key to anyone else.
"""

from __future__ import annotations

import logging
import os
import socket

from chunkstore.authority.etcd import EtcdClient
from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.errors import ChunkStoreError

log = logging.getLogger("sofs.election")

DEFAULT_TTL_S = 10


def leader_key(cluster_id: str, job: str) -> bytes:
    return f"/sofs/{cluster_id}/leader/{job}".encode()


def candidate_name(data_dir: str) -> str:
    return f"{socket.gethostname()} pid {os.getpid()} {data_dir}"


class Election:
    """This process's candidacy for ``job`` (see the module docstring)."""

    def __init__(self, etcd: EtcdClient, cluster_id: str, job: str, candidate: str,
                 ttl_s: int = DEFAULT_TTL_S, clock: Clock = SYSTEM_CLOCK) -> None:
        self._etcd = etcd
        self._key = leader_key(cluster_id, job)
        self.candidate = candidate
        self.ttl_s = max(2, int(ttl_s))
        self._clock = clock
        self._lease = 0
        self._renewed = 0.0  # monotonic time of the last successful grant or renewal
        self.leader: str | None = None  # who holds it, as last seen

    def _valid(self) -> bool:
        return self._lease != 0 and \
            self._clock.monotonic() < self._renewed + self.ttl_s * 2 / 3

    def holds(self) -> bool:
        """Whether this candidate leads now: renews when due, or tries to take the key."""
        try:
            if self._lease and self._clock.monotonic() >= self._renewed + self.ttl_s / 3:
                now = self._clock.monotonic()
                if self._etcd.keepalive(self._lease) > 0:
                    self._renewed = now
                else:
                    log.warning("the %s leader lease ran out: standing by", self._key.decode())
                    self._lease = 0
            if not self._lease:
                self._try_take()
        except ChunkStoreError as e:  # etcd away: lead only while the lease surely holds
            if self._lease and not self._valid():
                log.warning("cannot renew the leader lease (%s): standing by", e)
                self._lease = 0
        return self._valid()

    def _try_take(self) -> None:
        now = self._clock.monotonic()
        lease = self._etcd.grant(self.ttl_s)
        made, there = self._etcd.create(self._key, self.candidate.encode(), lease=lease)
        if made:
            self._lease, self._renewed, self.leader = lease, now, self.candidate
            log.info("leading %s", self._key.decode())
            return
        self._etcd.revoke(lease)
        held_by = there.value.decode(errors="replace") if there is not None else "?"
        if held_by != self.leader:
            log.info("standing by: %s leads %s", held_by, self._key.decode())
        self.leader = held_by

    def resign(self) -> None:
        """Give the key up now (best effort)."""
        if self._lease:
            try:
                self._etcd.revoke(self._lease)
            except ChunkStoreError as e:
                log.info("could not revoke the leader lease: %s", e)
            self._lease = 0
