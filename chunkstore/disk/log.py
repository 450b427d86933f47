"""The append log of one disk: the active container, its rolling, and the group commit.

:class:`ContainerLog` is the write half of a :class:`~chunkstore.disk.store.DiskStore`, which
owns it. It owns the active container (the highest id, where every record is appended) and
starts the next one past ``container_size``; it queues the index change of every appended
record (a :class:`~chunkstore.disk.pending.PendingOp`) and commits queued changes in groups;
it keeps the committed high-water mark, the size and live bytes of every container and the
piece count; and it holds the state the write path depends on: *closed* (close() began:
nothing more is appended) and *broken* (a write or sync failed: this disk takes no more
writes).

Write order of one record (a put, a delete's tombstone, a compaction move), step by step:

1. ``with log.appending() as a:`` takes the append lock and refuses (DiskUnavailable) once
   close() began. The check is made under the lock, which close() also takes to set the
   flag, so nothing is ever written through a descriptor close() has released;
2. ``a.append(bufs)`` ``pwritev``s the record at the end of the active container. If it would
   not fit, the active container is first sealed (fdatasynced: its records are durable) and
   the next one created. On ENOSPC the partial record is truncated away and DiskFull raised,
   so no torn record shadows later appends; any other write error breaks the log;
3. ``a.enqueue(op)`` queues the record's index change. Until it is committed, the op is the
   disk's answer for its piece id (``a.pending(pid)``), so a second put or a delete of the
   same piece sees it;
4. ``log.wait_committed(op)``, after leaving the append lock: the first waiter that finds no
   group commit running becomes the leader. It takes every queued op, ``fdatasync``s the
   active container once for all of them (their records are durable from here), then writes
   all their index entries plus the new high-water mark (chunkstore.disk.index) in one
   rocksdict WriteBatch. The waiters whose ops were in its batch just return; the caller acks
   then. A failed sync or index write fails every op of the batch and breaks the log (after a
   failed fsync the page cache state is unknown).

An index change with no record (compaction's DROP of a piece whose record failed to verify)
takes steps 1, 3 and 4.

The WriteBatch is not fsynced on its own: the fdatasync already made the records durable, and
recovery on open (chunkstore.disk.recovery) re-indexes every record after the durable
high-water mark, so an index write lost in a power cut is rebuilt from the containers. Whoever
deletes a sealed container (compaction, through :meth:`ContainerLog.remove_sealed`) syncs the
index first.

``close()`` waits for a running group commit, marks the log closed under the append lock,
then leads one last group commit of what was queued before (those callers are answered
normally) while holding off any other, and only then releases the active container.
"""

from __future__ import annotations

import errno
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from rocksdict import Rdict, WriteBatch, WriteOptions

from chunkstore.atomicfile import fsync_dir
from chunkstore.disk import container as ctr
from chunkstore.disk.fdcache import FdCache, FileHandle
from chunkstore.disk.index import HWM_KEY, encode_hwm, iter_pieces
from chunkstore.disk.pending import DEL, DROP, PUT, PendingOp
from chunkstore.errors import ChunkStoreError, DiskFull, DiskUnavailable

_NOSPACE = (errno.ENOSPC, errno.EDQUOT)

Data = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class LogUsage:
    """What the containers of one disk hold, from the log's accounting."""

    used_bytes: int  # size of every container file, file headers included
    live_bytes: int  # record bytes (header + data) of the indexed pieces
    live_pieces: int
    containers: int


@dataclass(frozen=True, slots=True)
class SealedContainer:
    """A container no longer appended to whose records are all below the committed
    high-water mark (so recovery never scans it): one compaction may rewrite."""

    cid: int
    size: int  # file size, file header included
    live_bytes: int  # record bytes (header + data) of the pieces indexed in it


