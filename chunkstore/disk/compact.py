"""Compaction of one disk: rewrite sealed containers that are mostly dead, then delete them.

A sealed container (chunkstore.disk.log.SealedContainer: below the committed high-water mark,
not the active one) whose dead share is at least ``min_dead_ratio`` is compacted in three
steps:

1. every live put record in it (the index still points at that copy) is copied verbatim into
   the active container through the log's normal append + group commit
   (chunkstore.disk.log), so the index points at the copy once the copy is durable (a MOVE
   op);
2. indexed pieces whose record the scan did not find valid (bit rot) are unindexed (a DROP
   op), so repair rebuilds them elsewhere; their bytes are unreadable anyway;
3. the index is synced (``flush_wal``) and only then is the old file deleted and
   ``containers/`` fsynced (``ContainerLog.remove_sealed``).

A crash at any step leaves every piece reachable: before step 3 the old copy is still there.
Tombstones in the old container are not copied: a tombstone matters only for recovery, which
never scans below the high-water mark. The caller keeps deletes out while compaction runs
(DiskStore's delete lock), so no tombstone is written for a record being moved, and runs one
compaction at a time.

Compaction works on the disk's collaborators, not on the store: the append log
(:class:`~chunkstore.disk.log.ContainerLog`), the rocksdict index and the fd cache of the
container files.
"""

from __future__ import annotations

import os

from rocksdict import Rdict

from chunkstore.disk import container as ctr
from chunkstore.disk.fdcache import FdCache
from chunkstore.disk.index import PieceInfo, iter_pieces
from chunkstore.disk.log import ContainerLog, SealedContainer
from chunkstore.disk.pending import DROP, MOVE, PendingOp
from chunkstore.disk.records import CompactReport


def compact(log: ContainerLog, db: Rdict, cache: FdCache, min_dead_ratio: float) -> CompactReport:
    """Compact every sealed container of ``log`` whose dead share is >= ``min_dead_ratio``;
    ``db`` is the disk's index, ``cache`` opens its container files."""
    removed = moved = reclaimed = dropped = 0
    for c in _candidates(log, min_dead_ratio):
        moved += _move_live_records(log, db, cache, c.cid)
        if log.live_bytes(c.cid):
            dropped += _drop_pieces_in(log, db, c.cid)
        db.flush_wal(True)  # step 3: the index pointing at the copies is durable
        log.remove_sealed(c.cid)
        removed += 1
        reclaimed += c.size
    return CompactReport(removed, moved, reclaimed, dropped)


def _candidates(log: ContainerLog, min_dead_ratio: float) -> list[SealedContainer]:
    """The sealed containers worth compacting, oldest first."""
    out = []
    for c in log.sealed():
        body = c.size - ctr.FILE_HEADER_SIZE
        if body <= 0 or (body - c.live_bytes) / body >= min_dead_ratio:
            out.append(c)
    return out


def _move_live_records(log: ContainerLog, db: Rdict, cache: FdCache, cid: int) -> int:
    """Step 1: copy the live records of container ``cid`` to the active one; how many."""
    moved = 0
    last: PendingOp | None = None
    with cache.open(cid) as fd:
        for rec in ctr.scan(fd):
            if rec.header.rtype != ctr.TYPE_PUT:
                continue  # tombstones before the high-water mark are not needed
            pid = rec.header.key + bytes((rec.header.frag_idx,))
            raw = db.get(pid)
            if raw is None:
                continue
            old = PieceInfo.decode(pid, raw)
            if (old.container, old.offset) != (cid, rec.offset):
                continue  # dead copy
            blob = os.pread(fd, rec.header.record_len, rec.offset)  # verified by the scan
            with log.appending() as a:
                new_cid, off = a.append([blob])
                info = PieceInfo(old.key, old.frag_idx, new_cid, off, old.length, old.checksum, old.policy, old.chunk_size)
                last = a.enqueue(PendingOp(MOVE, pid, info, old))
            moved += 1
    if last is not None:
        log.wait_committed(last)
    return moved


def _drop_pieces_in(log: ContainerLog, db: Rdict, cid: int) -> int:
    """Step 2: unindex the pieces still indexed in container ``cid``; how many."""
    ops = []
    with log.appending() as a:
        for info in iter_pieces(db.items()):
            if info.container == cid:
                ops.append(a.enqueue(PendingOp(DROP, info.pid, None, info)))
    if ops:
        log.wait_committed(ops[-1])
    return len(ops)
