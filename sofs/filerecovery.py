"""When file data cannot be stored, or was not before a crash: putting files back to what
their last complete flush left, for the data path (:class:`sofs.fileio.DataPath`).

:func:`abandon` runs when a store fails (the RING is full, or cannot take the data): what is not
stored is dropped, never shown and never retried behind the writer's back. :func:`recover_
unflushed` runs at mount after a crash. Both cut what partial flushes stored past a file's
persisted size, mark a longer stored end block as cut (``FileBuffers.cut``: loads and reads
keep only its valid part) and keep a cut copy of it dirty for the next flush; neither lets a
full RING fail the operation that only repairs. They work on the data path's own state (its
lock, buffers, block map and metadata), as its methods would.
"""

from __future__ import annotations

import logging
from typing import Any

from . import schema
from .errors import FsError, NoSuchEntry
from .filedata import FileBuffers

# a sofs.fileio.DataPath, whose state these functions work on; not imported (it imports this
# module, and the layers keep no import cycles, not even for type checking)
DataPath = Any

log = logging.getLogger("sofs.fileio")


def abandon(dp: DataPath, ino: int, fb: FileBuffers, error: FsError) -> bool:
    """A store of ``ino`` failed: drop what is not stored and put the file back to its last
    complete flush (caller holds ``fb.gate`` exclusively: no other flush of it is under
    way); whether written data was lost. Blocks that partial flushes stored past that size
    are unmapped; the block holding the end, if one stored it longer, is marked cut
    (``fb.cut``: loads and reads keep only its valid part) and reloaded cut as a dirty block
    that the next flush stores. Nothing is stored here: the RING may be full."""
    with dp._lock:
        node = dp._inodes.cached(ino)
        if dp._buffers.get(ino) is not fb or node is None:
            return False  # freed meanwhile
        lost = fb.written or node.size != fb.durable_size
        dp._dirty_total -= fb.dirty_bytes
        fb.dirty.clear()
        fb.dirty_bytes = 0
        written, size = node.size, fb.durable_size
        node.size = size
        if lost:  # NFS clients see the change (their change attribute follows ctime)
            node.mtime_ns = node.ctime_ns = dp._now()
            fb.written = False
            fb.abandons += 1
            fb.abandon_error = error
        tail_index, tail_len = divmod(size, dp.block_size)
        stale = bool(tail_len) and (dp._map.stored_len(ino, tail_index) or 0) > tail_len
        if stale:
            fb.cut[tail_index] = tail_len
        b = dp._meta.batch()
        dp._map.cut_beyond(b, ino, size, dp._now())
        if not stale:
            b.delete(schema.unflushed_key(ino))  # the map is the last complete flush's
        dp.stage_inode(b, node)
        dp._meta.commit(b)
    if stale:
        try:  # a dirty cut copy, so the next flush stores it (loads honour fb.cut)
            dp._writable_block(ino, tail_index, 0, 0)
        except FsError as e:  # the unflushed mark stays: the next mount cuts it
            log.warning("inode %d: could not reload its last block to cut it: %s", ino, e)
    if not lost:
        return False
    log.warning("inode %d: written data could not be stored (%s); the file is back to its "
                "last complete close or fsync: %d bytes (%d were written)", ino, error,
                size, written)
    if dp._on_lost is not None:
        dp._on_lost(ino, size, written, error)
    return True


def recover_unflushed(dp: DataPath) -> None:
    """After a crash: cut the blocks that partial flushes stored beyond a file's persisted
    size, so the file is exactly what its last complete flush left."""
    inos = [schema.parse_ino_key(k) for k, _ in dp._meta.scan(b"W")]
    for ino in inos:
        try:
            size = dp._inodes.get(ino).size
        except NoSuchEntry:
            b = dp._meta.batch()
            b.delete(schema.unflushed_key(ino))
            dp._meta.commit(b)
            continue
        fb = dp._buffers_of(ino)
        tail_index, tail_len = divmod(size, dp.block_size)
        b = dp._meta.batch()  # the blocks past the end go first: metadata only
        dp._map.cut_beyond(b, ino, size, dp._now())
        dp._meta.commit(b)
        pending = []
        if tail_len and dp._tail_needs_load(ino, tail_index, tail_len):
            found = dp._map.entry(ino, tail_index)
            assert found is not None
            block = dp._chunks.load(found[1], found[0])
            with dp._lock:
                fb.cut[tail_index] = tail_len
                fb.dirty[tail_index] = bytearray(block[:tail_len])
                fb.dirty_bytes += tail_len
                dp._dirty_total += tail_len
                pending = [dp._detach(fb, tail_index)]
        try:
            dp._store_and_commit(ino, fb, pending, True)
        except FsError as e:  # a full RING must not keep the volume from mounting: the
            # cut copy stays dirty (and fb.cut guards reads), the mark until it is stored
            log.warning("inode %d: its cut end block cannot be stored yet: %s", ino, e)
        with dp._lock:
            if fb.is_idle():
                dp._drop_buffers(ino)
