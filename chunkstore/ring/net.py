"""NetRing: the RING over storage nodes (``sofs-node`` daemons), as a client sees it.

The data path is :class:`~chunkstore.ring.datapath.RingStore`'s (quorum puts in parallel to every
owner, k data fragments read first, degraded reads, end-to-end verification); here each disk
is a :class:`~chunkstore.net.client.RemoteDisk` and placement comes from a
:class:`~chunkstore.placement.clustermap.ClusterMap`.

Client state directory (``state_dir``)::

    clustermap.json   the newest cluster map this client has seen (a higher epoch always wins)
    cluster.secret    the cluster secret (mode 0600), shared by every node and client
    repairlog/        chunks this client saw degraded (read by ``repair``)

Several clients may share one state directory (a mount per volume, sofsctl): each opens it
under an *instance* name, and then keeps its own lock (``run/net-<instance>.lock``) and repair
log (``repairlog-<instance>/``); without one, the directory is held whole (``cluster.lock``,
``repairlog/``).

Failure detection: a heartbeat thread PINGs every member node each ``heartbeat_s`` seconds
(answer within ``ping_timeout_s``). A node that does not answer, or a disk that fails a
request, is *suspect* at once: its disks leave the available set, so reads go to the others
and writes to the quorum without waiting on timeouts. A suspect node that answers again is
taken back. :meth:`NetRing.unreachable_for` says for how long each node has been unreachable,
measured on the injected clock's monotonic time (a step of the wall clock changes no
duration); :meth:`NetRing.suspects` gives the same as wall-clock times, for display. Turning
a long-suspect node into ``down`` in the map (so its arcs are rebuilt elsewhere) is the
healer's decision (:mod:`chunkstore.healing.healer`, through :attr:`NetRing.membership`), not
the data path's.

Map epochs: every connection announces the client's epoch. A node with a newer map answers
StaleMap; the client then fetches the node's map, adopts it and retries the request once
(:meth:`RingStore.call`, for the data path and the repair sweep alike; pieces written under
the old placement are found by reads on any member disk and moved by repair). Heartbeats also
compare epochs: a node behind is sent our map, a node ahead gives us its.

A state directory with an etcd binding (``etcd.json``, :mod:`chunkstore.authority.binding`)
gives :attr:`NetRing.etcd`: the healer then takes liveness and map changes from etcd.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable

from chunkstore.api import Membership
from chunkstore.authority import binding
from chunkstore.authority.etcd import EtcdClient
from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.errors import ChunkStoreError
from chunkstore.net.client import RemoteDisk
from chunkstore.net.wire import load_secret
from chunkstore.placement.clustermap import ClusterMap, split_address
from chunkstore.placement.layout import MAP_FILE, REPAIR_LOG_DIR, RUN_DIR, SECRET_FILE
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.localcluster import ClusterLock
from chunkstore.ring.repairlog import RepairLog

log = logging.getLogger("sofs.netring")


def offer_map(cmap: ClusterMap, put: Callable[[str, bytes], int]) -> dict[str, str]:
    """Offer ``cmap`` to every node it lists but ``out`` ones, with ``put(node id, document)
    -> the node's epoch after``; node id -> why it did not take it."""
    doc = cmap.to_json().encode()
    failed: dict[str, str] = {}
    for node in cmap.nodes:
        if node.state == "out":
            continue
        try:
            epoch = put(node.id, doc)
            if epoch < cmap.epoch:
                failed[node.id] = f"kept epoch {epoch}"
        except ChunkStoreError as e:
            failed[node.id] = str(e)
    return failed


