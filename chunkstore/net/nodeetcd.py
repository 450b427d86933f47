"""What a storage node does in etcd: follow the cluster map, and keep its liveness lease.

Both run beside :meth:`Node.serve` when the node's directory has an etcd binding
(:mod:`chunkstore.authority.binding`, written by ``sofsctl node init`` for a cluster made with
``--etcd``), each in a thread of its own (etcd's calls block).

:class:`MapFollower` reads the map once, then watches its key from that revision: each
committed change reaches the node within the watch's latency (well under a second), whether or
not the admin that made it can reach the node. Adoption is :meth:`Node.adopt_map`, the same as
a MAP_PUT: only a newer epoch of the node's own cluster is kept, and requests made with an
older one are then refused (StaleMap). When etcd is unreachable the node keeps serving with the
last map it has and tries again every :data:`RETRY_S`; it never makes a map of its own.

:func:`etcd_holds` checks the maps clients offer (MAP_PUT, heartbeats): only one etcd holds
is taken, so a client without etcd cannot move the node past etcd's map.

:func:`keep_alive` holds the node's key under ``/sofs/CLUSTER/alive/``
(:class:`chunkstore.authority.liveness.NodeLease`); a clean stop revokes it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import trio

from chunkstore.authority import mapstore
from chunkstore.authority.etcd import EtcdClient
from chunkstore.authority.liveness import NodeLease
from chunkstore.errors import ChunkStoreError, ClusterMismatch, EtcdUnavailable
from chunkstore.placement.clustermap import ClusterMap

log = logging.getLogger("sofs.node.etcd")

RETRY_S = 1.0


class MapFollower:
    """Follows ``cluster_id``'s map in etcd and hands each one to ``adopt`` (a trio
    coroutine function taking the map document and where it came from)."""

    def __init__(self, etcd: EtcdClient, cluster_id: str, adopt, retry_s: float = RETRY_S):
        self._etcd = etcd
        self._cluster = cluster_id
        self._adopt = adopt
        self._retry_s = retry_s
        self._stop = threading.Event()
        self.revision = 0  # the revision of the last map seen in etcd
        self.reachable = False

    async def run(self) -> None:
        """Until cancelled (the node stops)."""
        token = trio.lowlevel.current_trio_token()
        try:
            await trio.to_thread.run_sync(self._loop, token, abandon_on_cancel=True)
        finally:
            self._stop.set()

    def _hand_over(self, token: trio.lowlevel.TrioToken, stored: mapstore.StoredMap) -> None:
        self.revision = max(self.revision, stored.revision)
        try:
            trio.from_thread.run(self._adopt, stored.cmap.to_json().encode(), "etcd",
                                 trio_token=token)
        except ChunkStoreError as e:  # another cluster's map, two maps of one epoch
            log.error("map epoch %d from etcd refused: %s", stored.cmap.epoch, e)

    def _loop(self, token: trio.lowlevel.TrioToken) -> None:
        while not self._stop.is_set():
            try:
                if self.revision == 0:
                    stored = mapstore.read(self._etcd, self._cluster)
                    if stored is not None:
                        self._hand_over(token, stored)
                if not self.reachable:
                    log.info("following the cluster map in etcd (from revision %d)",
                             self.revision)
                self.reachable = True
                for stored in mapstore.follow(self._etcd, self._cluster, self.revision,
                                              self._stop):
                    self._hand_over(token, stored)
            except EtcdUnavailable as e:
                if self.reachable:
                    log.warning("etcd unreachable, serving with the last map: %s", e)
                self.reachable = False
                self._stop.wait(self._retry_s)
            except ChunkStoreError as e:  # a canceled watch (history compacted), a bad map
                log.warning("following the cluster map again from a fresh read: %s", e)
                self.revision = 0
                self._stop.wait(self._retry_s)
            except (trio.RunFinishedError, trio.Cancelled):
                return


async def keep_alive(lease: NodeLease) -> None:
    """Renew ``lease`` until cancelled, then revoke it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            stop.wait(lease.step())

    try:
        await trio.to_thread.run_sync(loop, abandon_on_cancel=True)
    finally:
        stop.set()
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(lease.release)


def etcd_holds(etcd: EtcdClient, cluster_id: str) -> Callable[[ClusterMap], None]:
    """The check of a MAP_PUT on a node that follows etcd: the map must be one etcd holds
    (its epoch or an earlier one of it), so no client can move the node past etcd's map;
    ClusterMismatch otherwise, EtcdUnavailable when etcd cannot say (no map change then)."""
    def check(new: ClusterMap) -> None:
        stored = mapstore.read(etcd, cluster_id)
        if stored is None or stored.cmap.epoch < new.epoch or (
                stored.cmap.epoch == new.epoch
                and stored.cmap.fingerprint() != new.fingerprint()):
            held = "none" if stored is None else f"epoch {stored.cmap.epoch}"
            raise ClusterMismatch(f"map epoch {new.epoch} refused: this node follows the "
                                  f"cluster map in etcd, which holds {held}; map changes go "
                                  "through etcd (sofsctl node/disk commands)")
    return check
