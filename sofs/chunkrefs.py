"""Chunk reference counts and the garbage collector's queue, in the volume's metadata.

Chunks are content-addressed, so two blocks with the same bytes (in one file or in two) share one
chunk. Every block-map entry holds one reference (``R`` keys in :mod:`sofs.schema`). When a count
falls to zero the chunk is queued (``G`` keys) with a due time one grace period ahead; the
collector deletes it from the RING when it is due and still unreferenced. A chunk referenced again
before that simply stays (its queue entry is skipped).

These functions only stage writes in a :class:`~sofs.metadata.Batch`; the caller commits.
"""

from chunkstore.placement.keys import ChunkRef

from . import schema
from .metadata import Batch, MetaStore


def incref(batch: Batch, ref: ChunkRef) -> None:
    key = schema.refcount_key(ref.key)
    old = batch.get(key)
    count = schema.parse_refcount_value(old)[0] if old else 0
    batch.put(key, schema.refcount_value(count + 1, ref.to_bytes()))


def decref(batch: Batch, ref: ChunkRef, grace_ns: int, now_ns: int) -> None:
    """Drop one reference; the last one queues the chunk, due ``grace_ns`` after ``now_ns``
    (wall-clock nanoseconds)."""
    key = schema.refcount_key(ref.key)
    old = batch.get(key)
    if old is None:
        return  # never counted: nothing to release (fsck reports such maps)
    count = schema.parse_refcount_value(old)[0]
    count = max(count - 1, 0)
    batch.put(key, schema.refcount_value(count, ref.to_bytes()))
    if count == 0:
        batch.put(schema.gc_key(now_ns + grace_ns, ref.key), b"")


def refcount(meta: MetaStore, chunk_key: bytes) -> int:
    value = meta.get(schema.refcount_key(chunk_key))
    return schema.parse_refcount_value(value)[0] if value else 0


def due_garbage(meta: MetaStore, now_ns: int, limit: int = 1000) -> list[tuple[bytes, ChunkRef | None]]:
    """Queue entries due by ``now_ns``: (G key, the chunk's ref if it is still unreferenced)."""
    out: list[tuple[bytes, ChunkRef | None]] = []
    for gkey, _ in meta.scan(b"G"):
        due, chunk_key = schema.parse_gc_key(gkey)
        if due > now_ns or len(out) >= limit:
            break
        value = meta.get(schema.refcount_key(chunk_key))
        ref = None
        if value is not None:
            count, ref_bytes = schema.parse_refcount_value(value)
            if count == 0:
                ref = ChunkRef.from_bytes(ref_bytes)
        out.append((gkey, ref))
    return out
