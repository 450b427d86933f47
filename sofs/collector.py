"""The garbage collector of a volume: releasing chunk references into its queue, and deleting
the chunks whose grace period has passed.

Chunks are immutable and shared (content-addressed), so a block that is overwritten, truncated
away or unlinked only drops a reference (:mod:`sofs.chunkrefs`); a count that reaches 0 queues
the chunk, due one grace period later. :meth:`Collector.collect` deletes the due chunks that are
still unreferenced. The grace period is measured on the wall clock of the given
:class:`~chunkstore.clock.Clock` (the queue is stored with the metadata and outlives this
process), so a test drives it with a ``FakeClock`` instead of waiting.

A flush holds the shared side of :meth:`Collector.storing` from putting a chunk until its
reference is committed; each batch of deletions holds the exclusive side, so a chunk is never
deleted between being (re)written and being referenced, and a flush waits for one batch at most.

Snapshots (:mod:`sofs.snapshot`) pin chunks: a due chunk that a snapshot still references is not
deleted but queued again, ``PIN_RECHECK_NS`` later (its ``R`` key stays, at 0, so fsck and a
volume deletion still see it); deleting the snapshot queues the chunks only it kept alive
(:meth:`Collector.requeue_released`). A pass that cannot read the snapshots' catalog or one of
their metadata raises SnapshotUnreadable before deleting anything of its batch: the collector
stops rather than delete what it cannot prove unreferenced.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from chunkstore import errors as cerr
from chunkstore.api import ChunkStore
from chunkstore.clock import Clock
from chunkstore.placement.keys import ChunkRef

from . import chunkrefs, schema
from .metadata import Batch, MetaStore
from .rwlock import SharedExclusiveLock
from .snapshot.pins import SnapshotPins, volume_dir_of
from .timestamps import wall_ns

PIN_RECHECK_NS = 7 * 24 * 3600 * 10**9  # a pinned chunk is looked at again a week later
REQUEUE_BATCH = 1000


class Collector:
    """The collector of one volume. ``lock`` is the filesystem's lock (held around metadata
    reads and commits); ``grace_ns`` how long an unreferenced chunk is kept; ``pins``: the
    volume's snapshots (default: those beside ``meta``, :func:`~sofs.snapshot.pins.volume_dir_of`)."""

    def __init__(self, meta: MetaStore, store: ChunkStore, lock: threading.RLock,
                 grace_ns: int, clock: Clock, pins: SnapshotPins | None = None) -> None:
        self._meta = meta
        self._store = store
        self._lock = lock
        self._clock = clock
        self.grace_ns = grace_ns
        self._gc_lock = SharedExclusiveLock()
        self._pass = threading.Lock()  # one collector pass at a time; held to pause it
        self.pins = pins if pins is not None else SnapshotPins(volume_dir_of(meta))
        self.pinned = 0  # due chunks kept for a snapshot, in all passes so far

    def now_ns(self) -> int:
        return wall_ns(self._clock)

    # ------------------------------------------------------------------ releasing

    def release(self, b: Batch, ref: ChunkRef, now_ns: int) -> None:
        """Stage dropping one reference to ``ref`` (queued when it was the last)."""
        chunkrefs.decref(b, ref, self.grace_ns, now_ns)

    def release_unmapped(self, b: Batch, ref: ChunkRef, now_ns: int) -> None:
        """Stage handing over a chunk that was stored but that no block maps (a stale version,
        a failed flush): counted once and released, so it is collected like any other."""
        chunkrefs.incref(b, ref)
        chunkrefs.decref(b, ref, self.grace_ns, now_ns)

    def discard(self, refs: list[ChunkRef]) -> None:
        """Commit :meth:`release_unmapped` of ``refs`` (caller holds the lock)."""
        if not refs:
            return
        b = self._meta.batch()
        now = self.now_ns()
        for ref in refs:
            self.release_unmapped(b, ref, now)
        self._meta.commit(b)

    def storing(self) -> contextlib.AbstractContextManager[None]:
        """Held (shared) by a flush from storing chunks until their references are committed."""
        return self._gc_lock.shared()

    # ------------------------------------------------------------------ collecting

    def collect(self, now_ns: int | None = None, batch: int = 8) -> int:
        """Delete chunks whose refcount has been 0 for the grace period; returns how many.

        Each batch runs under the exclusive side of the GC lock, so no flush can put (and then
        map) a chunk with the same content while it is being deleted; flushes wait for one
        batch at most, not for the whole pass.
        """
        now_ns = self.now_ns() if now_ns is None else now_ns
        with self._pass:
            self.pins.refresh()  # SnapshotUnreadable: nothing is deleted
            return self._collect(now_ns, batch)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No chunk is collected inside this block; entering waits for a running pass."""
        with self._pass:
            yield

    def _collect(self, now_ns: int, batch: int) -> int:
        deleted = 0
        while True:
            with self._gc_lock.exclusive():
                with self._lock:
                    due = chunkrefs.due_garbage(self._meta, now_ns, limit=batch)
                if not due:
                    return deleted
                # every pin of the batch is known before anything of it is deleted
                pinned = {gkey for gkey, ref in due
                          if ref is not None and self.pins.pinned_by(ref.key) is not None}
                failed = set()
                for gkey, ref in due:
                    if ref is None or gkey in pinned:
                        continue
                    try:
                        self._store.delete(ref)
                        deleted += 1
                    except cerr.ChunkStoreError:
                        failed.add(gkey)  # stays queued; the next pass tries again
                with self._lock:
                    b = self._meta.batch()
                    for gkey, ref in due:
                        if gkey in failed:
                            continue
                        b.delete(gkey)
                        if gkey in pinned:
                            assert ref is not None
                            b.put(schema.gc_key(min(now_ns + PIN_RECHECK_NS, 2**64 - 1), ref.key), b"")
                            continue
                        if ref is not None and chunkrefs.refcount(self._meta, ref.key) == 0:
                            b.delete(schema.refcount_key(ref.key))
                    self._meta.commit(b)
                self.pinned += len(pinned)
            if len(failed) == len(due):
                return deleted

    def requeue_released(self, snapshot: MetaStore) -> int:
        """Queue (due one grace period from now) every chunk the snapshot ``snapshot``
        references that the live volume no longer does, so that the collector looks at it
        again once the snapshot is gone: returns how many. A chunk the live volume does not
        know at all (its metadata was restored from an older checkpoint) gets a zero count
        first. Other snapshots still pin what they reference (:meth:`collect` checks)."""
        queued = 0
        todo: list[tuple[bytes, bytes]] = []

        def flush() -> None:
            nonlocal queued
            with self._lock:
                b = self._meta.batch()
                due = self.now_ns() + self.grace_ns
                for chunk_key, ref_bytes in todo:
                    value = self._meta.get(schema.refcount_key(chunk_key))
                    if value is None:
                        b.put(schema.refcount_key(chunk_key), schema.refcount_value(0, ref_bytes))
                    elif schema.parse_refcount_value(value)[0] > 0:
                        continue
                    b.put(schema.gc_key(due, chunk_key), b"")
                    queued += 1
                self._meta.commit(b)
            todo.clear()

        for key, value in snapshot.scan(b"R"):
            count, ref_bytes = schema.parse_refcount_value(value)
            if count > 0:
                todo.append((bytes(key[1:]), ref_bytes))
            if len(todo) >= REQUEUE_BATCH:
                flush()
        flush()
        return queued

    def close(self) -> None:
        """Close the snapshots the pins hold open."""
        self.pins.close()