class Appender:
    """The append lock, held: what may be done inside a ``with log.appending() as a:`` block
    (:meth:`ContainerLog.appending`). The log hands it its lock-held operations; once the
    block has ended they raise RuntimeError.
    """

    __slots__ = ("_pending", "_append", "_enqueue", "_ended")

    def __init__(
        self,
        pending: Callable[[bytes], PendingOp | None],
        append: Callable[[list[Data]], tuple[int, int]],
        enqueue: Callable[[PendingOp], PendingOp],
    ) -> None:
        self._pending = pending
        self._append = append
        self._enqueue = enqueue
        self._ended = False

    def _check(self) -> None:
        if self._ended:
            raise RuntimeError("Appender used after its ContainerLog.appending() block")

    def pending(self, pid: bytes) -> PendingOp | None:
        """The queued, not yet committed op for piece id ``pid``, if any."""
        self._check()
        return self._pending(pid)

    def append(self, bufs: list[Data]) -> tuple[int, int]:
        """Write one record (``bufs`` back to back) at the end of the active container (step
        2); returns (container id, offset) of the record. DiskFull (nothing written) or
        DiskUnavailable (the log is broken, or closed)."""
        self._check()
        return self._append(bufs)

    def enqueue(self, op: PendingOp) -> PendingOp:
        """Queue ``op`` for the next group commit (step 3); returns it, for
        :meth:`ContainerLog.wait_committed`."""
        self._check()
        return self._enqueue(op)

    def end(self) -> None:
        """End the block: called by :meth:`ContainerLog.appending` as it releases the lock."""
        self._ended = True


