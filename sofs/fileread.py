"""Reading file contents for the data path (:class:`sofs.fileio.DataPath`).

A read is served block by block from what is newest: the dirty buffer of a block, its version
being stored right now, the decoded-block cache, or the RING; a block with no map entry is a
hole and reads as zeros. A sequential reader gets the next blocks prefetched. The reader shares
the data path's lock and its per-inode buffers (:class:`sofs.filedata.FileBuffers`), and never
holds the lock during chunk I/O.
"""

from __future__ import annotations

import threading

from chunkstore.clock import Clock
from chunkstore.placement.keys import ChunkRef

from . import schema
from .chunkio import ChunkIO
from .filedata import FileBuffers
from .handles import OpenFile
from .inodes import InodeTable
from .metadata import MetaStore
from .timestamps import wall_ns

READ_AHEAD_BLOCKS = 4  # blocks fetched ahead of a sequential reader
_DAY_NS = 86400 * 10**9


class BlockReader:
    """The read side of one volume's data path."""

    def __init__(self, meta: MetaStore, lock: threading.RLock, inodes: InodeTable,
                 chunks: ChunkIO, buffers: dict[int, FileBuffers], *, block_size: int,
                 clock: Clock) -> None:
        self._meta = meta
        self._lock = lock
        self._inodes = inodes
        self._chunks = chunks
        self._buffers = buffers  # the data path's own dict: shared, guarded by ``lock``
        self._block_size = block_size
        self._clock = clock

    def read(self, h: OpenFile, offset: int, size: int, may_block: bool = True) -> bytes | None:
        """Up to ``size`` bytes at ``offset``. Without ``may_block``: None unless every block
        it needs is in memory (dirty, in flight, cached or a hole)."""
        ino = h.ino
        with self._lock:
            node = self._inodes.get(ino)
            if offset >= node.size or size <= 0:
                return b""
            end = min(offset + size, node.size)
        bs = self._block_size
        parts = []
        pos = offset
        while pos < end:
            index, boff = divmod(pos, bs)
            n = min(bs - boff, end - pos)
            part = self._read_in_block(ino, index, boff, n, may_block)
            if part is None:
                return None
            parts.append(part)
            pos += n
        with self._lock:
            sequential = h.last_end == offset
            h.last_end = end
            now = wall_ns(self._clock)
            if node.atime_ns <= node.mtime_ns or node.atime_ns + _DAY_NS < now:
                node.atime_ns = now  # relatime; persisted with the next commit of the inode
        if sequential:
            for ahead in range(READ_AHEAD_BLOCKS):
                self._prefetch_block(ino, (end - 1) // bs + 1 + ahead)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_in_block(self, ino: int, index: int, boff: int, n: int,
                       may_block: bool = True) -> bytes | None:
        with self._lock:
            fb = self._buffers.get(ino)
            src: bytes | None = None
            cut = fb.cut.get(index) if fb is not None else None
            if fb is not None:
                block: bytes | bytearray | None = fb.dirty.get(index)
                if block is None:
                    block = fb.frozen(index)
                if block is not None:
                    src = bytes(block[boff:boff + n])
            if src is None:
                entry = self._meta.get(schema.block_key(ino, index))
                if entry is None:
                    return bytes(n)
                raw_len, ref_bytes = schema.parse_block_value(entry)
        if src is None:
            ref = ChunkRef.from_bytes(ref_bytes)
            loaded = self._chunks.load(ref, raw_len) if may_block else self._chunks.cached(ref)
            if loaded is None:
                return None
            src = loaded[boff:boff + n]
            if cut is not None:  # the stored version is longer than what the file keeps
                src = src[:max(cut - boff, 0)]
        if len(src) < n:
            src = src + bytes(n - len(src))
        return src

    def _prefetch_block(self, ino: int, index: int) -> None:
        with self._lock:
            entry = self._meta.get(schema.block_key(ino, index))
            if entry is None:
                return
        raw_len, ref_bytes = schema.parse_block_value(entry)
        self._chunks.prefetch(ChunkRef.from_bytes(ref_bytes), raw_len)
