"""Node liveness in etcd: each storage node keeps a lease-bound key; its absence is etcd's word.

Key ``/sofs/CLUSTER_ID/alive/NODE_ID`` (:func:`alive_key`), value a small JSON document (node
id, address, pid), bound to a lease of ``ttl_s`` seconds that the node renews every third of
it (:class:`NodeLease`, run by ``sofs-node``). When the node dies, hangs, or loses etcd's
majority, it stops renewing; after at most ``ttl_s`` etcd ends the lease and deletes the key.
From then on the node is *suspect* for everyone at once, whoever could or could not reach it.
The healer marks it down only once its down delay has passed with the key still absent
(counted on its own monotonic clock from when it first saw the key gone, :class:`Absence`);
one client's failed pings never decide it.

A node that stops cleanly revokes its lease (the key goes at once: it is suspect at once, and
down only after the delay, like any other). A node whose lease expired while it was cut off
takes a new one as soon as etcd answers again.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from chunkstore.authority.etcd import EtcdClient
from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.errors import ChunkStoreError, EtcdUnavailable

log = logging.getLogger("sofs.liveness")

DEFAULT_TTL_S = 10
RETRY_S = 1.0


def alive_prefix(cluster_id: str) -> bytes:
    return f"/sofs/{cluster_id}/alive/".encode()


def alive_key(cluster_id: str, node_id: str) -> bytes:
    return alive_prefix(cluster_id) + node_id.encode()


@dataclass(frozen=True)
class AliveRecord:
    """What a live node's key says."""

    node: str
    address: str
    pid: int
    lease: int


def alive_nodes(etcd: EtcdClient, cluster_id: str) -> dict[str, AliveRecord]:
    """Node id -> its record, for every node whose lease etcd holds now (EtcdUnavailable
    when etcd does not answer: then nobody knows, and nothing may be decided)."""
    out = {}
    prefix = alive_prefix(cluster_id)
    for kv in etcd.get_prefix(prefix):
        node_id = kv.key[len(prefix):].decode(errors="replace")
        try:
            doc = json.loads(kv.value)
            out[node_id] = AliveRecord(node_id, str(doc["address"]), int(doc["pid"]), kv.lease)
        except (ValueError, KeyError, TypeError):
            out[node_id] = AliveRecord(node_id, "?", 0, kv.lease)  # alive all the same
    return out


class NodeLease:
    """A node's side: hold the lease and the key. :meth:`step` does one thing and says how
    long to wait before the next; a thread of the node loops over it."""

    def __init__(self, etcd: EtcdClient, cluster_id: str, node_id: str, address: str,
                 ttl_s: int = DEFAULT_TTL_S) -> None:
        self._etcd = etcd
        self._key = alive_key(cluster_id, node_id)
        self._value = json.dumps({"node": node_id, "address": address,
                                  "pid": os.getpid()}).encode()
        self.ttl_s = max(2, int(ttl_s))
        self.lease = 0
        self.holding = False  # the key is in etcd (as of the last renewal)

    def step(self) -> float:
        try:
            if self.lease == 0:
                self.lease = self._etcd.grant(self.ttl_s)
                self._etcd.put(self._key, self._value, lease=self.lease)
                log.info("alive in etcd (lease %x, %d s)", self.lease, self.ttl_s)
            elif self._etcd.keepalive(self.lease) <= 0:
                log.warning("lease %x expired (etcd was out of reach): taking a new one",
                            self.lease)
                self.lease, self.holding = 0, False
                return 0.0
            self.holding = True
            return self.ttl_s / 3
        except EtcdUnavailable as e:
            if self.holding:
                log.warning("etcd unreachable, cannot renew the liveness lease: %s", e)
            self.holding = False
            return RETRY_S
        except ChunkStoreError as e:  # a refused request: try again from a new lease
            log.error("liveness lease: %s", e)
            self.lease, self.holding = 0, False
            return RETRY_S

    def release(self) -> None:
        """Revoke the lease (clean stop): the key goes now. Best effort."""
        if self.lease:
            try:
                self._etcd.revoke(self.lease)
            except ChunkStoreError as e:
                log.info("could not revoke the liveness lease: %s", e)
            self.lease, self.holding = 0, False


class Absence:
    """The healer's side: how long each node has been absent from etcd, on a monotonic
    clock, from when this process first saw it gone (so a wall-clock step changes nothing)."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._since: dict[str, float] = {}

    def update(self, members: list[str], alive: set[str]) -> dict[str, float]:
        """Seconds absent per member node that etcd holds no key of (the others: none)."""
        now = self._clock.monotonic()
        for node_id in list(self._since):
            if node_id in alive or node_id not in members:
                del self._since[node_id]
        for node_id in members:
            if node_id not in alive:
                self._since.setdefault(node_id, now)
        return {node_id: now - since for node_id, since in self._since.items()}
