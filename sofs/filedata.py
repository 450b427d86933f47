"""In-memory file data of the SOFS layer: dirty block buffers per open file and a cache of blocks.

A :class:`FileBuffers` holds the blocks of one inode that were written but not yet stored
(``dirty``: bytearrays, the valid extent of each block, zero-filled where unwritten) and those
being stored right now (``inflight``: frozen bytes, still readable). Blocks reach the RING only in
:class:`sofs.fs.Filesystem` flushes, one flush of an inode at a time (``flush_lock``), so the block
map is committed in the order the data was written.

:class:`BlockCache` keeps recently read or written blocks, decoded, keyed by chunk key, bounded in
bytes (least recently used out first).
"""

import threading
from collections import OrderedDict


class FileBuffers:
    """Dirty and in-flight blocks of one inode."""

    __slots__ = ("dirty", "inflight", "flush_lock", "dirty_bytes")

    def __init__(self) -> None:
        self.dirty: dict[int, bytearray] = {}
        self.inflight: dict[int, bytes] = {}
        self.flush_lock = threading.Lock()
        self.dirty_bytes = 0

    def is_idle(self) -> bool:
        return not self.dirty and not self.inflight and not self.flush_lock.locked()


class BlockCache:
    """Decoded blocks by chunk key; thread-safe; at most ``capacity`` bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            block = self._blocks.get(key)
            if block is None:
                self.misses += 1
                return None
            self._blocks.move_to_end(key)
            self.hits += 1
            return block

    def put(self, key: bytes, block: bytes) -> None:
        if len(block) > self.capacity:
            return
        with self._lock:
            old = self._blocks.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._blocks[key] = block
            self._size += len(block)
            while self._size > self.capacity:
                _, evicted = self._blocks.popitem(last=False)
                self._size -= len(evicted)

    def __contains__(self, key: bytes) -> bool:
        with self._lock:
            return key in self._blocks
