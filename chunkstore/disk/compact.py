"""Compaction of one disk: rewrite sealed containers that are mostly dead, then delete them.

A sealed container (below the committed high-water mark, not the active one) whose dead
share is at least ``min_dead_ratio`` is compacted in three steps:

1. every live put record in it (the index still points at that copy) is copied verbatim into
   the active container through the store's normal append + group commit, so the index
   points at the copy once the copy is durable (a MOVE op);
2. indexed pieces whose record the scan did not find valid (bit rot) are unindexed (a DROP
   op), so repair rebuilds them elsewhere; their bytes are unreadable anyway;
3. the index is synced (``flush_wal``) and only then is the old file deleted and ``containers/``
   fsynced.

A crash at any step leaves every piece reachable: before step 3 the old copy is still there.
Tombstones in the old container are not copied: a tombstone matters only for recovery, which
never scans below the high-water mark. Deletes wait while compaction runs (the store's delete
lock), so no tombstone is written for a record being moved.

These functions are :class:`~chunkstore.disk.store.DiskStore`'s compaction, kept apart from
the write path; they use the store's append lock, pending ops and accounting directly.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from chunkstore.atomicfile import fsync_dir
from chunkstore.disk import container as ctr
from chunkstore.disk.index import PieceInfo
from chunkstore.disk.pending import DROP, MOVE, PendingOp
from chunkstore.disk.records import CompactReport

if TYPE_CHECKING:
    from chunkstore.disk.store import DiskStore


def compact(ds: DiskStore, min_dead_ratio: float) -> CompactReport:
    """Compact every sealed container of ``ds`` whose dead share is >= ``min_dead_ratio``."""
    removed = moved = reclaimed = dropped = 0
    with ds._compact_lock, ds._delete_lock:
        for cid, size in _candidates(ds, min_dead_ratio):
            moved += _move_live_records(ds, cid)
            with ds._lock:
                left = ds._live.get(cid, 0)
            if left:
                dropped += _drop_pieces_in(ds, cid)
            ds._db.flush_wal(True)  # the index pointing at the copies is durable
            ds._cache.forget(cid)
            os.unlink(ds._cpath(cid))
            fsync_dir(ds._cdir)
            with ds._lock:
                ds._sizes.pop(cid, None)
                ds._live.pop(cid, None)
            removed += 1
            reclaimed += size
    return CompactReport(removed, moved, reclaimed, dropped)


def _candidates(ds: DiskStore, min_dead_ratio: float) -> list[tuple[int, int]]:
    """(container id, size) of the sealed containers worth compacting, oldest first."""
    out = []
    with ds._lock:
        for cid, size in ds._sizes.items():
            if cid >= ds._hwm_cid or cid == ds._active_cid:
                continue
            body = size - ctr.FILE_HEADER_SIZE
            dead = body - ds._live.get(cid, 0)
            if body <= 0 or dead / body >= min_dead_ratio:
                out.append((cid, size))
    return sorted(out)


def _move_live_records(ds: DiskStore, cid: int) -> int:
    """Step 1: copy the live records of container ``cid`` to the active one; how many."""
    moved = 0
    last: PendingOp | None = None
    with ds._cache.open(cid) as fd:
        for rec in ctr.scan(fd):
            if rec.header.rtype != ctr.TYPE_PUT:
                continue  # tombstones before the high-water mark are not needed
            pid = rec.header.key + bytes((rec.header.frag_idx,))
            raw = ds._db.get(pid)
            if raw is None:
                continue
            old = PieceInfo.decode(pid, raw)
            if (old.container, old.offset) != (cid, rec.offset):
                continue  # dead copy
            blob = os.pread(fd, rec.header.record_len, rec.offset)  # verified by the scan
            with ds._lock:
                off = ds._append([blob])
                info = PieceInfo(old.key, old.frag_idx, ds._active_cid, off, old.length, old.checksum, old.policy, old.chunk_size)
                last = ds._enqueue(PendingOp(MOVE, pid, info, old))
            moved += 1
    if last is not None:
        ds._await(last)
    return moved


def _drop_pieces_in(ds: DiskStore, cid: int) -> int:
    """Step 2: unindex the pieces still indexed in container ``cid``; how many."""
    ops = []
    with ds._lock:
        for info in ds.pieces():
            if info.container == cid:
                ops.append(ds._enqueue(PendingOp(DROP, info.pid, None, info)))
    if ops:
        ds._await(ops[-1])
    return len(ops)