class NetRing(RingStore):
    """A client of the networked RING (see module docstring). Use :meth:`open`.

    ``clock`` times the heartbeats and how long nodes have been unreachable (tests pass a
    :class:`~chunkstore.clock.FakeClock`)."""

    def __init__(self, cmap: ClusterMap, secret: bytes, state_dir: str | os.PathLike, *,
                 workers: int | None = None, timeout: float = 10.0, heartbeat_s: float = 1.0,
                 ping_timeout_s: float = 2.0, instance: str | None = None,
                 clock: Clock = SYSTEM_CLOCK, etcd: EtcdClient | None = None,
                 fence: tuple[bytes, int] | None = None) -> None:
        self.state_dir = self.data_dir = os.fspath(state_dir)
        self.etcd = etcd  # the cluster's etcd, if it has one (the healer asks it)
        # (volume id, lease token) every connection declares (FENCE): the nodes refuse this
        # client's writes and deletes once a newer holder of the volume declared a higher one
        self.fence = fence
        self.instance = instance
        self._secret = secret
        self.timeout = timeout
        self.heartbeat_s = heartbeat_s
        self.ping_timeout_s = ping_timeout_s
        self._clock = clock
        self._init_disks()
        # one process at a time serves this state directory (its repair log); sofsctl asks
        # that process (the mount) instead, as with a LocalRing
        self._lock = ClusterLock(self.state_dir, os.path.join(RUN_DIR, f"net-{instance}.lock")) \
            if instance else ClusterLock(self.state_dir)
        self._map_lock = threading.RLock()
        self._remote: dict[str, RemoteDisk] = {}
        self._pingers: dict[str, RemoteDisk] = {}  # node id -> short-timeout handle for PING
        self._suspect: dict[str, float] = {}  # node id -> unreachable since (clock.monotonic())
        self.cmap = cmap
        self.ring = cmap.ring_view()
        try:
            self._apply_map(cmap)
            self.repair_log = RepairLog(os.path.join(
                self.data_dir, f"{REPAIR_LOG_DIR}-{instance}" if instance else REPAIR_LOG_DIR))
        except BaseException:
            for rd in self._remote.values():
                rd.close()
            self._lock.release()
            raise
        self._start_pool(workers or min(64, 2 * max(1, len(self._remote))))
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeats, name="netring-heartbeat",
                                      daemon=True)
        self._beat.start()

    @property
    def membership(self) -> Membership:
        return self

    @classmethod
    def open(cls, state_dir: str | os.PathLike, **kw: Any) -> "NetRing":
        """Open the client state in ``state_dir`` (its map and secret, see module docstring)."""
        state_dir = os.fspath(state_dir)
        cmap = ClusterMap.load(os.path.join(state_dir, MAP_FILE))
        secret = load_secret(os.path.join(state_dir, SECRET_FILE))
        if "etcd" not in kw:
            kw["etcd"] = binding.client(state_dir)
        return cls(cmap, secret, state_dir, **kw)

    # -- the map ------------------------------------------------------------------------

    def _apply_map(self, cmap: ClusterMap) -> None:
        """Make ``cmap`` current: placement, the member disks and their connections."""
        with self._map_lock:
            members = set(cmap.member_disks())
            for disk_id in list(self._remote):
                if disk_id not in members:
                    gone = self._remote.pop(disk_id)
                    with self._disks_lock:
                        self._disks.pop(disk_id, None)
                        self._down.pop(disk_id, None)
                    gone.close()
            for disk_id in sorted(members):
                node = cmap.node_of(disk_id)
                host, port = split_address(node.address)
                rd: RemoteDisk | None = self._remote.get(disk_id)
                if rd is not None and (rd.host, rd.port) != (host, port):
                    rd.close()
                    rd = None
                if rd is None:
                    rd = RemoteDisk(host, port, disk_id, self._secret, self.timeout,
                                    epoch=cmap.epoch, clock=self._clock, fence=self.fence)
                    self._remote[disk_id] = rd
                    with self._disks_lock:
                        if node.id in self._suspect:
                            self._down[disk_id] = f"node {node.id} unreachable"
                        else:
                            self._disks[disk_id] = rd
                else:
                    rd.set_epoch(cmap.epoch)
            for node_id in list(self._pingers):
                if node_id not in {cmap.node_of(d).id for d in members}:
                    self._pingers.pop(node_id).close()
            self.cmap = cmap
            self.ring = cmap.ring_view()

    def adopt(self, cmap: ClusterMap) -> bool:
        """Take ``cmap`` if it is newer than ours (saved to the state directory first)."""
        with self._map_lock:
            if cmap.cluster_id != self.cmap.cluster_id or cmap.epoch <= self.cmap.epoch:
                return False
            cmap.save(os.path.join(self.state_dir, MAP_FILE))
            self._apply_map(cmap)
        log.info("cluster map epoch %d adopted", cmap.epoch)
        return True

    def publish(self, cmap: ClusterMap) -> dict[str, str]:
        """Adopt ``cmap`` and offer it to every member node; node id -> error for the nodes
        that did not take it (unreachable ones get it from the next heartbeat)."""
        if cmap.epoch > self.cmap.epoch:
            self.adopt(cmap)
        return offer_map(cmap, lambda node_id, doc: self._pinger(node_id).put_map(doc))

    def refresh_map(self, from_disk: str | None = None) -> bool:
        """Fetch a newer map from a node (the one serving ``from_disk``, else any)."""
        candidates = [self.cmap.node_of(from_disk).id] if from_disk else []
        candidates += [n.id for n in self.cmap.nodes if n.state != "out"]
        for node_id in candidates:
            try:
                doc = self._pinger(node_id).get_map()
                if doc:
                    return self.adopt(ClusterMap.from_json(doc))
            except ChunkStoreError as e:
                log.info("cannot fetch the cluster map from node %s: %s", node_id, e)
        return False

    def _pinger(self, node_id: str) -> RemoteDisk:
        with self._map_lock:
            rd = self._pingers.get(node_id)
            if rd is None:
                node = self.cmap.node(node_id)
                disks = [d.id for d in self.cmap.disks if d.node == node_id]
                host, port = split_address(node.address)
                rd = RemoteDisk(host, port, disks[0] if disks else "none", self._secret,
                                self.ping_timeout_s, max_connections=2, clock=self._clock)
                self._pingers[node_id] = rd
            return rd

    # -- disks ----------------------------------------------------------------------------

    def disk_ids(self) -> list[str]:
        return sorted(self._remote)

    def mark_down(self, disk_id: str, reason: str) -> None:
        """Stop using a disk until the heartbeat (or repair) finds it answering again."""
        with self._disks_lock:
            self._disks.pop(disk_id, None)
            if disk_id in self._remote:
                self._down[disk_id] = reason

    def set_fence(self, volume_id: bytes, token: int) -> dict[str, int | str]:
        """Declare a new lease token for the volume to every member disk's node (a takeover,
        before the first write): disk id -> the node's token after, or why it did not answer
        (it learns the token from this client's first connection to it)."""
        with self._map_lock:
            self.fence = (volume_id, token)
            remotes = dict(self._remote)
        out: dict[str, int | str] = {}
        for disk_id, rd in remotes.items():
            try:
                out[disk_id] = rd.set_fence(volume_id, token)
            except ChunkStoreError as e:
                out[disk_id] = str(e)
        return out

    def revive_disk(self, disk_id: str) -> bool:
        return self._take_back(disk_id, self._remote.get(disk_id))

    def unreachable_for(self) -> dict[str, float]:
        """Node id -> seconds since it stopped answering (monotonic: wall-clock steps do not
        count)."""
        now = self._clock.monotonic()
        with self._map_lock:
            return {node_id: now - since for node_id, since in self._suspect.items()}

    def suspects(self) -> dict[str, float]:
        """Node id -> wall-clock time (unix) since which it has not answered: now minus
        :meth:`unreachable_for`, for display."""
        now = self._clock.time()
        return {node_id: now - age for node_id, age in self.unreachable_for().items()}

    # -- heartbeats -----------------------------------------------------------------------

    def heartbeat_once(self) -> None:
        """PING every member node once: suspect the silent, take back the answering, and
        settle map epochs both ways."""
        for node in list(self.cmap.nodes):
            if node.state == "out":
                continue
            try:
                pong = self._pinger(node.id).ping(self.cmap.epoch)
            except ChunkStoreError as e:
                self._suspect_node(node.id, str(e))
                continue
            self._node_answers(node.id)
            if pong.epoch > self.cmap.epoch:
                self.refresh_map(None)
            elif pong.epoch < self.cmap.epoch:
                try:
                    self._pinger(node.id).put_map(self.cmap.to_json().encode())
                except ChunkStoreError as e:
                    log.info("node %s did not take map epoch %d: %s", node.id,
                             self.cmap.epoch, e)

    def _suspect_node(self, node_id: str, why: str) -> None:
        with self._map_lock:
            if node_id not in self._suspect:
                self._suspect[node_id] = self._clock.monotonic()
                log.warning("node %s is unreachable: %s", node_id, why)
            disks = [d for d, rd in self._remote.items()
                     if self.cmap.node_of(d).id == node_id]
        for d in disks:
            self.mark_down(d, f"node {node_id} unreachable: {why}")

    def _node_answers(self, node_id: str) -> None:
        with self._map_lock:
            was = self._suspect.pop(node_id, None)
            disks = [d for d in self._remote if self.cmap.node_of(d).id == node_id]
        with self._disks_lock:
            down = [d for d in disks if d in self._down]
        for d in down:
            self.revive_disk(d)
        if was is not None:
            log.info("node %s answers again after %.0f s", node_id, self._clock.monotonic() - was)

    def _heartbeats(self) -> None:
        while not self._clock.wait(self._stop, self.heartbeat_s):
            try:
                self.heartbeat_once()
            except Exception:  # never let the detector die
                log.exception("heartbeat round failed")

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._stop.set()
        self._beat.join(timeout=30)
        self._close_disks()
        for rd in list(self._remote.values()) + list(self._pingers.values()):
            rd.close()
        if self.etcd is not None:
            self.etcd.close()
        self._lock.release()

    def __repr__(self) -> str:
        return (f"NetRing({self.state_dir!r}, epoch={self.cmap.epoch}, "
                f"disks={len(self._remote)}, down={sorted(self._down)})")
