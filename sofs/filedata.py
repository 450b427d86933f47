"""In-memory file data of the SOFS layer: dirty block buffers per open file and a cache of blocks.

A :class:`FileBuffers` holds the blocks of one inode that were written but not yet stored
(``dirty``: bytearrays, the valid extent of each block, zero-filled where unwritten) and those
being stored right now (``inflight``: the newest frozen version per block, still readable).
Several flushes of one inode may run at once (a writer fills block after block); each detached
block version gets a sequence number and the block map only ever moves to a newer one
(``committed_seq``), so the map follows the order in which data was written. ``gate`` is
shared by those background flushes and taken exclusively by close/fsync/truncate, which must
see every earlier flush committed.

:class:`BlockCache` keeps recently read blocks, decoded, keyed by chunk key, bounded in bytes
(least recently used out first).
"""

import threading
from collections import OrderedDict

from .rwlock import SharedExclusiveLock


class FileBuffers:
    """Dirty and in-flight blocks of one inode."""

    __slots__ = ("dirty", "inflight", "committed_seq", "next_seq", "gate", "dirty_bytes",
                 "durable_size", "written", "cut", "abandons", "abandon_error")

    def __init__(self, durable_size: int) -> None:
        self.dirty: dict[int, bytearray] = {}
        self.inflight: dict[int, tuple[int, bytes | bytearray]] = {}  # frozen: never modified
        self.committed_seq: dict[int, int] = {}
        self.next_seq = 0
        self.gate = SharedExclusiveLock()
        self.dirty_bytes = 0
        # the file size as of the last complete flush: what the metadata says
        self.durable_size = durable_size
        # data was written since the last complete flush (a dirty block that only holds
        # stored content, loaded by truncate or after lost writes, is not written data)
        self.written = False
        # block index -> valid length: the stored version of that block is longer than the
        # file's end left by lost writes (sofs.fileio DataPath._abandon); loads and reads of
        # it keep only that much, until a flush stores the block again
        self.cut: dict[int, int] = {}
        self.abandons = 0  # times written data was dropped (a writer in progress must stop)
        self.abandon_error: Exception | None = None

    def frozen(self, index: int) -> bytes | bytearray | None:
        entry = self.inflight.get(index)
        return entry[1] if entry is not None else None

    def is_idle(self) -> bool:
        return not self.dirty and not self.inflight and not self.cut and self.gate.idle()


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

    def clear(self) -> None:
        """Drop every block (the counters stay)."""
        with self._lock:
            self._blocks.clear()
            self._size = 0

    def __contains__(self, key: bytes) -> bool:
        with self._lock:
            return key in self._blocks
