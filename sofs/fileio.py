"""The file-data half of :class:`sofs.fs.Filesystem`: writing, flushing, truncating and
reading file contents, and collecting unreferenced chunks.

:class:`FileIO` is a base class of ``Filesystem`` and works on the state that ``Filesystem``
sets up (``_lock``, ``meta``, ``store``, ``codec``, ``protection``, ``cache``, ``_buffers``,
``_inodes``, ``_pool``, ``_gc_lock``, ``_flush_slots``, ``_fetching``); it is split out so that
each module keeps one job: ``fs`` the namespace and open files, this one the data path.

Data path (design note section 3): writes land in per-inode dirty block buffers
(:mod:`sofs.filedata`); a block that fills up, and every block on flush/fsync/release, is encoded
(:mod:`sofs.blocks`), stored in the RING as an immutable content-addressed chunk, and then the
block map, the chunk refcounts (:mod:`sofs.chunkrefs`) and the inode are committed in one batch.
Overwrites and truncates never modify a chunk: they map new chunks and drop references to old
ones, which the garbage collector deletes after a grace period. Blocks of zeros are not stored:
they become holes. Several blocks of one file are stored at once; each detached version has a
sequence number and the map only moves forward.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future

from chunkstore import errors as cerr
from chunkstore.placement.keys import ChunkRef

from . import chunkrefs, schema
from .errors import (DataUnavailable, FsError, InvalidArgument, IsADirectory, NoSpace,
                     NoSuchEntry)
from .filedata import FileBuffers
from .metadata import Batch

READ_AHEAD_BLOCKS = 4  # blocks fetched ahead of a sequential reader
_DAY_NS = 86400 * 10**9


@dataclasses.dataclass(frozen=True)
class _Pending:
    index: int
    data: bytes | bytearray  # frozen: never modified once detached
    seq: int


def _is_zero(data: bytes | bytearray) -> bool:
    if not data:
        return True
    # cheap probes first: real data almost never starts, ends and peaks in the middle at 0
    if data[0] or data[-1] or data[len(data) // 2]:
        return False
    return data.count(0) == len(data)


def _now() -> int:
    return time.time_ns()


class FileIO:
    """Data operations of a volume (mixed into :class:`sofs.fs.Filesystem`)."""

    # ------------------------------------------------------------------ data: write

    def _write_target(self, fh: int, offset: int) -> tuple[int, int]:
        if offset < 0:
            raise InvalidArgument("negative offset")
        h = self._handle(fh)
        if h.flags & os.O_APPEND:
            offset = self._inode(h.ino).size
        return h.ino, offset

    def _buffers_of(self, ino: int) -> FileBuffers:
        fb = self._buffers.get(ino)
        if fb is None:
            # no buffers means nothing unflushed: the in-memory size is the persisted one
            fb = self._buffers[ino] = FileBuffers(self._inode(ino).size)
        return fb

    def _copy_in(self, fb: FileBuffers, buf: bytearray, boff: int, data: memoryview) -> None:
        have = len(buf)
        if boff > have:
            buf.extend(bytes(boff - have))
        buf[boff:boff + len(data)] = data
        grown = len(buf) - have
        fb.dirty_bytes += grown
        self._dirty_total += grown

    def _grow(self, ino: int, end: int) -> None:
        """A write up to ``end`` begins: the size grows first, so no flush ever sees a block
        beyond the end of file (caller holds the lock)."""
        self._buffers_of(ino)  # before the size changes: it records the persisted size
        node = self._inode(ino)
        node.size = max(node.size, end)
        node.mtime_ns = node.ctime_ns = _now()
        # set-id bits are not touched here: the kernel drops them with a setattr when a writer
        # lacks CAP_FSETID (FUSE without handle_killpriv)

    def write_nowait(self, fh: int, offset: int, data: bytes) -> int | None:
        """:meth:`write` when it needs no I/O: only dirty or brand-new blocks are touched, none
        fills up and the dirty limit holds. Returns None (nothing written) otherwise, and the
        caller uses :meth:`write` from a worker thread."""
        bs = self.block_size
        with self._lock:
            ino, offset = self._write_target(fh, offset)
            end = offset + len(data)
            if end % bs == 0 or self._dirty_total + len(data) > self.dirty_limit:
                return None
            fb = self._buffers_of(ino)
            first, last = offset // bs, (end - 1) // bs if data else offset // bs
            for index in range(first, last + 1):
                if index in fb.dirty:
                    continue
                if index in fb.inflight or (
                        self.meta.get(schema.block_key(ino, index)) is not None):
                    return None
            self._grow(ino, end)
            mv = memoryview(data)
            pos = 0
            while pos < len(mv):
                index, boff = divmod(offset + pos, bs)
                n = min(bs - boff, len(mv) - pos)
                buf = fb.dirty.get(index)
                if buf is None:
                    buf = fb.dirty[index] = bytearray()
                self._copy_in(fb, buf, boff, mv[pos:pos + n])
                pos += n
            return len(mv)

    def write(self, fh: int, offset: int, data: bytes) -> int:
        with self._lock:
            ino, offset = self._write_target(fh, offset)
            self._grow(ino, offset + len(data))
        bs = self.block_size
        mv = memoryview(data)
        pos = 0
        full: list[int] = []
        while pos < len(mv):
            index, boff = divmod(offset + pos, bs)
            n = min(bs - boff, len(mv) - pos)
            buf = self._writable_block(ino, index, boff, n)
            with self._lock:
                fb = self._buffers[ino]
                if fb.dirty.get(index) is not buf:
                    continue  # a flush took the buffer meanwhile: start from the new state
                self._copy_in(fb, buf, boff, mv[pos:pos + n])
                if len(buf) == bs and boff + n == bs:
                    full.append(index)
            pos += n
        if full:
            self._flush_inode(ino, full, wait_all=False)
        self._relieve_pressure(ino)
        return len(mv)

    def _relieve_pressure(self, ino: int) -> None:
        """Over the dirty limit: store full blocks of any file. Partial blocks (which a later
        write would have to reload and store again) only go when even that does not help and
        the hard limit, three times the soft one, is passed: many files written side by side
        each keep their block open without write amplification."""
        with self._lock:
            if self._dirty_total <= self.dirty_limit:
                return
            full = [(i, [x for x, buf in fb.dirty.items() if len(buf) == self.block_size])
                    for i, fb in self._buffers.items()]
        for other, indexes in full:
            if indexes:
                self._flush_inode(other, indexes, wait_all=False)
        with self._lock:
            if self._dirty_total <= 3 * self.dirty_limit:
                return
        self._flush_inode(ino, None, wait_all=False)

    def _writable_block(self, ino: int, index: int, boff: int, n: int) -> bytearray:
        """The dirty buffer of a block, created from its stored content when the write needs it."""
        while True:
            with self._lock:
                fb = self._buffers_of(ino)
                buf = fb.dirty.get(index)
                if buf is not None:
                    return buf
                frozen = fb.frozen(index)
                if frozen is not None:
                    buf = fb.dirty[index] = bytearray(frozen)
                    fb.dirty_bytes += len(buf)
                    self._dirty_total += len(buf)
                    return buf
                entry = self.meta.get(schema.block_key(ino, index))
                base = b""
                if entry is None or not (boff > 0 or boff + n < schema.parse_block_value(entry)[0]):
                    buf = fb.dirty[index] = bytearray()
                    return buf
                raw_len, ref_bytes = schema.parse_block_value(entry)
            base = self._load_block(ChunkRef.from_bytes(ref_bytes), raw_len)
            with self._lock:
                # Install the loaded copy only if the block is still what we loaded: another
                # writer may have replaced (and even stored) it meanwhile.
                if (index in fb.dirty or index in fb.inflight or self._buffers.get(ino) is not fb
                        or self.meta.get(schema.block_key(ino, index)) != entry):
                    continue
                buf = fb.dirty[index] = bytearray(base)
                fb.dirty_bytes += len(buf)
                self._dirty_total += len(buf)
                return buf

    # ------------------------------------------------------------------ data: flush

    def needs_flush(self, ino: int) -> bool:
        """Whether a (non-sync) flush of ``ino`` would have anything to store, commit or wait
        for: dirty or in-flight blocks, a flush under way, or a size not yet persisted (full
        blocks flushed by :meth:`write` leave the size to the next complete flush)."""
        with self._lock:
            fb = self._buffers.get(ino)
            if fb is None:
                return False
            if not fb.is_idle():
                return True
            node = self._inodes.get(ino)
            return node is not None and fb.durable_size != node.size

    def _flush_inode(self, ino: int, indexes: list[int] | None = None, sync: bool = False,
                     wait_all: bool = True) -> None:
        """Store dirty blocks of ``ino`` (all, or those in ``indexes``) and commit the map.

        ``wait_all`` (close, fsync, release) also waits for every flush of this inode that
        started earlier and then persists the file's size: on return everything written
        before is stored and committed. Flushes of full blocks from :meth:`write` run side by
        side instead, and leave the persisted size alone (see :meth:`_commit_blocks`).
        """
        with self._lock:
            fb = self._buffers.get(ino)
        if fb is None:
            if sync:
                self.meta.commit(self.meta.batch(), sync=True)
            return
        with (fb.gate.exclusive() if wait_all else fb.gate.shared()):
            with self._lock:
                chosen = sorted(fb.dirty) if indexes is None else [i for i in indexes
                                                                   if i in fb.dirty]
                pending = [self._detach(fb, index) for index in chosen]
                complete = wait_all and indexes is None
                if complete and not pending and not sync:
                    node = self._inodes.get(ino)
                    if node is None or fb.durable_size == node.size:
                        return  # nothing written since the last complete flush
            with self._flush_slots:
                self._store_and_commit(ino, fb, pending, complete)
        if sync:
            self.meta.commit(self.meta.batch(), sync=True)  # outside the lock: an fsync

    def _detach(self, fb: FileBuffers, index: int) -> _Pending:
        """Freeze a dirty block for storing (caller holds the lock)."""
        buf = fb.dirty.pop(index)
        fb.dirty_bytes -= len(buf)
        self._dirty_total -= len(buf)
        seq = fb.next_seq
        fb.next_seq += 1
        # the buffer itself is frozen from here on: new writes go to a fresh copy
        fb.inflight[index] = (seq, buf)
        return _Pending(index, buf, seq)

    def _store_and_commit(self, ino: int, fb: FileBuffers, pending: list[_Pending],
                          complete: bool, extra: Callable[[Batch, int], None] | None = None
                          ) -> None:
        """Store frozen blocks and commit them, plus what ``extra`` stages, in one batch."""
        stored: list[ChunkRef | None] = []
        try:
            with self._gc_lock.shared():
                if len(pending) <= 1:
                    stored = [self._encode_and_put(p.data) for p in pending]
                else:
                    futures = [self._pool.submit(self._encode_and_put, p.data) for p in pending]
                    failure = None
                    for f in futures:
                        try:
                            stored.append(f.result())
                        except Exception as e:
                            failure = failure or e
                    if failure is not None:
                        raise failure
                with self._lock:
                    self._commit_blocks(ino, fb, list(zip(pending, stored)), complete, extra)
        except BaseException:
            with self._lock:  # keep the data (the next flush tries again) ...
                for p in pending:
                    if fb.inflight.get(p.index, (None,))[0] == p.seq:
                        del fb.inflight[p.index]
                        if p.index not in fb.dirty:
                            fb.dirty[p.index] = bytearray(p.data)
                            fb.dirty_bytes += len(p.data)
                            self._dirty_total += len(p.data)
                # ... and hand the chunks that were stored to the collector
                self._discard_chunks([ref for ref in stored if ref is not None])
            raise

    def _discard_chunks(self, refs: list[ChunkRef]) -> None:
        """Queue stored but unmapped chunks for collection (caller holds the lock)."""
        if not refs:
            return
        b = self.meta.batch()
        now = _now()
        for ref in refs:
            chunkrefs.incref(b, ref)
            chunkrefs.decref(b, ref, self.gc_grace_ns, now)
        self.meta.commit(b)

    def _commit_blocks(self, ino: int, fb: FileBuffers,
                       stored: list[tuple[_Pending, ChunkRef | None]], complete: bool,
                       extra: Callable[[Batch, int], None] | None = None) -> None:
        """Map stored blocks (caller holds the lock); a version older than the one already
        mapped, or of a file deleted meanwhile, goes to the collector.

        Only a complete flush (close, fsync, release, truncate) persists the in-memory size.
        A partial one keeps the persisted size and marks the inode (``W``): its blocks may lie
        beyond that size, and the next mount after a crash cuts them off
        (:meth:`_recover_unflushed`), so a crash never leaves a file longer than its stored
        data, nor stale bytes past its end.
        """
        node = self._inodes.get(ino)
        alive = node is not None and not (node.nlink == 0 and not self._open_count.get(ino))
        b = self.meta.batch()
        now = _now()
        for p, ref in stored:
            if alive and p.seq > fb.committed_seq.get(p.index, -1):
                # not cached: the kernel's page cache keeps what was just written
                self._map_block(b, ino, p.index, ref, len(p.data), now)
                fb.committed_seq[p.index] = p.seq
            elif ref is not None:
                chunkrefs.incref(b, ref)
                chunkrefs.decref(b, ref, self.gc_grace_ns, now)
            if fb.inflight.get(p.index, (None,))[0] == p.seq:
                del fb.inflight[p.index]
        if extra is not None:
            extra(b, now)
        if alive:
            if complete:
                fb.durable_size = node.size
                b.delete(schema.unflushed_key(ino))
            elif stored:
                b.put(schema.unflushed_key(ino), b"")
            self._save(b, node)
        self.meta.commit(b)

    def _encode_and_put(self, data: bytes | bytearray) -> ChunkRef | None:
        if _is_zero(data):
            return None
        payload = self.codec.encode(data)
        try:
            return self.store.put(payload, self.protection)
        except cerr.DiskFull as e:
            raise NoSpace(str(e)) from e
        except cerr.ChunkStoreError as e:
            raise DataUnavailable(f"cannot store a chunk: {e}") from e

    def _map_block(self, b: Batch, ino: int, index: int, ref: ChunkRef | None, raw_len: int,
                   now: int) -> None:
        key = schema.block_key(ino, index)
        old = b.get(key)
        if ref is not None:
            chunkrefs.incref(b, ref)
            b.put(key, schema.block_value(raw_len, ref.to_bytes()))
        else:
            b.delete(key)
        if old is not None:
            chunkrefs.decref(b, ChunkRef.from_bytes(schema.parse_block_value(old)[1]),
                             self.gc_grace_ns, now)

    def _free_inode(self, b: Batch, ino: int) -> None:
        """Delete an inode with no names and no opens: its map, xattrs, target, orphan mark."""
        now = _now()
        for key, value in self.meta.scan(schema.block_prefix(ino)):
            chunkrefs.decref(b, ChunkRef.from_bytes(schema.parse_block_value(value)[1]),
                             self.gc_grace_ns, now)
            b.delete(key)
        for key, _ in self.meta.scan(schema.xattr_prefix(ino)):
            b.delete(key)
        b.delete(schema.symlink_key(ino))
        b.delete(schema.orphan_key(ino))
        b.delete(schema.unflushed_key(ino))
        b.delete(schema.inode_key(ino))
        self._inodes.pop(ino, None)
        fb = self._buffers.pop(ino, None)
        if fb is not None:
            self._dirty_total -= fb.dirty_bytes
            fb.dirty.clear()
            fb.dirty_bytes = 0

    def _recover_unflushed(self) -> None:
        """After a crash: cut the blocks that partial flushes stored beyond a file's persisted
        size, so the file is exactly what its last complete flush left."""
        inos = [schema.parse_ino_key(k) for k, _ in self.meta.scan(b"W")]
        for ino in inos:
            try:
                size = self._inode(ino).size
            except NoSuchEntry:
                b = self.meta.batch()
                b.delete(schema.unflushed_key(ino))
                self.meta.commit(b)
                continue
            fb = self._buffers_of(ino)
            tail_index, tail_len = divmod(size, self.block_size)
            pending = []
            if tail_len and self._tail_needs_load(ino, tail_index, tail_len):
                entry = self.meta.get(schema.block_key(ino, tail_index))
                raw_len, ref_bytes = schema.parse_block_value(entry)
                block = self._load_block(ChunkRef.from_bytes(ref_bytes), raw_len)
                with self._lock:
                    fb.dirty[tail_index] = bytearray(block[:tail_len])
                    pending = [self._detach(fb, tail_index)]
            self._store_and_commit(ino, fb, pending, True,
                                   extra=self._cut_beyond(ino, size))
            with self._lock:
                if fb.is_idle():
                    self._buffers.pop(ino, None)

    def _cut_beyond(self, ino: int, size: int) -> Callable[[Batch, int], None]:
        """Stage: unmap every block past ``size`` (the block holding the end stays)."""
        first_gone = -(-size // self.block_size)

        def cut(b: Batch, now: int) -> None:
            for key, _ in list(self.meta.scan(schema.block_prefix(ino),
                                              schema.block_key(ino, first_gone))):
                self._map_block(b, ino, schema.parse_block_key(key), None, 0, now)

        return cut

    # ------------------------------------------------------------------ data: truncate

    def truncate(self, ino: int, size: int) -> None:
        if size < 0:
            raise InvalidArgument("negative size")
        with self._lock:
            node = self._inode(ino)
            if node.is_dir:
                raise IsADirectory("cannot truncate a directory")
            if not node.is_reg:
                raise InvalidArgument("not a regular file")
            fb = self._buffers_of(ino)
        bs = self.block_size
        tail_index, tail_len = divmod(size, bs)
        first_gone = tail_index + (1 if tail_len else 0)
        with fb.gate.exclusive():
            # The block holding the new end keeps only its first tail_len bytes; it is stored
            # in the same commit as the new size, so stale bytes never reappear on a later extend.
            if tail_len and self._tail_needs_load(ino, tail_index, tail_len):
                self._writable_block(ino, tail_index, 0, 0)
            with self._lock:
                for index in [i for i in fb.dirty if i >= first_gone]:
                    buf = fb.dirty.pop(index)
                    fb.dirty_bytes -= len(buf)
                    self._dirty_total -= len(buf)
                buf = fb.dirty.get(tail_index) if tail_len else None
                if buf is not None and len(buf) > tail_len:
                    removed = len(buf) - tail_len
                    del buf[tail_len:]
                    fb.dirty_bytes -= removed
                    self._dirty_total -= removed
                pending = [self._detach(fb, tail_index)] if buf is not None else []
            cut_blocks = self._cut_beyond(ino, size)

            def cut(b: Batch, now: int) -> None:
                cut_blocks(b, now)
                node.size = size
                node.mtime_ns = node.ctime_ns = now

            self._store_and_commit(ino, fb, pending, True, extra=cut)
        with self._lock:
            if fb.is_idle() and not self._open_count.get(ino):
                self._buffers.pop(ino, None)

    def _tail_needs_load(self, ino: int, index: int, tail_len: int) -> bool:
        with self._lock:
            fb = self._buffers.get(ino)
            if fb is not None and index in fb.dirty:
                return False
            entry = self.meta.get(schema.block_key(ino, index))
            return entry is not None and schema.parse_block_value(entry)[0] > tail_len

    # ------------------------------------------------------------------ data: read

    def _load_block(self, ref: ChunkRef, raw_len: int) -> bytes:
        """A stored block, from the cache or fetched once however many readers want it."""
        block = self.cache.get(ref.key)
        if block is not None:
            return block
        with self._lock:
            future = self._fetching.get(ref.key)
            owner = future is None
            if owner:
                future = self._fetching[ref.key] = Future()
        if not owner:
            return future.result()
        try:
            block = self._fetch_block(ref, raw_len)
        except BaseException as e:
            future.set_exception(e)
            raise
        else:
            future.set_result(block)
            return block
        finally:
            with self._lock:
                self._fetching.pop(ref.key, None)

    def _fetch_block(self, ref: ChunkRef, raw_len: int) -> bytes:
        try:
            payload = self.store.get(ref)
        except cerr.ChunkStoreError as e:
            raise DataUnavailable(f"chunk {ref.hex}: {e}") from e
        block = self.codec.decode(payload, raw_len)
        self.cache.put(ref.key, block)
        return block

    def _prefetch_block(self, ino: int, index: int) -> None:
        with self._lock:
            entry = self.meta.get(schema.block_key(ino, index))
            if entry is None:
                return
            raw_len, ref_bytes = schema.parse_block_value(entry)
            ref = ChunkRef.from_bytes(ref_bytes)
            if ref.key in self._fetching or ref.key in self.cache:
                return

        def run() -> None:
            try:
                self._load_block(ref, raw_len)
            except FsError:
                pass  # the reader that needs it will get the error itself

        self._pool.submit(run)

    def read(self, fh: int, offset: int, size: int) -> bytes:
        result = self._read(fh, offset, size, may_block=True)
        assert result is not None
        return result

    def read_nowait(self, fh: int, offset: int, size: int) -> bytes | None:
        """:meth:`read` when every block it needs is in memory (dirty, in flight, cached or a
        hole); None otherwise, and the caller uses :meth:`read` from a worker thread."""
        return self._read(fh, offset, size, may_block=False)

    def _read(self, fh: int, offset: int, size: int, may_block: bool) -> bytes | None:
        with self._lock:
            h = self._handle(fh)
            ino = h.ino
            node = self._inode(ino)
            if offset >= node.size or size <= 0:
                return b""
            end = min(offset + size, node.size)
        bs = self.block_size
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
            if node.atime_ns <= node.mtime_ns or node.atime_ns + _DAY_NS < _now():
                node.atime_ns = _now()  # relatime; persisted with the next commit of the inode
        if sequential:
            for ahead in range(READ_AHEAD_BLOCKS):
                self._prefetch_block(ino, (end - 1) // bs + 1 + ahead)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_in_block(self, ino: int, index: int, boff: int, n: int,
                       may_block: bool = True) -> bytes | None:
        with self._lock:
            fb = self._buffers.get(ino)
            src = None
            if fb is not None:
                src = fb.dirty.get(index)
                if src is None:
                    src = fb.frozen(index)
                if src is not None:
                    src = bytes(src[boff:boff + n])
            if src is None:
                entry = self.meta.get(schema.block_key(ino, index))
                if entry is None:
                    return bytes(n)
                raw_len, ref_bytes = schema.parse_block_value(entry)
        if src is None:
            ref = ChunkRef.from_bytes(ref_bytes)
            block = self._load_block(ref, raw_len) if may_block else self.cache.get(ref.key)
            if block is None:
                return None
            src = block[boff:boff + n]
        if len(src) < n:
            src = src + bytes(n - len(src))
        return src

    # ------------------------------------------------------------------ garbage collection

    def collect_garbage(self, now_ns: int | None = None, batch: int = 8) -> int:
        """Delete chunks whose refcount has been 0 for the grace period; returns how many.

        Each batch runs under the exclusive side of the GC lock, so no flush can put (and then
        map) a chunk with the same content while it is being deleted; flushes wait for one
        batch at most, not for the whole pass.
        """
        now_ns = _now() if now_ns is None else now_ns
        with self._gc_pass:
            return self._collect(now_ns, batch)

    @contextlib.contextmanager
    def gc_paused(self) -> Iterator[None]:
        """No chunk is collected inside this block (an online fsck probes a stable store);
        entering waits for a running pass to end."""
        with self._gc_pass:
            yield

    def _collect(self, now_ns: int, batch: int) -> int:
        deleted = 0
        while True:
            with self._gc_lock.exclusive():
                with self._lock:
                    due = chunkrefs.due_garbage(self.meta, now_ns, limit=batch)
                if not due:
                    return deleted
                failed = set()
                for gkey, ref in due:
                    if ref is None:
                        continue
                    try:
                        self.store.delete(ref)
                        deleted += 1
                    except cerr.ChunkStoreError:
                        failed.add(gkey)  # stays queued; the next pass tries again
                with self._lock:
                    b = self.meta.batch()
                    for gkey, ref in due:
                        if gkey in failed:
                            continue
                        b.delete(gkey)
                        if ref is not None and chunkrefs.refcount(self.meta, ref.key) == 0:
                            b.delete(schema.refcount_key(ref.key))
                    self.meta.commit(b)
            if len(failed) == len(due):
                return deleted

