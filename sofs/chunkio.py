"""File blocks as chunks in the RING: encoding and storing a block, fetching and decoding one
(once, however many readers want it at the same time), the cache of decoded blocks, and
read-ahead in the background.

:class:`ChunkIO` turns chunk-store errors into the file layer's: ``NoSpace`` when the RING is
full, ``DataUnavailable`` otherwise. A block of zeros is not stored (it is a hole: ``put``
returns None).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from chunkstore import errors as cerr
from chunkstore.api import ChunkStore
from chunkstore.placement.keys import ChunkRef
from chunkstore.protection.policy import Protection

from .blocks import BlockCodec
from .errors import DataUnavailable, FsError, NoSpace
from .filedata import BlockCache


def is_zero(data: bytes | bytearray) -> bool:
    if not data:
        return True
    # cheap probes first: real data almost never starts, ends and peaks in the middle at 0
    if data[0] or data[-1] or data[len(data) // 2]:
        return False
    return data.count(0) == len(data)


class ChunkIO:
    """Blocks of one volume in the chunk store (thread-safe)."""

    def __init__(self, store: ChunkStore, codec: BlockCodec, protection: Protection,
                 cache: BlockCache, pool: ThreadPoolExecutor) -> None:
        self._store = store
        self._codec = codec
        self._protection = protection
        self._cache = cache
        self._pool = pool
        self._lock = threading.Lock()
        self._fetching: dict[bytes, Future[bytes]] = {}

    def put(self, data: bytes | bytearray) -> ChunkRef | None:
        """Store one block; None for a block of zeros (not stored)."""
        if is_zero(data):
            return None
        payload = self._codec.encode(data)
        try:
            return self._store.put(payload, self._protection)
        except cerr.DiskFull as e:
            raise NoSpace(str(e)) from e
        except cerr.ChunkStoreError as e:
            raise DataUnavailable(f"cannot store a chunk: {e}") from e

    def cached(self, ref: ChunkRef) -> bytes | None:
        """The block if the cache has it (no I/O)."""
        return self._cache.get(ref.key)

    def load(self, ref: ChunkRef, raw_len: int) -> bytes:
        """A stored block, from the cache or fetched once however many readers want it."""
        block = self._cache.get(ref.key)
        if block is not None:
            return block
        with self._lock:
            future = self._fetching.get(ref.key)
            owner = future is None
            if future is None:
                future = self._fetching[ref.key] = Future()
        if not owner:
            return future.result()
        try:
            block = self._fetch(ref, raw_len)
        except BaseException as e:
            future.set_exception(e)
            raise
        else:
            future.set_result(block)
            return block
        finally:
            with self._lock:
                self._fetching.pop(ref.key, None)

    def _fetch(self, ref: ChunkRef, raw_len: int) -> bytes:
        try:
            payload = self._store.get(ref)
        except cerr.ChunkStoreError as e:
            raise DataUnavailable(f"chunk {ref.hex}: {e}") from e
        block = self._codec.decode(payload, raw_len)
        self._cache.put(ref.key, block)
        return block

    def prefetch(self, ref: ChunkRef, raw_len: int) -> None:
        """Load a block in the background unless it is cached or being fetched already."""
        with self._lock:
            if ref.key in self._fetching:
                return
        if ref.key in self._cache:
            return

        def run() -> None:
            try:
                self.load(ref, raw_len)
            except FsError:
                pass  # the reader that needs it will get the error itself

        self._pool.submit(run)
