"""The block map of files in the metadata: which stored chunk holds each block of a file.

Used by the data path (:class:`sofs.fileio.DataPath`): a block is mapped to a chunk (the chunk's
reference count goes up), unmapped (its chunk goes to the collector, which deletes it after a
grace period once nothing refers to it), or all blocks past an end are cut. Every change is
staged in a metadata batch that the caller commits with the rest of its operation.
"""

from __future__ import annotations

from collections.abc import Iterator

from chunkstore.placement.keys import ChunkRef

from . import chunkrefs, schema
from .collector import Collector
from .metadata import Batch, MetaStore


class BlockMap:
    """The block map of one volume's files."""

    def __init__(self, meta: MetaStore, collector: Collector, block_size: int) -> None:
        self._meta = meta
        self._collector = collector
        self._block_size = block_size

    def entry(self, ino: int, index: int) -> tuple[int, ChunkRef] | None:
        """(stored length, chunk) of a block, or None for a hole."""
        value = self._meta.get(schema.block_key(ino, index))
        if value is None:
            return None
        raw_len, ref = schema.parse_block_value(value)
        return raw_len, ChunkRef.from_bytes(ref)

    def stored_len(self, ino: int, index: int) -> int | None:
        """How many bytes of the block are stored (None: a hole)."""
        value = self._meta.get(schema.block_key(ino, index))
        return None if value is None else schema.parse_block_value(value)[0]

    def map(self, b: Batch, ino: int, index: int, ref: ChunkRef | None, raw_len: int,
            now: int) -> None:
        """Stage: the block is now ``ref`` (None: a hole); the chunk it had is released.
        The volume's block bytes follow (callers hold the filesystem's lock from staging to
        commit, so the read-modify-write of the counter never races)."""
        key = schema.block_key(ino, index)
        old = b.get(key)
        delta = 0
        if ref is not None:
            chunkrefs.incref(b, ref)
            b.put(key, schema.block_value(raw_len, ref.to_bytes()))
            delta += raw_len
        else:
            b.delete(key)
        if old is not None:
            old_len, old_ref = schema.parse_block_value(old)
            delta -= old_len
            self._collector.release(b, ChunkRef.from_bytes(old_ref), now)
        if delta:
            self._add_bytes(b, delta)

    def unmap(self, b: Batch, ino: int, first: int, stop: int | None, now: int) -> None:
        """Stage: unmap the stored blocks from ``first`` to ``stop`` (excluded; None: all)."""
        for index in list(self._indexes(ino, first)):
            if stop is not None and index >= stop:
                break
            self.map(b, ino, index, None, 0, now)

    def cut_beyond(self, b: Batch, ino: int, size: int, now: int) -> None:
        """Stage: unmap every block past ``size`` (the block holding the end stays)."""
        self.unmap(b, ino, -(-size // self._block_size), None, now)

    def free(self, b: Batch, ino: int, now: int) -> None:
        """Stage: forget the whole map of a deleted inode; its chunks go to the collector."""
        freed = 0
        for key, value in self._meta.scan(schema.block_prefix(ino)):
            raw_len, ref = schema.parse_block_value(value)
            self._collector.release(b, ChunkRef.from_bytes(ref), now)
            b.delete(key)
            freed += raw_len
        if freed:
            self._add_bytes(b, -freed)

    # ------------------------------------------------------------------ the volume's bytes

    def block_bytes(self) -> int:
        """The raw lengths of every mapped block of the volume, summed (committed)."""
        value = self._meta.get(schema.SUPER_BLOCK_BYTES)
        return schema.parse_le_u64(value) if value is not None else 0

    def count_block_bytes(self) -> int:
        """:meth:`block_bytes` by a scan of the whole map (fsck; volumes made before the
        counter existed)."""
        return sum(schema.parse_block_value(v)[0] for _, v in self._meta.scan(b"B"))

    def ensure_counter(self) -> None:
        """At mount: a volume made before the counter existed gets it, counted once."""
        if self._meta.get(schema.SUPER_BLOCK_BYTES) is None:
            b = self._meta.batch()
            b.put(schema.SUPER_BLOCK_BYTES, schema.le_u64(self.count_block_bytes()))
            self._meta.commit(b)

    def _add_bytes(self, b: Batch, delta: int) -> None:
        value = b.get(schema.SUPER_BLOCK_BYTES)
        now = schema.parse_le_u64(value) if value is not None else 0
        b.put(schema.SUPER_BLOCK_BYTES, schema.le_u64(max(now + delta, 0)))

    def _indexes(self, ino: int, first: int) -> Iterator[int]:
        for key, _ in self._meta.scan(schema.block_prefix(ino), schema.block_key(ino, first)):
            yield schema.parse_block_key(key)
