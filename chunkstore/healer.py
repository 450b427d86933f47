"""The healer: turns failure detection into map changes, and map changes into rebuilds.

Run by one long-lived client of a networked RING (the mount process does it by default), it
loops over :meth:`Healer.step`:

* a node suspect (unreachable) for ``down_after_s`` seconds is marked ``down`` in a new map
  epoch, published to every node: its arcs move to the other disks;
* a ``down`` node that answers again is marked ``up`` (its pieces become owners' pieces again,
  the copies rebuilt meanwhile become extras that repair removes);
* after any map change, and while the repair log names degraded chunks, a repair sweep
  (:func:`chunkstore.repair.repair`) rebuilds what the new placement lacks and removes what
  it no longer wants: rebuild, rebalance after ``node add`` and draining are all this sweep.

The sweep is idempotent, so a restart simply sweeps again (resumable). Progress (chunks done,
total, bytes rebuilt, rate, ETA) is kept in :attr:`Healer.status` for ``sofsctl status``.
Two healers on one cluster are safe but wasteful: a map change two of them make at the same
epoch is refused by the nodes for the second (ClusterMismatch), which then re-reads the map.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ChunkStoreError
from .netring import NetRing
from .repair import RepairReport, repair

log = logging.getLogger("sofs.healer")

DEFAULT_DOWN_AFTER_S = 300.0


@dataclass
class RebuildStatus:
    """What the healer is doing, for status displays."""

    state: str = "idle"              # idle | rebuilding
    epoch: int = 0                   # map epoch the last sweep worked for
    chunks_done: int = 0
    chunks_total: int = 0
    started: float = 0.0
    finished: float = 0.0
    last_report: dict[str, Any] = field(default_factory=dict)
    sweeps: int = 0

    def rate(self) -> float:
        """Chunks per second of the sweep running (or last run)."""
        end = time.time() if self.state == "rebuilding" else self.finished
        return self.chunks_done / max(end - self.started, 1e-3) if self.started else 0.0

    def eta_s(self) -> float | None:
        r = self.rate()
        if self.state != "rebuilding" or r <= 0:
            return None
        return (self.chunks_total - self.chunks_done) / r

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rate_chunks_s"] = self.rate()
        d["eta_s"] = self.eta_s()
        return d


class Healer:
    def __init__(self, ring: NetRing, *, down_after_s: float = DEFAULT_DOWN_AFTER_S) -> None:
        self.ring = ring
        self.down_after_s = down_after_s
        self.status = RebuildStatus()
        self._swept_epoch = 0
        self._lock = threading.Lock()

    def update_map(self) -> bool:
        """Mark long-unreachable nodes down and answering ones up; True if the map changed."""
        cmap = new = self.ring.cmap
        suspects = self.ring.suspects()
        now = time.time()
        for node in cmap.nodes:
            since = suspects.get(node.id)
            if node.state == "up" and since is not None and now - since >= self.down_after_s:
                log.warning("node %s unreachable for %.0f s: marking it down; its data is "
                            "rebuilt elsewhere", node.id, now - since)
                new = new.set_node_state(node.id, "down")
            elif node.state == "down" and since is None:
                log.info("node %s answers again: marking it up", node.id)
                new = new.set_node_state(node.id, "up")
        if new is cmap:
            return False
        failed = self.ring.publish(new)
        if failed:
            log.warning("map epoch %d not taken by %s", new.epoch, failed)
        return True

    def needs_sweep(self) -> bool:
        """After a map change; or when chunks are noted degraded and every node answers (while
        a node is unreachable a sweep could not complete: wait for it to return or go down)."""
        if self.ring.cmap.epoch != self._swept_epoch:
            return True
        return not self.ring.suspects() and any(True for _ in self.ring.repair_log.entries())

    def sweep(self) -> RepairReport:
        """One repair sweep for the current map, tracked in :attr:`status`."""
        with self._lock:
            epoch = self.ring.cmap.epoch
            st = self.status
            st.state, st.epoch, st.started = "rebuilding", epoch, time.time()
            st.chunks_done = st.chunks_total = 0

            def progress(done: int, total: int) -> None:
                st.chunks_done, st.chunks_total = done, total

            try:
                report = repair(self.ring, progress=progress)
            finally:
                st.state, st.finished = "idle", time.time()
                st.sweeps += 1
            st.last_report = {"pieces_rebuilt": report.pieces_rebuilt,
                              "bytes_rebuilt": report.bytes_rebuilt,
                              "pieces_removed": report.pieces_removed,
                              "unrecoverable": len(report.unrecoverable),
                              "errors": len(report.errors),
                              "seconds": st.finished - st.started}
            self._swept_epoch = epoch  # degraded leftovers are retried via the repair log
            log.info("repair sweep for map epoch %d: %s", epoch, st.last_report)
            return report

    def step(self) -> None:
        """One round: settle the map, then sweep if the map moved or chunks are degraded."""
        try:
            self.update_map()
        except ChunkStoreError as e:
            log.warning("cannot update the cluster map: %s", e)
        if self.needs_sweep():
            self.sweep()
