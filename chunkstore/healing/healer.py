"""The healer: turns failure detection into map changes, map changes into rebuilds, and
keeps the scrub schedule.

Run by one long-lived client of a RING (the mount process does it), it loops over
:meth:`Healer.step`. On a networked RING (one whose ``membership`` is not None, a
:class:`~chunkstore.ring.net.NetRing`):

* a node suspect (unreachable) for ``down_after_s`` seconds is marked ``down`` in a new map
  epoch, published to every node: its arcs move to the other disks;
* a ``down`` node that answers again is marked ``up`` (its pieces become owners' pieces again,
  the copies rebuilt meanwhile become extras that repair removes);
* after any map change, and while the repair log names degraded chunks, a repair sweep
  (:func:`chunkstore.healing.sweep.repair`) rebuilds what the new placement lacks and removes what
  it no longer wants: rebuild, rebalance after ``node add`` and draining are all this sweep.

On a networked RING made with etcd (``membership.etcd`` set), a node is suspect when etcd
holds no liveness key of it (:mod:`chunkstore.authority.liveness`: its lease expired), never
because this client cannot reach it, and it is marked down once that has lasted
``down_after_s`` (on this process's monotonic clock), unless that would leave fewer placing
disks than the widest volume recorded in etcd needs (:mod:`chunkstore.authority.volumewidths`);
the change is a compare-and-swap on etcd's map. While etcd does not answer no node is marked down or up and no sweep runs (a sweep
removes pieces): :attr:`Healer.authority_unreachable` says why, reads and writes go on.

With etcd, one healer acts for the whole cluster: each step it must hold the ``healer``
election (:mod:`chunkstore.authority.election`, a lease of ``leader_ttl_s``); the others stand
by (``status.state`` ``standby``, :attr:`Healer.leader` names the active one) and take over
once its lease runs out, or at once when it stops cleanly.

A node is never marked down when that would leave fewer placing disks than ``min_placing``
(the widest policy of the mounted volume): its chunks could then neither be placed nor found;
it stays suspect, reads degrade and writes hand off, and the log says to add storage.

On any RING, a full sweep runs every ``scrub_interval_s`` (default a week): it reads and
verifies every piece an owner should hold and repairs what is missing or corrupt (a scrub).
Sweeps are paced to ``max_bytes_per_s`` of disk traffic when set.

The sweep is idempotent. The epoch last swept and the time of the last full sweep are kept in
``healer.json`` (:data:`~chunkstore.placement.layout.HEALER_STATE_FILE`) in the client's state
directory, so after a restart an interrupted rebuild or rebalance is swept again (resumable)
and the scrub schedule goes on. Progress (chunks done, total, bytes rebuilt, rate, ETA) is kept
in :attr:`Healer.status` for ``sofsctl status``. Mounts sharing a client data directory run
one healer between them: each step first takes ``run/healer.lock`` (flock, without waiting);
the others stand by until it is free. Two healers on one cluster (from different data
directories) are safe but wasteful: a map change two of them make at the same epoch is refused
by the nodes for the second (ClusterMismatch), which then re-reads the map.

Time: every duration (how long a node has been unreachable, when the next scrub is due, the
pacing, a sweep's rate) is measured on the injected clock's monotonic time, so a step of the
wall clock changes none of them. The time of the last full sweep must survive a restart, which
a monotonic clock does not, so it is stored as wall-clock time; it is turned into a monotonic
deadline once, when the healer starts (or takes over from another mount's healer), and the
schedule never reads the wall clock after that. A wall-clock step while the healer runs
therefore moves nothing; one across a restart (or between two hosts' clocks) shifts that one
scrub, bounded: a last sweep stamped in the future counts as just done, so the next scrub
comes at most one interval later.

Stopping: :meth:`Healer.cancel` stops a running sweep between chunks (the sweep is then not
recorded as done: the next one does the rest) and returns once the running round has left the
ring; :meth:`Healer.close` does the same, then gives the healer lock back.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Iterator

from chunkstore.api import Membership
from chunkstore.atomicfile import atomic_write
from chunkstore.authority import election, liveness, mapstore, volumewidths
from chunkstore.authority.election import Election, candidate_name
from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.errors import ChunkStoreError, EtcdUnavailable, MapConflict
from chunkstore.healing.maintenance import read_maintenance
from chunkstore.healing.sweep import RepairReport, repair
from chunkstore.placement.clustermap import ClusterMap
from chunkstore.placement.layout import HEALER_LOCK_FILE, HEALER_STATE_FILE, RUN_DIR
from chunkstore.ring.datapath import RingStore

log = logging.getLogger("sofs.healer")


class _Unchanged(Exception):
    """Nothing to decide: no map change to swap into etcd."""

DEFAULT_DOWN_AFTER_S = 300.0
DEFAULT_SCRUB_INTERVAL_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class SweepSummary:
    """The outcome of a sweep as status displays show it (counts only, unlike RepairReport)."""

    pieces_rebuilt: int
    bytes_rebuilt: int
    pieces_removed: int
    unrecoverable: int   # chunks
    errors: int          # chunks whose repair failed for another reason
    seconds: float
    verified: bool       # a scrub (every piece read), not a rebuild trusting the indexes
    cancelled: bool = False

    @classmethod
    def of(cls, report: RepairReport, seconds: float, verified: bool) -> "SweepSummary":
        return cls(pieces_rebuilt=report.pieces_rebuilt, bytes_rebuilt=report.bytes_rebuilt,
                   pieces_removed=report.pieces_removed, unrecoverable=len(report.unrecoverable),
                   errors=len(report.errors), seconds=seconds, verified=verified,
                   cancelled=report.cancelled)


@dataclass
class RebuildStatus:
    """What the healer is doing, for status displays."""

    state: str = "idle"              # idle | rebuilding | standby | maintenance
    epoch: int = 0                   # map epoch the last sweep worked for
    chunks_done: int = 0
    chunks_total: int = 0
    bytes_done: int = 0              # disk traffic of the sweep (pieces read + written)
    rate_cap: float | None = None    # bytes/s it is held to (None: no cap)
    started: float = 0.0             # wall-clock time (unix) the last sweep started
    finished: float = 0.0            # wall-clock time it finished
    elapsed_s: float = 0.0           # its duration so far (monotonic; as of its last progress)
    last_report: SweepSummary | None = None
    sweeps: int = 0

    def rate(self) -> float:
        """Chunks per second of the sweep running (or last run)."""
        return self.chunks_done / max(self.elapsed_s, 1e-3) if self.started else 0.0

    def eta_s(self) -> float | None:
        r = self.rate()
        if self.state != "rebuilding" or r <= 0:
            return None
        return (self.chunks_total - self.chunks_done) / r

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RebuildStatus":
        """The status :meth:`to_dict` gave (as another process's admin socket sends it)."""
        names = {f for f in cls.__dataclass_fields__ if f != "last_report"}
        report = d.get("last_report")
        return cls(**{k: v for k, v in d.items() if k in names},
                   last_report=SweepSummary(**report) if isinstance(report, dict) else None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rate_chunks_s"] = self.rate()
        d["rate_bytes_s"] = self.bytes_done / max(self.elapsed_s, 1e-3) if self.started else 0.0
        d["eta_s"] = self.eta_s()
        return d


class Healer:
    """See the module docstring. ``clock`` times everything (tests pass a FakeClock)."""

    def __init__(self, ring: RingStore, *, down_after_s: float = DEFAULT_DOWN_AFTER_S,
                 scrub_interval_s: float = DEFAULT_SCRUB_INTERVAL_S,
                 max_bytes_per_s: float | None = None, min_placing: int = 1,
                 clock: Clock = SYSTEM_CLOCK,
                 leader_ttl_s: int = election.DEFAULT_TTL_S) -> None:
        self.ring = ring
        self.min_placing = min_placing
        self.down_after_s = down_after_s
        self.scrub_interval_s = scrub_interval_s
        self.max_bytes_per_s = max_bytes_per_s
        self.status = RebuildStatus()
        self._clock = clock
        self._kept_up: set[str] = set()  # nodes that could not be marked down (logged once)
        self._absence = liveness.Absence(clock)  # with etcd: how long nodes' keys are gone
        self.leader_ttl_s = leader_ttl_s
        self._election: Election | None = None  # with etcd: the cluster-wide candidacy
        # with etcd: why it did not answer the last time it was asked (None: it did)
        self.authority_unreachable: str | None = None
        self._active_fd: int | None = None  # held flock on run/healer.lock
        self._lock = threading.Lock()  # one round or sweep at a time; cancel() waits for it
        self._cancel = threading.Event()
        self._sweep_cancel: threading.Event | None = None  # the running sweep's own
        self._scrubs_paused = False  # sofsctl scrub pause: scheduled scrubs wait for resume
        self._state_path = os.path.join(ring.data_dir, HEALER_STATE_FILE)
        state = self._load_state()
        self._swept_epoch = int(state.get("swept_epoch", self._epoch()))
        self._adopt_schedule(float(state.get("last_full_sweep", clock.time())))
        self.status.epoch = self._swept_epoch
        if not state:
            self._save_state()

    def _epoch(self) -> int:
        m = self.ring.membership
        return m.cmap.epoch if m is not None else 0

    # -- state (healer.json) and the scrub schedule ---------------------------------------

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

    def _adopt_schedule(self, last_full: float) -> None:
        """Take the stored wall-clock time of the last full sweep; the next scrub becomes a
        monotonic deadline, at most one interval away (see the module docstring)."""
        self._last_full = last_full
        left = last_full + self.scrub_interval_s - self._clock.time()
        self._scrub_due = self._clock.monotonic() + min(self.scrub_interval_s, max(0.0, left))

    # -- decisions ------------------------------------------------------------------------

    def update_map(self) -> bool:
        """Mark long-unreachable nodes down and answering ones up; True if the map changed.
        With etcd, "unreachable" is etcd's word (the node's liveness key is gone) and the
        change is a compare-and-swap there; while etcd does not answer nothing is decided."""
        m = self.ring.membership
        if m is None:
            return False
        if m.etcd is not None:
            return self._update_map_in_etcd(m)
        new = self._decide(m.cmap, m.unreachable_for())
        if new is m.cmap:
            return False
        failed = m.publish(new)
        if failed:
            log.warning("map epoch %d not taken by %s", new.epoch,
                        ", ".join(f"{n} ({why})" for n, why in sorted(failed.items())))
        return True

    def _update_map_in_etcd(self, m: Membership) -> bool:
        cluster_id = m.cmap.cluster_id
        try:
            alive = set(liveness.alive_nodes(m.etcd, cluster_id))
            absent = self._absence.update([n.id for n in m.cmap.nodes if n.state != "out"],
                                          alive)
            # the widest volume anywhere in the cluster, not only this mount's (asked only
            # when a node is due to go down)
            floor = self.min_placing
            if any(silent >= self.down_after_s for silent in absent.values()):
                floor = max(floor, volumewidths.widest(m.etcd, cluster_id)[0])
            self._authority_answers()

            def decide(cmap: ClusterMap) -> ClusterMap:
                new = self._decide(cmap, absent, floor)
                if new is cmap:
                    raise _Unchanged
                return new

            stored = mapstore.change(m.etcd, cluster_id, decide)
        except _Unchanged:
            return False
        except MapConflict as e:  # an admin changed the map meanwhile: decide again next step
            log.info("%s", e)
            return False
        except EtcdUnavailable as e:
            self._authority_lost(str(e))
            return False
        failed = m.publish(stored.cmap)
        if failed:
            log.info("map epoch %d not offered to %s (they follow etcd)", stored.cmap.epoch,
                     ", ".join(sorted(failed)))
        return True

    def _authority_answers(self) -> None:
        if self.authority_unreachable is not None:
            log.warning("etcd answers again: down-marking and sweeps resume")
        self.authority_unreachable = None

    def _authority_lost(self, why: str) -> None:
        if self.authority_unreachable is None:
            log.error("etcd unreachable (%s): no node is marked down or up and no sweep "
                      "runs until it answers; reads and writes go on with map epoch %d",
                      why, self._epoch())
            self.authority_unreachable = why

    def _decide(self, cmap: ClusterMap, unreachable: dict[str, float],
                floor: int | None = None) -> ClusterMap:
        """``cmap`` with long-silent up nodes down and answering down nodes up (``cmap``
        itself when nothing changes). ``unreachable``: node id -> seconds silent. No node
        goes down that would leave fewer placing disks than ``floor`` (default
        ``min_placing``)."""
        floor = self.min_placing if floor is None else floor
        new = cmap
        for node in cmap.nodes:
            silent = unreachable.get(node.id)
            if node.state == "up" and silent is not None and silent >= self.down_after_s:
                candidate = new.set_node_state(node.id, "down")
                if len(candidate.placing_disks()) < floor:
                    if node.id not in self._kept_up:
                        self._kept_up.add(node.id)
                        log.error("node %s unreachable for %.0f s, but marking it down would "
                                  "leave %d disks for %d pieces per chunk: it stays in the "
                                  "placement (reads and writes go on degraded); add storage",
                                  node.id, silent, len(candidate.placing_disks()), floor)
                    continue
                log.warning("node %s unreachable for %.0f s: marking it down; its data is "
                            "rebuilt elsewhere", node.id, silent)
                new = candidate
            elif node.state == "down" and silent is None:
                log.info("node %s answers again: marking it up", node.id)
                new = new.set_node_state(node.id, "up")
        return new

    def needs_sweep(self) -> str | None:
        """Why a sweep is due, or None: ``scrub`` (the schedule), on a networked RING also
        ``map`` (the map changed: rebuild, rebalance, drain) and ``degraded`` (chunks noted
        degraded and every node answers: while a node is unreachable a sweep could not
        complete, so wait for it to return or go down)."""
        if self.authority_unreachable is not None:
            return None  # a sweep removes pieces: not on a view etcd cannot confirm
        if self._clock.monotonic() >= self._scrub_due:
            return "scrub"
        m = self.ring.membership
        if m is None:
            return None
        if m.cmap.epoch != self._swept_epoch:
            return "map"
        if not m.unreachable_for() and any(True for _ in self.ring.repair_log.entries()):
            return "degraded"
        return None

    # -- sweeping -------------------------------------------------------------------------

    def sweep(self, progress: Callable[[int, int, int, int], None] | None = None,
              verify: bool = True, init_disks: Iterable[str] = ()) -> RepairReport:
        """One repair sweep for the current map, tracked in :attr:`status` (one at a time).
        ``verify=False``: a rebuild trusting the disk indexes (see :func:`repair`, which also
        says what ``init_disks`` are). ``progress(chunks done, total, bytes done, total)``.
        After :meth:`cancel`, returns at once with a cancelled report."""
        with self._lock:
            return self._sweep(progress, verify, tuple(init_disks))

    def _sweep(self, progress: Callable[[int, int, int, int], None] | None, verify: bool,
               init_disks: tuple[str, ...] = ()) -> RepairReport:
        epoch = self._epoch()
        st = self.status
        t0 = self._clock.monotonic()
        st.state, st.epoch, st.started, st.elapsed_s = "rebuilding", epoch, self._clock.time(), 0.0
        st.chunks_done = st.chunks_total = st.bytes_done = 0
        st.rate_cap = self.max_bytes_per_s

        def track(done: int, total: int, bytes_done: int, bytes_total: int) -> None:
            st.chunks_done, st.chunks_total = done, total
            st.elapsed_s = self._clock.monotonic() - t0
            st.rate_cap = self.max_bytes_per_s
            if progress is not None:
                progress(done, total, bytes_done, bytes_total)

        def traffic(n: int) -> None:
            st.bytes_done = n

        log.info("%s for map epoch %d started", "scrub" if verify else "rebuild sweep", epoch)
        cancel = self._sweep_cancel = threading.Event()
        if self._cancel.is_set():
            cancel.set()
        try:
            report = repair(self.ring, progress_sized=track,
                            max_bytes_per_s=lambda: self.max_bytes_per_s,
                            verify=verify, cancel=cancel, clock=self._clock,
                            init_disks=init_disks, traffic=traffic)
        finally:
            self._sweep_cancel = None
            st.state, st.finished = "idle", self._clock.time()
            st.elapsed_s = self._clock.monotonic() - t0
            st.sweeps += 1
        st.last_report = SweepSummary.of(report, st.elapsed_s, verify)
        if report.cancelled:  # not done: the epoch and the schedule stay as they were
            log.info("repair sweep for map epoch %d cancelled after %d chunks", epoch,
                     report.chunks_checked)
            return report
        self._swept_epoch = epoch  # degraded leftovers are retried via the repair log
        if verify:
            self._last_full = st.finished
            self._scrub_due = self._clock.monotonic() + self.scrub_interval_s
        self._save_state()
        r = st.last_report
        log.info("%s for map epoch %d finished in %.1f s: %d chunks checked, %d pieces rebuilt "
                 "(%d bytes), %d removed, %d unrecoverable, %d failed",
                 "scrub" if verify else "rebuild sweep", epoch, r.seconds, report.chunks_checked,
                 r.pieces_rebuilt, r.bytes_rebuilt, r.pieces_removed, r.unrecoverable, r.errors)
        return report

    def active(self) -> bool:
        """Whether this healer is the active one: the data directory's (takes the lock if
        free) and, with etcd, the cluster's (:class:`~chunkstore.authority.election.Election`)."""
        if not self._local_active():
            return False
        m = self.ring.membership
        if m is None or m.etcd is None:
            return True
        if self._election is None:
            self._election = Election(m.etcd, m.cmap.cluster_id, "healer",
                                      candidate_name(self.ring.data_dir), self.leader_ttl_s,
                                      self._clock)
        return self._election.holds()

    @property
    def leader(self) -> str | None:
        """With etcd: the active healer of the cluster, as last seen (None: not asked)."""
        return self._election.leader if self._election is not None else None

    def _local_active(self) -> bool:
        if self._active_fd is not None:
            return True
        path = os.path.join(self.ring.data_dir, RUN_DIR, HEALER_LOCK_FILE)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._active_fd = fd
        return True

    def step(self) -> None:
        """One round: settle the map, then sweep if the map moved, chunks are degraded or a
        scrub is due (only the data directory's active healer acts; none after cancel)."""
        with self._lock:
            if self._cancel.is_set():
                return
            if not self.active():
                self.status.state = "standby"
                return
            if self.status.state == "standby":
                self.status.state = "idle"
                state = self._load_state()  # the previous active healer's progress
                self._swept_epoch = int(state.get("swept_epoch", self._swept_epoch))
                self._adopt_schedule(float(state.get("last_full_sweep", self._last_full)))
            if read_maintenance(self.ring.data_dir) is not None:
                self.status.state = "maintenance"  # no down-marking, no sweep
                return
            if self.status.state == "maintenance":
                self.status.state = "idle"
                log.info("maintenance mode is off: the healer acts again")
            if self._scrubs_paused:
                self._scrub_due = max(self._scrub_due, self._clock.monotonic() + 3600.0)
            try:
                self.update_map()
            except ChunkStoreError as e:
                log.warning("cannot update the cluster map: %s", e)
            why = self.needs_sweep()
            if why is not None:
                self._sweep(None, verify=why != "map")

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold off the healer's own sweeps (one sweep at a time) while another job changes
        and rebalances the ring (an online ``disk add``)."""
        with self._lock:
            yield

    # -- stopping -------------------------------------------------------------------------

    def cancel_sweep(self) -> bool:
        """Stop the running sweep between chunks (``sofsctl repair --cancel``); later rounds
        and sweeps go on as usual (the next one does what this one left). False if none ran."""
        ev = self._sweep_cancel
        if ev is None:
            return False
        ev.set()
        return True

    def pause_scrubs(self) -> bool:
        """Stop a running scrub (a verifying sweep) and start no scheduled one until
        :meth:`resume_scrubs`; rebuilds after map changes go on. True if one was stopped."""
        self._scrubs_paused = True
        running = self.status.state == "rebuilding" and self._sweep_cancel is not None
        return self.cancel_sweep() if running else False

    def resume_scrubs(self) -> dict[str, Any]:
        """Scheduled scrubs again (one now if it was due while paused); the new
        :meth:`scrub_status`."""
        self._scrubs_paused = False
        self._scrub_due = min(self._scrub_due, self._last_scheduled_due())
        return self.scrub_status()

    def _last_scheduled_due(self) -> float:
        left = self._last_full + self.scrub_interval_s - self._clock.time()
        return self._clock.monotonic() + max(0.0, left)

    def scrub_status(self) -> dict[str, Any]:
        """Scrub schedule and state, for ``sofsctl scrub status``."""
        due_in = max(0.0, self._scrub_due - self._clock.monotonic())
        return {"paused": self._scrubs_paused, "last_full_sweep": self._last_full,
                "interval_s": self.scrub_interval_s,
                "next_in_s": None if self._scrubs_paused else due_in,
                "running": self.status.state == "rebuilding",
                "maintenance": self.status.state == "maintenance"}

    def set_rate(self, max_bytes_per_s: float | None) -> None:
        """Cap sweeps' disk traffic (None: no cap), the running one included."""
        self.max_bytes_per_s = max_bytes_per_s

    def cancel_nowait(self) -> None:
        """Ask a running sweep to stop between chunks, and refuse every later round or sweep.
        Does not wait (safe on an event loop, whose worker thread is then joined)."""
        self._cancel.set()
        self.cancel_sweep()

    def cancel(self) -> None:
        """:meth:`cancel_nowait`, then wait until the running round or sweep (if any) has
        left the ring: after this returns the healer makes no more ring calls."""
        self.cancel_nowait()
        with self._lock:
            pass

    def close(self) -> None:
        """Cancel (waiting for a running sweep to stop), then give the healer lock back."""
        self.cancel()
        if self._election is not None:
            self._election.resign()
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
