"""Compaction of one disk: rewrite sealed containers that are mostly dead, then delete them.

The active container is sealed first when that is worth it (:func:`worth_sealing`: enough
dead bytes, or a disk too small for it to ever fill and roll), so compaction reaches every
container.

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


def compact(log: ContainerLog, db: Rdict, cache: FdCache, min_dead_ratio: float,
            free_bytes: int | None = None, container_size: int | None = None) -> CompactReport:
    """Compact every sealed container of ``log`` whose dead share is >= ``min_dead_ratio``;
    ``db`` is the disk's index, ``cache`` opens its container files. The active container is
    sealed first when :func:`worth_sealing` says so (``free_bytes``: what the disk's
    filesystem has left; ``container_size``: where the active container would roll)."""
    removed = moved = reclaimed = dropped = 0
    if worth_sealing(log.active(), min_dead_ratio, free_bytes, container_size):
        log.seal_active()
    budget = free_bytes  # a container is compacted only if its live records fit in free space
    for c in _candidates(log, min_dead_ratio):
        if budget is not None:
            if c.live_bytes and c.live_bytes + COPY_MARGIN > budget:
                continue  # copying would fill the disk and free nothing
            budget += c.size - c.live_bytes
        moved += _move_live_records(log, db, cache, c.cid)
        if log.live_bytes(c.cid):
            dropped += _drop_pieces_in(log, db, c.cid)
        db.flush_wal(True)  # step 3: the index pointing at the copies is durable
        log.remove_sealed(c.cid)
        removed += 1
        reclaimed += c.size
    return CompactReport(removed, moved, reclaimed, dropped)


SEAL_MIN_DEAD = 4 << 20  # dead bytes in the active container that make sealing it worth it
COPY_MARGIN = 1 << 20    # free space kept beyond the live bytes a compaction copies


def worth_sealing(active: SealedContainer, min_dead_ratio: float, free_bytes: int | None,
                  container_size: int | None) -> bool:
    """Whether to seal the active container so compaction reaches it: its dead share is at
    least ``min_dead_ratio`` and either its dead bytes are SEAL_MIN_DEAD or more, or the disk
    has no room left for the active container to grow to ``container_size`` (a disk smaller
    than one container: sealing is the only way it ever gets space back); and its live
    records fit in the free space (compaction copies them out). Each seal starts a new
    container, so the dead-bytes rule keeps them from multiplying."""
    body = active.size - ctr.FILE_HEADER_SIZE
    if body <= 0:
        return False
    dead = body - active.live_bytes
    if dead / body < min_dead_ratio:
        return False
    if free_bytes is not None and active.live_bytes and active.live_bytes + COPY_MARGIN > free_bytes:
        return False  # its live records could not be copied out: sealing would free nothing
    cramped = (free_bytes is not None and container_size is not None
               and free_bytes < container_size - active.size)
    return dead >= SEAL_MIN_DEAD or (cramped and dead > 0)


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
