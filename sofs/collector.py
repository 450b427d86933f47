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
from .timestamps import wall_ns


class Collector:
    """The collector of one volume. ``lock`` is the filesystem's lock (held around metadata
    reads and commits); ``grace_ns`` how long an unreferenced chunk is kept."""

    def __init__(self, meta: MetaStore, store: ChunkStore, lock: threading.RLock,
                 grace_ns: int, clock: Clock) -> None:
        self._meta = meta
        self._store = store
        self._lock = lock
        self._clock = clock
        self.grace_ns = grace_ns
        self._gc_lock = SharedExclusiveLock()
        self._pass = threading.Lock()  # one collector pass at a time; held to pause it

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
                failed = set()
                for gkey, ref in due:
                    if ref is None:
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
                        if ref is not None and chunkrefs.refcount(self._meta, ref.key) == 0:
                            b.delete(schema.refcount_key(ref.key))
                    self._meta.commit(b)
            if len(failed) == len(due):
                return deleted
