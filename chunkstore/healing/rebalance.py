"""Rebalance after the ring changed (a disk added): move the pieces whose owners changed.

The moving itself is the repair sweep's (:func:`chunkstore.healing.sweep.repair` without
verification: pieces the indexes list are trusted, only chunks whose new owners lack a piece
are read, rebuilt onto them, and then the misplaced pieces are removed). What this module adds
is the measure of the work: :func:`plan` counts, from the disk indexes alone, the pieces that
must move and the traffic that takes (the sweep reads K fragments, or one copy, of each chunk
to move, and writes each missing piece), so that :func:`rebalance` reports its progress in
bytes, with a total known from the start, and ends at that total. Being the sweep, it is
idempotent and stops cleanly between chunks (``cancel``, or KeyboardInterrupt in the caller):
the next repair sweep finishes the move.

:func:`add_disk_and_rebalance` is the whole ``disk add`` of an embedded RING in one call,
for a process that holds the ring (the mount process's admin op).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from chunkstore.errors import ChunkStoreError, DiskUnavailable
from chunkstore.protection.policy import ECPolicy, PolicyCode
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.local import LocalRing

from .sweep import RepairReport, repair

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RebalancePlan:
    """What a rebalance has to do, from the disk indexes."""

    chunks: int          # chunks known
    chunks_to_move: int  # chunks an owner of which lacks its piece
    pieces_to_move: int  # pieces to write to their new owners
    bytes_to_move: int   # their size
    traffic: int         # bytes the sweep reads and writes to move them (an estimate)


@dataclass(frozen=True)
class RebalanceReport:
    """Outcome of :func:`rebalance`."""

    plan: RebalancePlan
    pieces_moved: int    # pieces written to their owners
    bytes_moved: int
    pieces_removed: int  # misplaced pieces removed once their owners held theirs
    traffic: int         # bytes read and written
    seconds: float
    chunks_checked: int
    cancelled: bool
    unrecoverable: tuple[str, ...]  # hex keys
    errors: tuple[str, ...]
    disks_refused: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """Every chunk is on its owners (nothing left for a repair to move)."""
        return not (self.cancelled or self.unrecoverable or self.errors or self.disks_refused)


def plan(ring: RingStore) -> RebalancePlan:
    """Count the pieces whose owners per ``ring.ring`` do not hold them (listing only)."""
    where: dict[tuple[bytes, bytes], dict[tuple[str, int], int]] = {}
    refs: dict[tuple[bytes, bytes], PolicyCode] = {}
    for disk_id in ring.available_disks():
        try:
            listing = ring.call(disk_id, lambda ds: list(ds.pieces()))
        except DiskUnavailable:
            continue
        for p in listing:
            ck = (p.key, p.policy.to_bytes())
            where.setdefault(ck, {})[(disk_id, p.frag_idx)] = p.length
            refs.setdefault(ck, p.policy)
    to_move = pieces = size = traffic = 0
    for ck, held in where.items():
        try:
            policy = refs[ck].policy()
            owners = ring.ring.owners(ck[0], policy.width)
        except ChunkStoreError:
            continue  # the sweep reports it
        piece_len = max(held.values())
        missing = sum(1 for i, o in enumerate(owners) if (o, policy.piece_index(i)) not in held)
        if not missing:
            continue
        to_move += 1
        pieces += missing
        size += missing * piece_len
        reads = policy.k if isinstance(policy, ECPolicy) else 1  # a copy: one read
        traffic += (reads + missing) * piece_len
    return RebalancePlan(len(where), to_move, pieces, size, traffic)


def rebalance(ring: RingStore, progress: Progress | None = None, *,
              chunks: Progress | None = None, planned: Callable[[RebalancePlan], None] | None = None,
              cancel: threading.Event | None = None,
              max_bytes_per_s: float | None = None) -> RebalanceReport:
    """Move every piece to its owner per the ring (see module docstring). ``planned(plan)``
    is told the plan before the sweep starts; ``progress(done, total)`` the traffic in bytes
    (total: the plan's estimate, raised if the sweep needs more; it ends at total);
    ``chunks(done, total)`` the chunks swept."""
    started = time.monotonic()
    p = plan(ring)
    if planned is not None:
        planned(p)
    traffic = [0]
    total = [max(p.traffic, 1)]

    def on_traffic(done: int) -> None:
        traffic[0] = done
        total[0] = max(total[0], done)

    def on_chunks(done: int, of: int) -> None:
        if chunks is not None:
            chunks(done, of)
        if progress is not None:
            progress(total[0] if done >= of else traffic[0], total[0])

    if progress is not None:
        progress(0, total[0])
    r: RepairReport = repair(ring, progress=on_chunks, verify=False, cancel=cancel,
                             traffic=on_traffic, max_bytes_per_s=max_bytes_per_s)
    if progress is not None and not r.cancelled:
        progress(total[0], total[0])
    return RebalanceReport(
        plan=p, pieces_moved=r.pieces_rebuilt, bytes_moved=r.bytes_rebuilt,
        pieces_removed=r.pieces_removed, traffic=traffic[0],
        seconds=time.monotonic() - started, chunks_checked=r.chunks_checked,
        cancelled=r.cancelled, unrecoverable=tuple(k.hex() for k in r.unrecoverable),
        errors=r.errors, disks_refused=r.disks_refused)


@dataclass(frozen=True)
class DiskAddReport:
    """Outcome of :func:`add_disk_and_rebalance`."""

    added: dict                       # growth.DiskAddition.as_dict()
    rebalance: RebalanceReport | None  # None with ``rebalance=False``


def add_disk_and_rebalance(ring: LocalRing, progress: Progress | None = None, *,
                           disk_id: str | None = None, path: str | None = None,
                           weight: float = 1.0, rebalance_now: bool = True,
                           cancel: threading.Event | None = None,
                           max_bytes_per_s: float | None = None) -> DiskAddReport:
    """``ring.add_disk`` then, unless told not to, :func:`rebalance` (capped at
    ``max_bytes_per_s``)."""
    added = ring.add_disk(disk_id, path, weight)
    report = (rebalance(ring, progress, cancel=cancel, max_bytes_per_s=max_bytes_per_s)
              if rebalance_now else None)
    return DiskAddReport(added.as_dict(), report)
