"""The healer: turns failure detection into map changes, map changes into rebuilds, and
keeps the scrub schedule.

Run by one long-lived client of a RING (the mount process does it), it loops over
:meth:`Healer.step`. On a networked RING (:class:`~chunkstore.ring.net.NetRing`):

* a node suspect (unreachable) for ``down_after_s`` seconds is marked ``down`` in a new map
  epoch, published to every node: its arcs move to the other disks;
* a ``down`` node that answers again is marked ``up`` (its pieces become owners' pieces again,
  the copies rebuilt meanwhile become extras that repair removes);
* after any map change, and while the repair log names degraded chunks, a repair sweep
  (:func:`chunkstore.healing.sweep.repair`) rebuilds what the new placement lacks and removes what
  it no longer wants: rebuild, rebalance after ``node add`` and draining are all this sweep.

A node is never marked down when that would leave fewer placing disks than ``min_placing``
(the widest policy of the mounted volume): its chunks could then neither be placed nor found;
it stays suspect, reads degrade and writes hand off, and the log says to add storage.

On any RING, a full sweep runs every ``scrub_interval_s`` (default a week): it reads and
verifies every piece an owner should hold and repairs what is missing or corrupt (a scrub).
Sweeps are paced to ``max_bytes_per_s`` of disk traffic when set.

The sweep is idempotent. The epoch last swept and the time of the last full sweep are kept in
``healer.json`` in the client's state directory, so after a restart an interrupted rebuild or
rebalance is swept again (resumable) and the scrub schedule goes on. Progress (chunks done,
total, bytes rebuilt, rate, ETA) is kept in :attr:`Healer.status` for ``sofsctl status``.
Mounts sharing a client data directory run one healer between them: each step first takes
``run/healer.lock`` (flock, without waiting); the others stand by until it is free.
Two healers on one cluster (from different data directories) are safe but wasteful: a map change two of them make at the same
epoch is refused by the nodes for the second (ClusterMismatch), which then re-reads the map.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from chunkstore.atomicfile import atomic_write
from chunkstore.errors import ChunkStoreError
from chunkstore.ring.net import NetRing
from chunkstore.healing.sweep import RepairReport, repair
from chunkstore.ring.datapath import RingStore

log = logging.getLogger("sofs.healer")

DEFAULT_DOWN_AFTER_S = 300.0
DEFAULT_SCRUB_INTERVAL_S = 7 * 24 * 3600.0
STATE_FILE = "healer.json"


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
    def __init__(self, ring: RingStore, *, down_after_s: float = DEFAULT_DOWN_AFTER_S,
                 scrub_interval_s: float = DEFAULT_SCRUB_INTERVAL_S,
                 max_bytes_per_s: float | None = None, min_placing: int = 1) -> None:
        self.ring = ring
        self.min_placing = min_placing
        self.down_after_s = down_after_s
        self.scrub_interval_s = scrub_interval_s
        self.max_bytes_per_s = max_bytes_per_s
        self.status = RebuildStatus()
        self._kept_up: set[str] = set()  # nodes that could not be marked down (logged once)
        self._active_fd: int | None = None  # held flock on run/healer.lock
        self._lock = threading.Lock()
        self._state_path = os.path.join(ring.data_dir, STATE_FILE)
        state = self._load_state()
        self._swept_epoch = int(state.get("swept_epoch", self._epoch()))
        self._last_full = float(state.get("last_full_sweep", time.time()))
        self.status.epoch = self._swept_epoch
        if not state:
            self._save_state()

    def _epoch(self) -> int:
        return self.ring.cmap.epoch if isinstance(self.ring, NetRing) else 0

    def _load_state(self) -> dict:
        try:
            with open(self._state_path) as f:
                state = json.load(f)
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_state(self) -> None:
        try:
            atomic_write(self._state_path, json.dumps({"swept_epoch": self._swept_epoch,
                                                       "last_full_sweep": self._last_full}))
        except OSError as e:
            log.warning("cannot save %s: %s", self._state_path, e)

    def update_map(self) -> bool:
        """Mark long-unreachable nodes down and answering ones up; True if the map changed."""
        if not isinstance(self.ring, NetRing):
            return False
        cmap = new = self.ring.cmap
        suspects = self.ring.suspects()
        now = time.time()
        for node in cmap.nodes:
            since = suspects.get(node.id)
            if node.state == "up" and since is not None and now - since >= self.down_after_s:
                candidate = new.set_node_state(node.id, "down")
                if len(candidate.placing_disks()) < self.min_placing:
                    if node.id not in self._kept_up:
                        self._kept_up.add(node.id)
                        log.error("node %s unreachable for %.0f s, but marking it down would "
                                  "leave %d disks for %d pieces per chunk: it stays in the "
                                  "placement (reads and writes go on degraded); add storage",
                                  node.id, now - since, len(candidate.placing_disks()),
                                  self.min_placing)
                    continue
                log.warning("node %s unreachable for %.0f s: marking it down; its data is "
                            "rebuilt elsewhere", node.id, now - since)
                new = candidate
            elif node.state == "down" and since is None:
                log.info("node %s answers again: marking it up", node.id)
                new = new.set_node_state(node.id, "up")
        if new is cmap:
            return False
        failed = self.ring.publish(new)
        if failed:
            log.warning("map epoch %d not taken by %s", new.epoch, failed)
        return True

    def needs_sweep(self) -> str | None:
        """Why a sweep is due, or None: ``scrub`` (the schedule), on a networked RING also
        ``map`` (the map changed: rebuild, rebalance, drain) and ``degraded`` (chunks noted
        degraded and every node answers: while a node is unreachable a sweep could not
        complete, so wait for it to return or go down)."""
        if time.time() - self._last_full >= self.scrub_interval_s:
            return "scrub"
        if not isinstance(self.ring, NetRing):
            return None
        if self.ring.cmap.epoch != self._swept_epoch:
            return "map"
        if not self.ring.suspects() and any(True for _ in self.ring.repair_log.entries()):
            return "degraded"
        return None

    def sweep(self, progress: Callable[[int, int], None] | None = None,
              verify: bool = True) -> RepairReport:
        """One repair sweep for the current map, tracked in :attr:`status` (one at a time).
        ``verify=False``: a rebuild trusting the disk indexes (see :func:`repair`)."""
        with self._lock:
            epoch = self._epoch()
            st = self.status
            st.state, st.epoch, st.started = "rebuilding", epoch, time.time()
            st.chunks_done = st.chunks_total = 0

            def track(done: int, total: int) -> None:
                st.chunks_done, st.chunks_total = done, total
                if progress is not None:
                    progress(done, total)

            try:
                report = repair(self.ring, progress=track,
                                max_bytes_per_s=self.max_bytes_per_s, verify=verify)
            finally:
                st.state, st.finished = "idle", time.time()
                st.sweeps += 1
            st.last_report = {"pieces_rebuilt": report.pieces_rebuilt,
                              "bytes_rebuilt": report.bytes_rebuilt,
                              "pieces_removed": report.pieces_removed,
                              "unrecoverable": len(report.unrecoverable),
                              "errors": len(report.errors),
                              "seconds": st.finished - st.started,
                              "verified": verify}
            self._swept_epoch = epoch  # degraded leftovers are retried via the repair log
            if verify:
                self._last_full = st.finished
            self._save_state()
            log.info("repair sweep for map epoch %d: %s", epoch, st.last_report)
            return report

    def active(self) -> bool:
        """Whether this healer is the data directory's active one (takes the lock if free)."""
        if self._active_fd is not None:
            return True
        path = os.path.join(self.ring.data_dir, "run", "healer.lock")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._active_fd = fd
        return True

    def close(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None

    def step(self) -> None:
        """One round: settle the map, then sweep if the map moved or chunks are degraded
        (only the data directory's active healer acts)."""
        if not self.active():
            self.status.state = "standby"
            return
        if self.status.state == "standby":
            self.status.state = "idle"
            state = self._load_state()  # the previous active healer's progress
            self._swept_epoch = int(state.get("swept_epoch", self._swept_epoch))
            self._last_full = float(state.get("last_full_sweep", self._last_full))
        try:
            self.update_map()
        except ChunkStoreError as e:
            log.warning("cannot update the cluster map: %s", e)
        why = self.needs_sweep()
        if why is not None:
            self.sweep(verify=why != "map")
