"""In-memory :class:`~chunkstore.store.ChunkStore` for unit tests of the layers above.

Behaves like the real store from the caller's point of view (content keys, refs with the
policy chosen by size, verified reads, idempotent deletes, ChunkNotFound / ChunkCorrupt) and
offers fault injection: :meth:`MemoryChunkStore.corrupt`, :meth:`MemoryChunkStore.lose`,
and a ``total_bytes`` limit that makes ``put`` raise DiskFull.
"""

from __future__ import annotations

import threading
from typing import Iterator

from .errors import ChunkCorrupt, ChunkNotFound, ChunkStoreError, DiskFull
from .keys import ChunkRef, MAX_CHUNK_SIZE, chunk_key
from .policy import Protection
from .store import Capacity, ChunkStore


class MemoryChunkStore(ChunkStore):
    """Chunks kept in a dict key -> payload. Thread-safe."""

    def __init__(self, total_bytes: int = 1 << 40) -> None:
        self._total = total_bytes
        self._chunks: dict[bytes, bytes] = {}
        self._used = 0
        self._lock = threading.Lock()
        self._closed = False
        self.puts = 0  # number of put calls (for tests of the layer above)
        self.gets = 0

    def _check_open(self) -> None:
        if self._closed:
            raise ChunkStoreError("store is closed")

    def put(self, payload: bytes, protection: Protection) -> ChunkRef:
        self._check_open()
        if len(payload) > MAX_CHUNK_SIZE:
            raise ChunkStoreError(f"chunk too large: {len(payload)} bytes")
        data = bytes(payload)
        key = chunk_key(data)
        ref = ChunkRef(key, len(data), protection.for_size(len(data)).code)
        with self._lock:
            self.puts += 1
            if key not in self._chunks:
                if self._used + len(data) > self._total:
                    raise DiskFull(f"memory store full ({self._total} bytes)")
                self._chunks[key] = data
                self._used += len(data)
        return ref

    def get(self, ref: ChunkRef) -> bytes:
        self._check_open()
        with self._lock:
            self.gets += 1
            data = self._chunks.get(ref.key)
        if data is None:
            raise ChunkNotFound(f"chunk {ref.hex} not found")
        if not ref.verify(data):
            raise ChunkCorrupt(f"chunk {ref.hex} does not verify")
        return data

    def delete(self, ref: ChunkRef) -> None:
        self._check_open()
        with self._lock:
            data = self._chunks.pop(ref.key, None)
            if data is not None:
                self._used -= len(data)

    def capacity(self) -> Capacity:
        with self._lock:
            return Capacity(self._total, self._total - self._used, self._used)

    def close(self) -> None:
        self._closed = True

    # -- test helpers -------------------------------------------------------------------

    def contains(self, ref: ChunkRef) -> bool:
        """True if the chunk is stored (whether or not it verifies)."""
        with self._lock:
            return ref.key in self._chunks

    def keys(self) -> Iterator[bytes]:
        """Snapshot of the stored keys."""
        with self._lock:
            return iter(list(self._chunks))

    def __len__(self) -> int:
        with self._lock:
            return len(self._chunks)

    def corrupt(self, ref: ChunkRef) -> None:
        """Flip a bit of the stored payload (or append a byte if empty): get raises ChunkCorrupt."""
        with self._lock:
            data = bytearray(self._chunks[ref.key])
            if data:
                data[0] ^= 0x01
            else:
                data.append(0)
            self._chunks[ref.key] = bytes(data)

    def lose(self, ref: ChunkRef) -> None:
        """Forget a chunk without going through delete: get raises ChunkNotFound."""
        self.delete(ref)
