"""The data path of a volume: writing, flushing, truncating and fallocate (reads: :mod:`.fileread`).

:class:`DataPath` is owned by :class:`sofs.fs.Filesystem` (which keeps the namespace and the
open-file handles) and is built from what it works on: the metadata store, the filesystem's
lock, the in-memory inodes (:class:`sofs.inodes.InodeTable`), the blocks in the RING
(:class:`sofs.chunkio.ChunkIO`), the collector (:class:`sofs.collector.Collector`), a worker
pool, the block size, the dirty limit and a clock.

Design note section 3: writes land in per-inode dirty block buffers (:mod:`sofs.filedata`); a
block that fills up, and every block on flush/fsync/release, is encoded (:mod:`sofs.blocks`),
stored in the RING as an immutable content-addressed chunk, and then the block map, the chunk
refcounts (:mod:`sofs.chunkrefs`) and the inode are committed in one batch. Overwrites and
truncates never modify a chunk: they map new chunks and drop references to old ones, which the
collector deletes after a grace period. Blocks of zeros are not stored: they become holes.
Several blocks of one file are stored at once; each detached version has a sequence number and
the map only moves forward.

A store that fails (the RING is full, or cannot take the data) is never retried behind the
writer's back, and what it did not store is never shown: the file goes back to what its last
complete flush left (as after a crash, :meth:`DataPath.recover_unflushed`), the error goes to
the operation that failed, and ``on_lost`` is told so that every open of the file reports it at
its next close or fsync and the mount can drop the kernel's copy of the lost data.

Durability: a complete flush (close of a written file, fsync, fdatasync, release) returns only
once its chunks are stored (the disks fsync them before they answer) and its commit is on
stable storage (:meth:`sofs.metadata.MetaStore.make_durable`, one log sync shared by concurrent
flushes); fsync also syncs every commit made before it (the file's create, renames...).
``synced_close`` False (a benchmark's switch only) leaves a close's commit in the page cache.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from chunkstore.clock import Clock
from chunkstore.placement.keys import ChunkRef

from . import filerecovery, schema
from .blockmap import BlockMap
from .chunkio import ChunkIO
from .collector import Collector
from .errors import FsError, InvalidArgument, IsADirectory, NoSpace
from .fallocate import HolePlan
from .filedata import FileBuffers
from .fileread import BlockReader
from .handles import OpenFile
from .inode import TRASHED, Inode
from .inodes import InodeTable
from .metadata import Batch, MetaStore
from .timestamps import wall_ns
from .worm.records import commit_key, pending_key

FLUSH_SLOTS = 3        # flushes that encode and store at once

log = logging.getLogger(__name__)

Extra = Callable[[Batch, int], None]  # more to stage in a flush's commit, given its time
# told when written data of a file could not be stored: (inode, size kept, size written, error)
LostHook = Callable[[int, int, int, FsError], None]


@dataclasses.dataclass(frozen=True)
class _Pending:
    index: int
    data: bytes | bytearray  # frozen: never modified once detached
    seq: int


class DataPath:
    """File contents of one volume. Thread-safe; ``lock`` is the filesystem's (reentrant)
    lock, held for in-memory state and metadata commits and never during chunk I/O."""

    def __init__(self, meta: MetaStore, lock: threading.RLock, inodes: InodeTable,
                 chunks: ChunkIO, collector: Collector, pool: ThreadPoolExecutor, *,
                 block_size: int, dirty_limit: int, clock: Clock,
                 on_lost: LostHook | None = None) -> None:
        self._meta = meta
        self._on_lost = on_lost
        self._lock = lock
        self._inodes = inodes
        self._chunks = chunks
        self._collector = collector
        self._pool = pool
        self._clock = clock
        self.block_size = block_size
        self.dirty_limit = dirty_limit
        self.synced_close = True  # see the module docstring (False: benchmarks only)
        # at most this many flushes encode and store at once: bounds memory (each holds a few
        # copies of a block) while keeping both cores and the disks busy
        self._flush_slots = threading.BoundedSemaphore(FLUSH_SLOTS)
        self._buffers: dict[int, FileBuffers] = {}
        self._dirty_total = 0
        self._map = BlockMap(meta, collector, block_size)
        self._map.ensure_counter()  # a volume from before the block-bytes counter
        self._reader = BlockReader(meta, lock, inodes, chunks, self._buffers,
                                   block_size=block_size, clock=clock)

    def _now(self) -> int:
        return wall_ns(self._clock)

    # ------------------------------------------------------------------ state

    @property
    def dirty_bytes(self) -> int:
        """Bytes written and not yet stored, over all files."""
        return self._dirty_total

    def block_bytes(self) -> int:
        """What the volume's files hold in stored blocks, before compression (committed)."""
        return self._map.block_bytes()

    def buffered(self) -> list[int]:
        """The inodes that have buffers (written data not yet stored, or a flush under way)."""
        with self._lock:
            return list(self._buffers)

    def stage_inode(self, b: Batch, node: Inode) -> None:
        """Stage the inode; a file being written keeps the size of its last complete flush
        (see :meth:`_commit_blocks`), whatever the operation that saves it."""
        fb = self._buffers.get(node.ino)
        if fb is not None and fb.durable_size != node.size:
            b.put(schema.inode_key(node.ino), dataclasses.replace(node, size=fb.durable_size).pack())
        else:
            b.put(schema.inode_key(node.ino), node.pack())

    def _buffers_of(self, ino: int) -> FileBuffers:
        fb = self._buffers.get(ino)
        if fb is None:
            # no buffers means nothing unflushed: the in-memory size is the persisted one
            fb = self._buffers[ino] = FileBuffers(self._inodes.get(ino).size)
            self._inodes.pin(ino)
        return fb

    def _drop_buffers(self, ino: int) -> FileBuffers | None:
        fb = self._buffers.pop(ino, None)
        self._inodes.unpin(ino)
        return fb

    def drop_idle_buffers(self, ino: int) -> None:
        """Forget the buffers of ``ino`` if nothing is pending in them (caller holds the lock)."""
        fb = self._buffers.get(ino)
        if fb is not None and fb.is_idle():
            self._drop_buffers(ino)

    # ------------------------------------------------------------------ write

    def _write_target(self, h: OpenFile, offset: int) -> int:
        if offset < 0:
            raise InvalidArgument("negative offset")
        if h.flags & os.O_APPEND:
            offset = self._inodes.get(h.ino).size
        return offset

    def _copy_in(self, fb: FileBuffers, buf: bytearray, boff: int, data: memoryview) -> None:
        have = len(buf)
        if boff > have:
            buf.extend(bytes(boff - have))
        buf[boff:boff + len(data)] = data
        fb.written = True
        grown = len(buf) - have
        fb.dirty_bytes += grown
        self._dirty_total += grown

    def _grow(self, ino: int, end: int) -> None:
        """A write up to ``end`` begins: the size grows first, so no flush ever sees a block
        beyond the end of file (caller holds the lock)."""
        self._buffers_of(ino)  # before the size changes: it records the persisted size
        node = self._inodes.get(ino)
        node.size = max(node.size, end)
        node.mtime_ns = node.ctime_ns = self._now()
        # set-id bits are not touched here: the kernel drops them with a setattr when a writer
        # lacks CAP_FSETID (FUSE without handle_killpriv)

    def write_nowait(self, h: OpenFile, offset: int, data: bytes) -> int | None:
        """:meth:`write` when it needs no I/O: only dirty or brand-new blocks are touched, none
        fills up and the dirty limit holds. Returns None (nothing written) otherwise."""
        bs = self.block_size
        with self._lock:
            ino = h.ino
            offset = self._write_target(h, offset)
            end = offset + len(data)
            if end % bs == 0 or self._dirty_total + len(data) > self.dirty_limit:
                return None
            fb = self._buffers_of(ino)
            first, last = offset // bs, (end - 1) // bs if data else offset // bs
            for index in range(first, last + 1):
                if index in fb.dirty:
                    continue
                if index in fb.inflight or (
                        self._meta.get(schema.block_key(ino, index)) is not None):
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

    def write(self, h: OpenFile, offset: int, data: bytes) -> int:
        ino = h.ino
        with self._lock:
            offset = self._write_target(h, offset)
            self._grow(ino, offset + len(data))
            started = self._buffers[ino].abandons
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
                if fb.abandons != started:  # this file's writes were dropped meanwhile
                    err = fb.abandon_error
                    raise type(err)(str(err)) if err is not None else NoSpace("writes dropped")
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
                try:
                    self._flush_inode(other, indexes, wait_all=False)
                except FsError:
                    if other == ino:
                        raise  # another file's failure is its writers' (see _abandon)
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
                entry = self._meta.get(schema.block_key(ino, index))
                if entry is None or not (boff > 0 or boff + n < schema.parse_block_value(entry)[0]):
                    buf = fb.dirty[index] = bytearray()
                    return buf
                raw_len, ref_bytes = schema.parse_block_value(entry)
            base = self._chunks.load(ChunkRef.from_bytes(ref_bytes), raw_len)
            with self._lock:
                # Install the loaded copy only if the block is still what we loaded: another
                # writer may have replaced (and even stored) it meanwhile.
                if (index in fb.dirty or index in fb.inflight or self._buffers.get(ino) is not fb
                        or self._meta.get(schema.block_key(ino, index)) != entry):
                    continue
                if index in fb.cut:  # lost writes left the file's end inside this block
                    base = base[:fb.cut[index]]
                buf = fb.dirty[index] = bytearray(base)
                fb.dirty_bytes += len(buf)
                self._dirty_total += len(buf)
                return buf

    # ------------------------------------------------------------------ flush

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
            node = self._inodes.cached(ino)
            return node is not None and fb.durable_size != node.size

    def flush(self, ino: int, sync: bool = False) -> None:
        """Store and commit everything written to ``ino`` so far, durably (module docstring);
        with ``sync`` (fsync) every earlier commit of the volume is made durable too."""
        self._flush_inode(ino, sync=sync)

    def flush_all(self) -> None:
        """Store every buffered file and sync the metadata.

        One file that cannot be stored does not keep the others from being flushed: the first
        error is raised after everything else was done."""
        errors = []
        for ino in self.buffered():
            try:
                self._flush_inode(ino)
            except FsError as e:
                errors.append(e)
        self._meta.commit(self._meta.batch(), sync=True)
        if errors:
            raise errors[0]

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
                self._meta.make_durable()
            return
        seq = None
        try:
            with (fb.gate.exclusive() if wait_all else fb.gate.shared()):
                with self._lock:
                    chosen = sorted(fb.dirty) if indexes is None else [i for i in indexes
                                                                       if i in fb.dirty]
                    pending = [self._detach(fb, index) for index in chosen]
                    complete = wait_all and indexes is None
                    if complete and not pending and not sync:
                        node = self._inodes.cached(ino)
                        if node is None or fb.durable_size == node.size:
                            return  # nothing written since the last complete flush
                with self._flush_slots:
                    seq = self._store_and_commit(ino, fb, pending, complete)
        except FsError as e:
            with fb.gate.exclusive():
                lost = self._abandon(ino, fb, e)
            if lost:
                raise
            # only sofs's own cut copy of the end block failed to be stored: nothing written
            # is lost and the file is consistent (its unflushed mark stays): no error
            log.info("inode %d: its cut end block is not stored yet (%s)", ino, e)
            return
        # outside every lock: a log sync, shared with concurrent flushes
        if sync:
            self._meta.make_durable()
        elif seq is not None and complete and self.synced_close:
            self._meta.make_durable(seq)

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
                          complete: bool, extra: Extra | None = None) -> int:
        """Store frozen blocks and commit them, plus what ``extra`` stages, in one batch;
        returns the commit's number in the metadata log."""
        stored: list[ChunkRef | None] = []
        try:
            with self._collector.storing():
                if len(pending) <= 1:
                    stored = [self._chunks.put(p.data) for p in pending]
                else:
                    futures = [self._pool.submit(self._chunks.put, p.data) for p in pending]
                    failure = None
                    for f in futures:
                        try:
                            stored.append(f.result())
                        except Exception as e:
                            failure = failure or e
                    if failure is not None:
                        raise failure
                with self._lock:
                    return self._commit_blocks(ino, fb, list(zip(pending, stored, strict=True)),
                                               complete, extra)
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
                self._collector.discard([ref for ref in stored if ref is not None])
            raise

    def _commit_blocks(self, ino: int, fb: FileBuffers,
                       stored: list[tuple[_Pending, ChunkRef | None]], complete: bool,
                       extra: Extra | None = None) -> int:
        """Map stored blocks (caller holds the lock); a version older than the one already
        mapped, or of a file deleted meanwhile, goes to the collector.

        Only a complete flush (close, fsync, release, truncate) persists the in-memory size.
        A partial one keeps the persisted size and marks the inode (``W``): its blocks may lie
        beyond that size, and the next mount after a crash cuts them off
        (:meth:`recover_unflushed`), so a crash never leaves a file longer than its stored
        data, nor stale bytes past its end.
        """
        node = self._inodes.cached(ino)
        alive = node is not None and (node.nlink > 0 or self._inodes.is_open(ino)
                                      or bool(node.flags & TRASHED))
        b = self._meta.batch()
        now = self._now()
        for p, ref in stored:
            if alive and p.seq > fb.committed_seq.get(p.index, -1):
                # not cached: the kernel's page cache keeps what was just written
                self._map.map(b, ino, p.index, ref, len(p.data), now)
                fb.committed_seq[p.index] = p.seq
            elif ref is not None:
                self._collector.release_unmapped(b, ref, now)
            if fb.inflight.get(p.index, (None,))[0] == p.seq:
                del fb.inflight[p.index]
            fb.cut.pop(p.index, None)  # stored again: the map's version is the right one
        if extra is not None:
            extra(b, now)
        for index in [i for i in fb.cut if b.get(schema.block_key(ino, i)) is None]:
            del fb.cut[index]  # truncated or punched away: nothing stored is left to cut
        if node is not None and alive:
            if complete:
                fb.durable_size = node.size
                fb.written = False
                b.delete(schema.unflushed_key(ino))
            elif stored:
                b.put(schema.unflushed_key(ino), b"")
            self.stage_inode(b, node)
        return self._meta.commit(b)

    def free_inode(self, b: Batch, ino: int) -> None:
        """Stage deleting an inode with no names and no opens: its map (the chunks go to the
        collector), xattrs, target, orphan mark; its buffers are dropped."""
        self._map.free(b, ino, self._now())
        for key, _ in self._meta.scan(schema.xattr_prefix(ino)):
            b.delete(key)
        b.delete(schema.symlink_key(ino))
        b.delete(schema.orphan_key(ino))
        b.delete(schema.unflushed_key(ino))
        b.delete(commit_key(ino))
        b.delete(pending_key(ino))
        b.delete(schema.trash_key(ino))
        b.delete(schema.inode_key(ino))
        self._inodes.forget(ino)
        fb = self._drop_buffers(ino)
        if fb is not None:
            self._dirty_total -= fb.dirty_bytes
            fb.dirty.clear()
            fb.dirty_bytes = 0

    def free_orphans(self) -> None:
        """At mount: free the inodes unlinked while open when the last mount died (``O``)."""
        for ino in [schema.parse_ino_key(k) for k, _ in self._meta.scan(b"O")]:
            b = self._meta.batch()
            self.free_inode(b, ino)
            self._meta.commit(b)

    def recover_unflushed(self) -> None:
        """After a crash: cut what partial flushes stored past each file's persisted size
        (:func:`sofs.filerecovery.recover_unflushed`)."""
        filerecovery.recover_unflushed(self)

    def _cut_beyond(self, ino: int, size: int) -> Extra:
        """Stage: unmap every block past ``size`` (the block holding the end stays)."""
        return lambda b, now: self._map.cut_beyond(b, ino, size, now)

    def _abandon(self, ino: int, fb: FileBuffers, error: FsError) -> bool:
        """A store failed: :func:`sofs.filerecovery.abandon` (whether written data was lost)."""
        return filerecovery.abandon(self, ino, fb, error)

    def _cut_dirty_tail(self, fb: FileBuffers, tail_index: int,
                        tail_len: int) -> bytearray | None:
        """The dirty block holding a new end keeps only its first ``tail_len`` bytes (caller
        holds the lock); returns it (None: not dirty, or the end is a block boundary)."""
        tail = fb.dirty.get(tail_index) if tail_len else None
        if tail is not None and len(tail) > tail_len:
            removed = len(tail) - tail_len
            del tail[tail_len:]
            fb.dirty_bytes -= removed
            self._dirty_total -= removed
        return tail

    # ------------------------------------------------------------------ truncate

    def truncate(self, ino: int, size: int) -> None:
        if size < 0:
            raise InvalidArgument("negative size")
        with self._lock:
            node = self._inodes.get(ino)
            if node.is_dir:
                raise IsADirectory("cannot truncate a directory")
            if not node.is_reg:
                raise InvalidArgument("not a regular file")
            fb = self._buffers_of(ino)
        bs = self.block_size
        tail_index, tail_len = divmod(size, bs)
        first_gone = tail_index + (1 if tail_len else 0)
        with self._lock:
            if size == node.size and not (tail_len and self._tail_needs_load(
                    ino, tail_index, tail_len)):
                # nothing to cut or store (the mount sets the kernel's size this way after
                # lost writes, when the RING is full): only the times change
                node.mtime_ns = node.ctime_ns = self._now()
                b = self._meta.batch()
                self.stage_inode(b, node)
                self._meta.commit(b)
                if fb.is_idle() and not self._inodes.is_open(ino):
                    self._drop_buffers(ino)
                return
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
                tail = self._cut_dirty_tail(fb, tail_index, tail_len)
                pending = [self._detach(fb, tail_index)] if tail is not None else []
            cut_blocks = self._cut_beyond(ino, size)

            def cut(b: Batch, now: int) -> None:
                cut_blocks(b, now)
                node.size = size
                node.mtime_ns = node.ctime_ns = now

            try:
                self._store_and_commit(ino, fb, pending, True, extra=cut)
            except FsError as e:
                self._abandon(ino, fb, e)
                raise
        with self._lock:
            if fb.is_idle() and not self._inodes.is_open(ino):
                self._drop_buffers(ino)

    # ------------------------------------------------------------------ fallocate

    def fallocate(self, ino: int, offset: int, end: int, *, punch: bool, grow: bool) -> None:
        """fallocate(2) once :mod:`sofs.fallocate` checked it: punch [offset, end) or grow the
        size to ``end``, in one complete flush of the file committed with sync."""
        with self._lock:
            node = self._inodes.get(ino)
            fb = self._buffers_of(ino)
        with fb.gate.exclusive():  # every earlier flush of the file is committed
            with self._lock:
                plan = HolePlan.of(offset, end if punch else offset, node.size, self.block_size)
            for index in plan.edges:  # stored content into dirty buffers (as a write at 1)
                self._writable_block(ino, index, 1, 0)
            with self._lock:
                self._dirty_total -= plan.zero(fb)
                pending = [self._detach(fb, index) for index in sorted(fb.dirty)]

            def finish(b: Batch, now: int) -> None:
                self._dirty_total -= plan.zero(fb)  # blocks a writer loaded meanwhile
                self._map.unmap(b, ino, plan.first_whole, plan.end_whole, now)
                if grow:
                    node.size = max(node.size, end)
                if not punch or plan.offset < plan.end:  # ext4 leaves a punch past EOF alone
                    node.mtime_ns = node.ctime_ns = now

            try:
                self._store_and_commit(ino, fb, pending, True, extra=finish)
            except FsError as e:
                self._abandon(ino, fb, e)
                raise
        self._meta.commit(self._meta.batch(), sync=True)
        with self._lock:
            if fb.is_idle() and not self._inodes.is_open(ino):
                self._drop_buffers(ino)

    def _tail_needs_load(self, ino: int, index: int, tail_len: int) -> bool:
        with self._lock:
            fb = self._buffers.get(ino)
            if fb is not None and index in fb.dirty:
                return False
            return (self._map.stored_len(ino, index) or 0) > tail_len

    # ------------------------------------------------------------------ read

    def read(self, h: OpenFile, offset: int, size: int, may_block: bool = True) -> bytes | None:
        """Up to ``size`` bytes at ``offset`` (:meth:`sofs.fileread.BlockReader.read`)."""
        return self._reader.read(h, offset, size, may_block)