class ContainerLog:
    """The append log of the disk at ``name`` (used in messages): containers in ``cdir``,
    index ``db``, container files opened through ``cache``.

    ``containers`` (ids, oldest first) and ``end`` (where appends resume in the last one) are
    what recovery (chunkstore.disk.recovery) returned; the index must be recovered, since the
    live-byte accounting is read from it here. ``check_alive`` raises DiskUnavailable if the
    disk vanished: each group commit calls it before syncing. The caller keeps ``db`` and
    ``cache`` open until :meth:`close` has returned, and closes them itself.
    """

    def __init__(
        self,
        name: str,
        cdir: str,
        db: Rdict,
        cache: FdCache,
        containers: list[int],
        end: int,
        *,
        container_size: int,
        check_alive: Callable[[], None],
    ) -> None:
        self._name = name
        self._cdir = cdir
        self._db = db
        self._cache = cache
        self._container_size = container_size
        self._check_alive = check_alive
        self._wopts = WriteOptions()

        self._lock = threading.Lock()  # append lock: active container, queue, pending, accounting
        self._cv = threading.Condition(threading.Lock())  # group-commit hand-off
        self._syncing = False
        self._queue: list[PendingOp] = []
        self._pending: dict[bytes, PendingOp] = {}
        self._broken: ChunkStoreError | None = None
        self._closed = False
        self._hwm_due = False  # seal_active: commit the high-water mark even with no op queued

        last = containers[-1]
        self._sizes = {cid: end if cid == last else os.stat(self._path(cid)).st_size for cid in containers}
        self._live: dict[int, int] = {}
        self._count = 0
        for info in iter_pieces(db.items()):
            self._live[info.container] = self._live.get(info.container, 0) + ctr.RECORD_HEADER_SIZE + info.length
            self._count += 1
        self._active_cid = last
        self._end = end
        self._hwm_cid = last  # recovery committed a high-water mark in the last container
        self._active: FileHandle = cache.acquire(last)

    # -- state -------------------------------------------------------------------------

    def check_open(self) -> None:
        """DiskUnavailable once :meth:`close` began."""
        if self._closed:
            raise DiskUnavailable(f"{self._name}: disk store is closed")

    def check_writable(self) -> None:
        """DiskUnavailable once :meth:`close` began; the error that broke the log, if one did."""
        self.check_open()
        if self._broken is not None:
            raise self._broken

    def usage(self) -> LogUsage:
        """Sizes and live bytes of all containers, and the number of indexed pieces."""
        with self._lock:
            return LogUsage(sum(self._sizes.values()), sum(self._live.values()), self._count, len(self._sizes))

    def sealed(self) -> list[SealedContainer]:
        """The sealed containers, oldest first."""
        with self._lock:
            return [
                SealedContainer(cid, size, self._live.get(cid, 0))
                for cid, size in sorted(self._sizes.items())
                if cid < self._hwm_cid and cid != self._active_cid
            ]

    def live_bytes(self, cid: int) -> int:
        """Record bytes of the pieces indexed in container ``cid`` (as of the last commit)."""
        with self._lock:
            return self._live.get(cid, 0)

    # -- write path --------------------------------------------------------------------

    @contextmanager
    def appending(self) -> Iterator[Appender]:
        """``with log.appending() as a:`` – hold the append lock (step 1). DiskUnavailable
        if :meth:`close` began."""
        with self._lock:
            self.check_open()
            a = Appender(self._pending.get, self._append, self._enqueue)
            try:
                yield a
            finally:
                a.end()

    def wait_committed(self, op: PendingOp) -> None:
        """Wait until ``op`` is committed, leading a group commit if nobody else is (step 4);
        raises the error that failed its commit. Call it without holding the append lock."""
        with self._cv:
            while not op.done and self._syncing:
                self._cv.wait()
            lead = not op.done
            if lead:
                self._syncing = True
        if lead:
            try:
                self._group_commit()
            finally:
                with self._cv:
                    self._syncing = False
                    self._cv.notify_all()
        if op.error is not None:
            raise op.error

    def active(self) -> SealedContainer:
        """The active container (id, size, live bytes as of the last commit): what
        :meth:`seal_active` would hand to compaction."""
        with self._lock:
            cid = self._active_cid
            return SealedContainer(cid, self._end, self._live.get(cid, 0))

    def seal_active(self) -> int | None:
        """Seal the active container now and commit a high-water mark past it, so compaction
        can reach it (a disk smaller than one container would otherwise never reclaim the
        space of deleted pieces). Returns the id sealed, or None when it holds no record.
        DiskFull when there is no space for the next container's file header."""
        with self._lock:
            self.check_writable()
            if self._end <= ctr.FILE_HEADER_SIZE:
                return None
            sealed = self._active_cid
            self._roll_checked()
            self._hwm_due = True
        with self._leading() as lead:  # one commit, as close() leads: the new high-water mark
            if lead:
                self._group_commit()
        if self._broken is not None:
            raise self._broken
        return sealed

    def remove_sealed(self, cid: int) -> None:
        """Delete sealed container ``cid``: its cached descriptor, its file (``containers/``
        fsynced after) and its accounting. The caller has made durable an index that no
        longer points into it (compaction: chunkstore.disk.compact). ValueError if ``cid``
        is not sealed."""
        with self._lock:
            if cid >= self._hwm_cid or cid == self._active_cid:
                raise ValueError(f"{self._name}: container {cid} is not sealed")
        self._cache.forget(cid)
        os.unlink(self._path(cid))
        fsync_dir(self._cdir)
        with self._lock:
            self._sizes.pop(cid, None)
            self._live.pop(cid, None)

    def close(self) -> None:
        """Stop appends, commit what was queued before, release the active container.
        Idempotent.

        Waits for a running group commit, then leads one last commit of what is still queued
        (records appended before the close: their callers are answered normally) while
        holding off any other, so nothing touches the active container after it is released.
        Appends that come later raise DiskUnavailable.
        """
        with self._leading() as lead:
            if not lead:
                return  # closed before
            with self._lock:
                self._closed = True  # from here on nothing is appended or queued (appending())
            try:
                self._group_commit()
            finally:
                with self._lock:
                    self._cache.release(self._active)

    @contextmanager
    def _leading(self) -> Iterator[bool]:
        """Wait for a running group commit, then hold off any other until the block ends (the
        block leads). Yields False, leading nothing, once the log is closed."""
        with self._cv:
            while self._syncing:
                self._cv.wait()
            if self._closed:
                yield False
                return
            self._syncing = True
        try:
            yield True
        finally:
            with self._cv:
                self._syncing = False
                self._cv.notify_all()

    # -- internals (append lock held unless said otherwise) ------------------------------

    def _path(self, cid: int) -> str:
        return ctr.container_path(self._cdir, cid)

    def _roll(self) -> None:
        """Seal the active container and start the next one."""
        os.fdatasync(self._active.fd)  # records of the sealed container are durable now
        new = self._active_cid + 1
        ctr.create_container(self._cdir, new)
        self._cache.release(self._active)
        self._sizes[self._active_cid] = self._end
        self._active_cid = new
        self._active = self._cache.acquire(new)
        self._end = ctr.FILE_HEADER_SIZE
        self._sizes[new] = self._end

    def _roll_checked(self) -> None:
        """:meth:`_roll`: DiskFull without room for the next container's header; any other
        failure breaks the log."""
        try:
            self._roll()
        except OSError as e:
            if e.errno in _NOSPACE:
                raise DiskFull(f"{self._name}: no space to start a new container") from e
            self._broken = DiskUnavailable(f"{self._name}: cannot roll container: {e}")
            raise self._broken from e

    def _append(self, bufs: list[Data]) -> tuple[int, int]:
        self.check_open()
        n = sum(len(b) for b in bufs)
        if self._end + n > self._container_size and self._end > ctr.FILE_HEADER_SIZE:
            self._roll_checked()
        off = self._end
        try:
            ctr.pwritev_all(self._active.fd, bufs, off)
        except OSError as e:
            try:
                os.ftruncate(self._active.fd, off)  # never leave a torn record behind
            except OSError as e2:
                self._broken = DiskUnavailable(f"{self._name}: cannot truncate partial record: {e2}")
            if e.errno in _NOSPACE:
                raise DiskFull(f"{self._name}: disk full") from e
            self._broken = DiskUnavailable(f"{self._name}: write failed: {e}")
            raise self._broken from e
        self._end = off + n
        self._sizes[self._active_cid] = self._end
        return self._active_cid, off

    def _enqueue(self, op: PendingOp) -> PendingOp:
        self.check_open()
        self._queue.append(op)
        self._pending[op.pid] = op
        return op

    def _group_commit(self) -> None:
        """Step 4 as the leader (append lock not held; ``_syncing`` is ours)."""
        with self._lock:
            batch, self._queue = self._queue, []
            if not batch and not self._hwm_due:
                return  # always the case once close() has committed the last queue
            self._hwm_due = False
            h = self._active  # the append lock keeps it open until we hold our own reference
            self._cache.ref(h)
            cid, end = self._active_cid, self._end
        err: ChunkStoreError | None = None
        try:
            self._check_alive()
            # step 4a: one fdatasync covers every record appended so far
            os.fdatasync(h.fd)
            # step 4b: one WriteBatch with all their index entries and the high-water mark
            wb = WriteBatch(raw_mode=True)
            for op in batch:
                if op.info is not None:  # PUT, MOVE
                    wb.put(op.pid, op.info.encode_value())
                else:
                    wb.delete(op.pid)
            wb.put(HWM_KEY, encode_hwm(cid, end))
            self._db.write(wb, self._wopts)
        except DiskUnavailable as e:
            err = self._broken = e
        except OSError as e:
            # after a failed fsync the page cache state is unknown: stop using this disk
            err = self._broken = (DiskFull if e.errno in _NOSPACE else DiskUnavailable)(f"{self._name}: sync failed: {e}")
        except Exception as e:  # rocksdict errors
            err = self._broken = DiskUnavailable(f"{self._name}: index commit failed: {e}")
        finally:
            self._cache.release(h)
        with self._lock:
            if err is None:
                self._hwm_cid = cid
            for op in batch:
                if self._pending.get(op.pid) is op:
                    del self._pending[op.pid]
                if err is None:
                    self._account(op)
        with self._cv:
            for op in batch:
                op.error = err
                op.done = True

    def _account(self, op: PendingOp) -> None:
        if op.old is not None:
            self._live[op.old.container] = self._live.get(op.old.container, 0) - ctr.RECORD_HEADER_SIZE - op.old.length
        if op.info is not None:
            self._live[op.info.container] = self._live.get(op.info.container, 0) + ctr.RECORD_HEADER_SIZE + op.info.length
        if op.kind == PUT:
            self._count += 1
        elif op.kind in (DEL, DROP):
            self._count -= 1
