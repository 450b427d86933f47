"""In-memory :class:`~chunkstore.api.ChunkStore` for unit tests of the layers above.

Behaves like the real store from the caller's point of view (content keys, refs with the
policy chosen by size, verified reads, idempotent deletes, ChunkNotFound / ChunkCorrupt) and
offers fault injection: :meth:`MemoryChunkStore.corrupt`, :meth:`MemoryChunkStore.lose`,
and a ``total_bytes`` limit that makes ``put`` raise DiskFull.

Volume root records (:mod:`chunkstore.roots`) are kept in a dict volume_id -> RootRecord with
the RING's rules: ``put_root`` stores a higher seq and returns 1 (the number of "disks" holding
it), is a no-op for the same seq and body, raises KeyConflict for the same seq with another
body and StaleRoot for a lower seq; ``get_root`` / ``list_roots`` read the dict.
"""

from __future__ import annotations

import threading
from typing import Iterator

from chunkstore.api import Capacity, ChunkStore
from chunkstore.errors import ChunkCorrupt, ChunkNotFound, DiskFull, DiskUnavailable, FormatError, KeyConflict, StaleRoot
from chunkstore.placement.keys import MAX_CHUNK_SIZE, ChunkRef, chunk_key
from chunkstore.protection.policy import Protection
from chunkstore.roots import RootRecord, check_volume_id


class MemoryChunkStore(ChunkStore):
    """Chunks kept in a dict key -> payload. Thread-safe."""

    def __init__(self, total_bytes: int = 1 << 40) -> None:
        self._total = total_bytes
        self._chunks: dict[bytes, bytes] = {}
        self._roots: dict[bytes, RootRecord] = {}
        self._used = 0
        self._lock = threading.Lock()
        self._closed = False
        self.puts = 0  # number of put calls (for tests of the layer above)
        self.gets = 0

    def _check_open(self) -> None:
        if self._closed:
            raise DiskUnavailable("MemoryChunkStore is closed")

    def put(self, payload: bytes, protection: Protection) -> ChunkRef:
        self._check_open()
        if len(payload) > MAX_CHUNK_SIZE:
            raise FormatError(f"chunk too large: {len(payload)} bytes (a ChunkRef holds at most {MAX_CHUNK_SIZE})")
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

    def put_root(self, volume_id: bytes, seq: int, body: bytes) -> int:
        self._check_open()
        rec = RootRecord(volume_id, seq, body)
        with self._lock:
            held = self._roots.get(rec.volume_id)
            if held is not None:
                what = f"root record {rec.seq} of volume {rec.volume_id.hex()}"
                if held.seq > rec.seq:
                    raise StaleRoot(f"{what}: root record {held.seq} is already stored")
                if held.seq == rec.seq and held.body != rec.body:
                    raise KeyConflict(f"{what}: another body with this seq is stored")
            self._roots[rec.volume_id] = rec
        return 1

    def get_root(self, volume_id: bytes) -> RootRecord | None:
        self._check_open()
        volume_id = check_volume_id(volume_id)
        with self._lock:
            return self._roots.get(volume_id)

    def list_roots(self) -> dict[bytes, int]:
        self._check_open()
        with self._lock:
            return {v: r.seq for v, r in self._roots.items()}

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
