"""One leader per cluster for a job (the healer and its scrubs), elected on an etcd lease.

The key ``/sofs/CLUSTER_ID/leader/JOB`` (:func:`leader_key`) is created, only if absent, on a
lease of ``ttl_s`` seconds; its value names the holder (host, pid, data directory). The holder
renews the lease every third of its TTL; every other candidate stands by and tries again at
each of its steps, so it takes over within one step of the lease running out (a holder that
died, hung or lost etcd). A holder that resigns (a clean stop) revokes the lease: the next
candidate takes over at once.

A holder counts itself leader only until its last renewal plus two thirds of ``ttl_s``, on its
own monotonic clock (:mod:`.heldkey`): if it cannot renew (etcd away, a long pause), it stops
acting before etcd can hand the key to anyone else.
"""

from __future__ import annotations

import logging
import os
import socket

from chunkstore.authority.etcd import EtcdClient
from chunkstore.authority.heldkey import HeldKey
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
        self._key = HeldKey(etcd, leader_key(cluster_id, job), candidate, ttl_s, clock)
        self.candidate = candidate
        self.leader: str | None = None  # who holds it, as last seen

    def holds(self) -> bool:
        """Whether this candidate leads now: renews when due, or tries to take the key."""
        if self._key.lease:
            if self._key.renew():
                return True
            log.warning("the %s leader lease is gone: standing by", self._key.key.decode())
        try:
            taken = self._key.take()
        except ChunkStoreError as e:  # etcd away: nobody can be elected now
            log.info("cannot stand for %s: %s", self._key.key.decode(), e)
            return False
        if taken.ours:
            log.info("leading %s", self._key.key.decode())
        elif taken.holder != self.leader:
            log.info("standing by: %s leads %s", taken.holder, self._key.key.decode())
        self.leader = self.candidate if taken.ours else taken.holder
        return taken.ours

    def resign(self) -> None:
        """Give the key up now (best effort)."""
        self._key.release()
