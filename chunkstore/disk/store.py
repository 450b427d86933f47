"""One disk directory (the "bizoid" role): append-only containers plus a rocksdict index.

Layout of a disk directory::

    DISK          marker, JSON {"cluster_id", "disk_id", "format_version"}; written atomically
    containers/   NNNNNNNN.ctr append-only container files (format: chunkstore.disk.container),
                  the highest id is the active one; a new one is started past 64 MiB
    index/        rocksdict DB: piece id -> location (schema: chunkstore.disk.index)
    roots/        volume root records, one file per volume named by its id in hex
                  (format and rules: chunkstore.roots); created by the first ``put_root``

The API is narrow and byte-oriented (keys, fragment indexes, policy codes, bytes) so it can be
served over a wire later. All methods are thread-safe.

Write path of ``put`` (and ``delete``, whose record is a tombstone), step by step:

1. hash the data (blake3-128) and build the 64-byte record header – outside any lock;
2. under the append lock: refuse a different piece already stored/pending under the same id
   (KeyConflict) or return early for the same bytes (idempotent); ``pwritev`` header + data at
   the end of the active container (on ENOSPC the partial record is truncated away and
   DiskFull raised, so no torn record shadows later appends); queue the pending index entry;
3. group commit: the first waiter that finds no sync in progress becomes the leader, takes
   every queued entry, ``fdatasync``s the active container once for all of them, then commits
   all their index entries plus the new high-water mark in one rocksdict WriteBatch; the other
   waiters whose records were covered just return;
4. ack (return).

The WriteBatch is not fsynced on its own: the container fdatasync already made the records
durable, and recovery re-indexes every record after the durable high-water mark, so an index
write lost in a power cut is rebuilt from the containers. Compaction, which deletes files, does
sync the index before deleting anything.

Root records (``put_root`` / ``get_root`` / ``list_roots``) live outside the containers and the
index: each is a small file replaced atomically (temp file ``<hex>.tmp``, fsync, rename over
``<hex>``, fsync of ``roots/``) under one lock per disk, so nothing else on the disk depends on
them and a crash leaves either the old or the new record (a stale temp file is ignored and
removed on open).

Recovery on open: scan the containers from the high-water mark (in practice the tail of the
active container), re-apply put and tombstone records in order (idempotent: records carry
their checksum), truncate a torn tail of the last container, and commit with a synced batch.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import threading
from dataclasses import dataclass
from typing import Iterator

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from chunkstore.atomicfile import atomic_write
from chunkstore.disk import container as ctr
from chunkstore.disk.records import CompactReport, DiskStats
from chunkstore.disk.index import HWM_KEY, PIECE_ID_SIZE, PieceInfo, decode_hwm, encode_hwm, piece_id
from chunkstore.errors import ChunkCorrupt, ChunkNotFound, ChunkStoreError, DiskFull, DiskUnavailable, FormatError, KeyConflict
from chunkstore.disk.fdcache import FdCache, FileHandle
from chunkstore.protection.policy import PolicyCode
from chunkstore.roots import MAX_RECORD_SIZE, VOLUME_ID_SIZE, RootRecord, check_volume_id

MARKER_NAME = "DISK"
ROOTS_DIR = "roots"
DISK_FORMAT_VERSION = 1
DEFAULT_CONTAINER_SIZE = 64 * 1024 * 1024
_NOSPACE = (errno.ENOSPC, errno.EDQUOT)

_PUT, _MOVE, _DEL, _DROP = 1, 2, 3, 4


@dataclass(frozen=True)
class DiskMarker:
    """Contents of a disk's ``DISK`` marker file."""

    cluster_id: str
    disk_id: str
    format_version: int = DISK_FORMAT_VERSION


class _Op:
    """A record appended but not yet committed to the index."""

    __slots__ = ("kind", "pid", "info", "old", "done", "error")

    def __init__(self, kind: int, pid: bytes, info: PieceInfo | None, old: PieceInfo | None) -> None:
        self.kind = kind
        self.pid = pid
        self.info = info
        self.old = old
        self.done = False
        self.error: BaseException | None = None


def read_marker(path: str | os.PathLike) -> DiskMarker:
    """Read and validate ``path/DISK``. Raises DiskUnavailable."""
    mpath = os.path.join(path, MARKER_NAME)
    try:
        with open(mpath, "rb") as f:
            doc = json.loads(f.read(4096))
        marker = DiskMarker(str(doc["cluster_id"]), str(doc["disk_id"]), int(doc["format_version"]))
    except FileNotFoundError:
        raise DiskUnavailable(f"{path}: no disk marker (not initialised or not mounted)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DiskUnavailable(f"{path}: unreadable disk marker: {e}") from e
    if marker.format_version != DISK_FORMAT_VERSION:
        raise DiskUnavailable(f"{path}: unsupported disk format version {marker.format_version}")
    return marker


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _volume_id_of(name: str) -> bytes | None:
    """The volume id a ``roots/`` file name stands for (lower-case hex), or None."""
    if len(name) != 2 * VOLUME_ID_SIZE:
        return None
    try:
        volume_id = bytes.fromhex(name)
    except ValueError:
        return None
    return volume_id if volume_id.hex() == name else None


def _pwritev_all(fd: int, bufs: list[bytes | memoryview], offset: int) -> None:
    """Write all buffers at ``offset``, continuing after short writes."""
    views = [memoryview(b).cast("B") for b in bufs if len(b)]
    while views:
        n = os.pwritev(fd, views, offset)
        if n == 0:
            raise OSError(errno.ENOSPC, "short write")
        offset += n
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if n:
            views[0] = views[0][n:]


class DiskStore:
    """One initialised disk directory, opened in this process."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        cluster_id: str | None = None,
        disk_id: str | None = None,
        container_size: int = DEFAULT_CONTAINER_SIZE,
        fd_cache_size: int = 4,
    ) -> None:
        self.path = os.fspath(path)
        self.marker = read_marker(self.path)
        if cluster_id is not None and self.marker.cluster_id != cluster_id:
            raise DiskUnavailable(f"{self.path}: belongs to cluster {self.marker.cluster_id}, not {cluster_id}")
        if disk_id is not None and self.marker.disk_id != disk_id:
            raise DiskUnavailable(f"{self.path}: is disk {self.marker.disk_id}, not {disk_id}")
        self._marker_path = os.path.join(self.path, MARKER_NAME)
        self._marker_ino = os.stat(self._marker_path).st_ino
        self._cdir = os.path.join(self.path, "containers")
        self._rdir = os.path.join(self.path, ROOTS_DIR)
        self._container_size = container_size
        os.makedirs(self._cdir, exist_ok=True)
        self._remove_root_temps()

        self._lock = threading.Lock()  # append lock: active container, queue, pending, accounting
        self._cv = threading.Condition(threading.Lock())  # group-commit hand-off
        self._delete_lock = threading.Lock()  # excludes deletes during compaction
        self._compact_lock = threading.Lock()
        self._roots_lock = threading.Lock()  # one root record write at a time
        self._syncing = False
        self._queue: list[_Op] = []
        self._pending: dict[bytes, _Op] = {}
        self._broken: ChunkStoreError | None = None
        self._closed = False

        self._cache = FdCache(self._open_container, fd_cache_size)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_max_open_files(32)
        opts.set_keep_log_file_num(2)
        opts.set_write_buffer_size(4 * 1024 * 1024)
        try:
            self._db = Rdict(os.path.join(self.path, "index"), opts)
        except Exception as e:
            raise DiskUnavailable(f"{self.path}: cannot open index: {e}") from e
        self._wopts = WriteOptions()
        self._sync_wopts = WriteOptions()
        self._sync_wopts.sync = True
        try:
            self._recover()
        except BaseException:
            self._cache.close()
            self._db.close()
            raise

    # -- set-up -----------------------------------------------------------------------

    @classmethod
    def initialise(cls, path: str | os.PathLike, cluster_id: str, disk_id: str) -> DiskMarker:
        """Create the marker (and the directory if its parent exists). Idempotent for the
        same ids; DiskUnavailable for another marker or a non-empty unmarked directory."""
        path = os.fspath(path)
        marker = DiskMarker(cluster_id, disk_id)
        if os.path.exists(os.path.join(path, MARKER_NAME)):
            existing = read_marker(path)
            if existing != marker:
                raise DiskUnavailable(f"{path}: already initialised as {existing}")
            return existing
        if os.path.isdir(path):
            if os.listdir(path):
                raise DiskUnavailable(f"{path}: not empty and has no disk marker; refusing to initialise")
        else:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise DiskUnavailable(f"{path}: parent directory does not exist")
            os.mkdir(path)
        atomic_write(os.path.join(path, MARKER_NAME),
                     json.dumps(dataclasses.asdict(marker), sort_keys=True) + "\n")
        os.makedirs(os.path.join(path, "containers"), exist_ok=True)
        _fsync_dir(path)
        return marker

    def _cpath(self, cid: int) -> str:
        return os.path.join(self._cdir, ctr.container_name(cid))

    def _open_container(self, cid: int) -> int:
        return os.open(self._cpath(cid), os.O_RDWR | os.O_CLOEXEC)

    def _create_container(self, cid: int) -> None:
        fd = os.open(self._cpath(cid), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        try:
            _pwritev_all(fd, [ctr.encode_file_header(cid)], 0)
            os.fdatasync(fd)
        except OSError:
            os.close(fd)
            os.unlink(self._cpath(cid))
            raise
        os.close(fd)
        _fsync_dir(self._cdir)

    def _container_ids(self) -> list[int]:
        ids = (ctr.parse_container_name(n) for n in os.listdir(self._cdir))
        return sorted(i for i in ids if i is not None)

    def _recover(self) -> None:
        """Re-index records after the high-water mark; truncate a torn tail (see module doc)."""
        raw = self._db.get(HWM_KEY)
        hwm = decode_hwm(raw) if raw is not None else None
        cids = self._container_ids()
        if not cids:
            self._create_container(1)
            cids = [1]
        last = cids[-1]
        changes: dict[bytes, PieceInfo | None] = {}
        end = max(ctr.FILE_HEADER_SIZE, os.stat(self._cpath(last)).st_size)  # if not scanned below
        for cid in cids:
            if hwm is not None and cid < hwm[0]:
                continue
            with self._cache.open(cid) as fd:
                size = os.fstat(fd).st_size
                if size < ctr.FILE_HEADER_SIZE and cid == last:
                    # crash while creating the container: rewrite its header
                    os.ftruncate(fd, 0)
                    _pwritev_all(fd, [ctr.encode_file_header(cid)], 0)
                    os.fdatasync(fd)
                try:
                    header_cid = ctr.parse_file_header(os.pread(fd, ctr.FILE_HEADER_SIZE, 0))
                except FormatError:
                    header_cid = cid  # a damaged file header: records verify on their own
                if header_cid != cid:
                    raise DiskUnavailable(f"{self._cpath(cid)}: container id does not match its name")
                start = hwm[1] if hwm is not None and cid == hwm[0] else ctr.FILE_HEADER_SIZE
                if start > size:
                    # acknowledged bytes were cut off behind our back: rescan the whole file
                    # so appends resume after the last intact record
                    start = ctr.FILE_HEADER_SIZE
                sc = ctr.scan(fd, max(start, ctr.FILE_HEADER_SIZE))
                for rec in sc:
                    pid = rec.header.key + bytes((rec.header.frag_idx,))
                    if rec.header.rtype == ctr.TYPE_PUT:
                        h = rec.header
                        changes[pid] = PieceInfo(
                            h.key, h.frag_idx, cid, rec.offset, h.data_len, h.checksum, h.policy_code, h.chunk_size
                        )
                    else:
                        changes[pid] = None
                if cid == last:
                    end = min(sc.valid_end, sc.file_end)
                    if sc.file_end > end:
                        os.ftruncate(fd, end)  # torn tail: never acknowledged
                        os.fdatasync(fd)
        wb = WriteBatch(raw_mode=True)
        for pid, info in changes.items():
            if info is None:
                wb.delete(pid)
            else:
                wb.put(pid, info.encode_value())
        wb.put(HWM_KEY, encode_hwm(last, end))
        self._db.write(wb, self._sync_wopts)

        self._active_cid = last
        self._active: FileHandle = self._cache.acquire(last)
        self._end = end
        self._hwm_cid = last
        self._sizes: dict[int, int] = {}
        for cid in cids:
            self._sizes[cid] = end if cid == last else os.stat(self._cpath(cid)).st_size
        self._live: dict[int, int] = {}
        self._count = 0
        for info in self.pieces():
            self._live[info.container] = self._live.get(info.container, 0) + ctr.RECORD_HEADER_SIZE + info.length
            self._count += 1

    # -- checks -----------------------------------------------------------------------

    def check_alive(self) -> None:
        """DiskUnavailable if the directory vanished or was replaced under us."""
        try:
            st = os.stat(self._marker_path)
        except OSError as e:
            raise DiskUnavailable(f"{self.path}: disk marker gone ({e.strerror})") from None
        if st.st_ino != self._marker_ino:
            raise DiskUnavailable(f"{self.path}: disk marker replaced")

    def _check_readable(self) -> None:
        if self._closed:
            raise DiskUnavailable(f"{self.path}: disk store is closed")
        self.check_alive()

    def _check_usable(self) -> None:
        if self._closed:
            raise DiskUnavailable(f"{self.path}: disk store is closed")
        if self._broken is not None:
            raise self._broken
        self.check_alive()

    # -- append + group commit ----------------------------------------------------------

    def _roll(self) -> None:
        """Seal the active container and start the next one (append lock held)."""
        os.fdatasync(self._active.fd)  # records of the sealed container are durable now
        new = self._active_cid + 1
        self._create_container(new)
        self._cache.release(self._active)
        self._sizes[self._active_cid] = self._end
        self._active_cid = new
        self._active = self._cache.acquire(new)
        self._end = ctr.FILE_HEADER_SIZE
        self._sizes[new] = self._end

    def _append(self, bufs: list[bytes | memoryview]) -> int:
        """Append one record at the end of the active container (append lock held)."""
        n = sum(len(b) for b in bufs)
        try:
            if self._end + n > self._container_size and self._end > ctr.FILE_HEADER_SIZE:
                self._roll()
        except OSError as e:
            if e.errno in _NOSPACE:
                raise DiskFull(f"{self.path}: no space to start a new container") from e
            self._broken = DiskUnavailable(f"{self.path}: cannot roll container: {e}")
            raise self._broken from e
        off = self._end
        try:
            _pwritev_all(self._active.fd, bufs, off)
        except OSError as e:
            try:
                os.ftruncate(self._active.fd, off)  # never leave a torn record behind
            except OSError as e2:
                self._broken = DiskUnavailable(f"{self.path}: cannot truncate partial record: {e2}")
            if e.errno in _NOSPACE:
                raise DiskFull(f"{self.path}: disk full") from e
            self._broken = DiskUnavailable(f"{self.path}: write failed: {e}")
            raise self._broken from e
        self._end = off + n
        self._sizes[self._active_cid] = self._end
        return off

    def _await(self, op: _Op) -> None:
        """Wait until ``op`` is committed, leading a group commit if nobody else is."""
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

    def _group_commit(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
            if not batch:
                return
            h = self._active  # the append lock keeps it open until we hold our own reference
            self._cache.ref(h)
            cid, end = self._active_cid, self._end
        err: ChunkStoreError | None = None
        try:
            self.check_alive()
            # step 3a: one fdatasync covers every record appended so far
            os.fdatasync(h.fd)
            # step 3b: one WriteBatch with all their index entries and the high-water mark
            wb = WriteBatch(raw_mode=True)
            for op in batch:
                if op.kind in (_PUT, _MOVE):
                    wb.put(op.pid, op.info.encode_value())
                else:
                    wb.delete(op.pid)
            wb.put(HWM_KEY, encode_hwm(cid, end))
            self._db.write(wb, self._wopts)
        except DiskUnavailable as e:
            err = self._broken = e
        except OSError as e:
            # after a failed fsync the page cache state is unknown: stop using this disk
            err = self._broken = (DiskFull if e.errno in _NOSPACE else DiskUnavailable)(f"{self.path}: sync failed: {e}")
        except Exception as e:  # rocksdict errors
            err = self._broken = DiskUnavailable(f"{self.path}: index commit failed: {e}")
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

    def _account(self, op: _Op) -> None:
        if op.old is not None:
            self._live[op.old.container] = self._live.get(op.old.container, 0) - ctr.RECORD_HEADER_SIZE - op.old.length
        if op.info is not None:
            self._live[op.info.container] = self._live.get(op.info.container, 0) + ctr.RECORD_HEADER_SIZE + op.info.length
        if op.kind == _PUT:
            self._count += 1
        elif op.kind in (_DEL, _DROP):
            self._count -= 1

    # -- public API ---------------------------------------------------------------------

    def put(self, key: bytes, frag_idx: int, policy_code: PolicyCode, chunk_size: int, data: bytes | memoryview) -> None:
        """Store one piece durably. Idempotent for the same bytes; KeyConflict for others."""
        pid = piece_id(key, frag_idx)
        self._check_usable()
        header, checksum = ctr.encode_record(key, frag_idx, policy_code, chunk_size, data)
        length = len(data)
        with self._lock:
            op = self._pending.get(pid)
            if op is not None and op.info is not None:  # a pending put (or compaction move)
                if (op.info.checksum, op.info.length) != (checksum, length):
                    raise KeyConflict(f"piece {pid.hex()} already stored with different bytes")
            else:
                raw = self._db.get(pid) if op is None else None
                if raw is not None:
                    info = PieceInfo.decode(pid, raw)
                    if (info.checksum, info.length) != (checksum, length):
                        raise KeyConflict(f"piece {pid.hex()} already stored with different bytes")
                    return
                # step 2: append header + data at the end of the active container
                off = self._append([header, data])
                info = PieceInfo(key, frag_idx, self._active_cid, off, length, checksum, policy_code, chunk_size)
                op = _Op(_PUT, pid, info, None)
                self._queue.append(op)
                self._pending[pid] = op
        # steps 3-4: group commit (fdatasync, index WriteBatch), then return = ack
        self._await(op)

    def get(self, key: bytes, frag_idx: int, verify: bool = True) -> bytes:
        """The piece's data, verified against its checksum. ChunkNotFound / ChunkCorrupt.

        ``verify=False`` skips hashing the data (the record header is still checked): for
        callers that verify the whole chunk against its key anyway and fall back to verified
        reads when that fails, so each byte is hashed once on the fast path.
        """
        pid = piece_id(key, frag_idx)
        self._check_readable()
        for attempt in range(2):
            raw = self._db.get(pid)
            if raw is None:
                raise ChunkNotFound(f"{self.path}: piece {pid.hex()} not found")
            info = PieceInfo.decode(pid, raw)
            try:
                with self._cache.open(info.container) as fd:
                    record = os.pread(fd, ctr.RECORD_HEADER_SIZE + info.length, info.offset)
            except FileNotFoundError:
                if attempt == 0:
                    continue  # compaction moved it meanwhile: look it up again
                raise ChunkCorrupt(f"{self.path}: container of piece {pid.hex()} missing") from None
            except OSError as e:
                raise DiskUnavailable(f"{self.path}: read failed: {e}") from e
            try:
                h = ctr.parse_record_header(record[: ctr.RECORD_HEADER_SIZE])
            except FormatError as e:
                raise ChunkCorrupt(f"{self.path}: piece {pid.hex()}: {e}") from None
            if h.key != key or h.frag_idx != frag_idx or h.checksum != info.checksum or h.rtype != ctr.TYPE_PUT:
                raise ChunkCorrupt(f"{self.path}: piece {pid.hex()}: record does not match the index")
            data = record[ctr.RECORD_HEADER_SIZE :]
            if len(data) != info.length or (verify and ctr.data_checksum(data) != info.checksum):
                raise ChunkCorrupt(f"{self.path}: piece {pid.hex()}: checksum mismatch")
            return data
        raise ChunkNotFound(f"{self.path}: piece {pid.hex()} not found")  # pragma: no cover

    def piece(self, key: bytes, frag_idx: int) -> PieceInfo | None:
        """Index entry of a piece, or None (does not read or verify the data)."""
        raw = self._db.get(piece_id(key, frag_idx))
        return None if raw is None else PieceInfo.decode(piece_id(key, frag_idx), raw)

    def has(self, key: bytes, frag_idx: int) -> bool:
        """True if the piece is indexed (not verified)."""
        return self._db.get(piece_id(key, frag_idx)) is not None

    def delete(self, key: bytes, frag_idx: int) -> None:
        """Append a tombstone and drop the index entry. Idempotent."""
        pid = piece_id(key, frag_idx)
        self._check_usable()
        with self._delete_lock:
            with self._lock:
                op = self._pending.get(pid)
                if op is not None:
                    if op.kind == _DEL:
                        old = None
                    else:
                        old = op.info
                else:
                    raw = self._db.get(pid)
                    old = PieceInfo.decode(pid, raw) if raw is not None else None
                if old is None and op is None:
                    return
                if old is not None:
                    self._append([ctr.encode_tombstone(key, frag_idx, old.policy, old.chunk_size)])
                    op = _Op(_DEL, pid, None, old)
                    self._queue.append(op)
                    self._pending[pid] = op
            self._await(op)

    def pieces(self) -> Iterator[PieceInfo]:
        """Every indexed piece (a consistent snapshot of the index)."""
        for pid, value in self._db.items():
            if len(pid) == PIECE_ID_SIZE:
                yield PieceInfo.decode(pid, value)

    def stats(self) -> DiskStats:
        with self._lock:
            used = sum(self._sizes.values())
            live = sum(self._live.values())
            count = self._count
            n = len(self._sizes)
        try:
            vfs = os.statvfs(self.path)
            dev = os.stat(self.path).st_dev
        except OSError as e:
            raise DiskUnavailable(f"{self.path}: statvfs failed: {e}") from e
        return DiskStats(
            used_bytes=used,
            live_pieces=count,
            live_bytes=live,
            dead_bytes=used - n * ctr.FILE_HEADER_SIZE - live,
            containers=n,
            fs_total_bytes=vfs.f_blocks * vfs.f_frsize,
            fs_free_bytes=vfs.f_bavail * vfs.f_frsize,
            fs_dev=dev,
        )

    def compact(self, min_dead_ratio: float = 0.3) -> CompactReport:
        """Rewrite sealed containers whose dead share is >= ``min_dead_ratio``.

        Live records are copied verbatim into the active container through the normal group
        commit (so the index points to the copies), the index is synced, and only then is the
        old file deleted: a crash at any step leaves every piece reachable.
        """
        self._check_usable()
        removed = moved = reclaimed = dropped = 0
        with self._compact_lock, self._delete_lock:
            with self._lock:
                candidates = []
                for cid, size in self._sizes.items():
                    if cid >= self._hwm_cid or cid == self._active_cid:
                        continue
                    body = size - ctr.FILE_HEADER_SIZE
                    dead = body - self._live.get(cid, 0)
                    if body <= 0 or dead / body >= min_dead_ratio:
                        candidates.append((cid, size))
            for cid, size in sorted(candidates):
                moved += self._compact_one(cid)
                with self._lock:
                    left = self._live.get(cid, 0)
                if left:
                    # indexed pieces the scan did not find valid (bit rot): unindex them so
                    # repair rebuilds them; their bytes are unreadable anyway
                    dropped += self._drop_pieces_in(cid)
                self._db.flush_wal(True)  # the index pointing at the copies is durable
                self._cache.forget(cid)
                os.unlink(self._cpath(cid))
                _fsync_dir(self._cdir)
                with self._lock:
                    self._sizes.pop(cid, None)
                    self._live.pop(cid, None)
                removed += 1
                reclaimed += size
        return CompactReport(removed, moved, reclaimed, dropped)

    def _drop_pieces_in(self, cid: int) -> int:
        ops = []
        with self._lock:
            for info in self.pieces():
                if info.container == cid:
                    op = _Op(_DROP, info.pid, None, info)
                    self._queue.append(op)
                    self._pending[info.pid] = op
                    ops.append(op)
        if ops:
            self._await(ops[-1])
        return len(ops)

    def _compact_one(self, cid: int) -> int:
        moved = 0
        last: _Op | None = None
        with self._cache.open(cid) as fd:
            for rec in ctr.scan(fd):
                if rec.header.rtype != ctr.TYPE_PUT:
                    continue  # tombstones before the high-water mark are not needed
                pid = rec.header.key + bytes((rec.header.frag_idx,))
                raw = self._db.get(pid)
                if raw is None:
                    continue
                old = PieceInfo.decode(pid, raw)
                if (old.container, old.offset) != (cid, rec.offset):
                    continue  # dead copy
                blob = os.pread(fd, rec.header.record_len, rec.offset)  # verified by the scan
                with self._lock:
                    off = self._append([blob])
                    info = PieceInfo(
                        old.key, old.frag_idx, self._active_cid, off, old.length, old.checksum, old.policy, old.chunk_size
                    )
                    last = _Op(_MOVE, pid, info, old)
                    self._queue.append(last)
                    self._pending[pid] = last
                moved += 1
        if last is not None:
            self._await(last)
        return moved

    # -- volume root records (format and rules: chunkstore.roots) -------------------------

    def put_root(self, volume_id: bytes, seq: int, body: bytes) -> int:
        """Keep this root record if ``seq`` is higher than the one held (durably, see module
        docstring); the same seq and body again is a no-op, the same seq with another body a
        KeyConflict, a lower seq stores nothing. Returns the seq the disk holds afterwards.
        FormatError for invalid fields, DiskFull when there is no space for the record."""
        rec = RootRecord(volume_id, seq, body)
        self._check_usable()
        with self._roots_lock:
            try:
                held = self._read_root(rec.volume_id)
            except ChunkCorrupt:
                held = None  # an unreadable record is replaced by the new one
            if held is not None and held.seq >= rec.seq:
                if held.seq == rec.seq and held.body != rec.body:
                    raise KeyConflict(f"{self.path}: root record {rec.seq} of volume {rec.volume_id.hex()} "
                                      "already stored with another body")
                return held.seq
            self._write_root(rec)
            return rec.seq

    def get_root(self, volume_id: bytes) -> RootRecord | None:
        """The root record held for the volume, or None. ChunkCorrupt if it does not verify."""
        volume_id = check_volume_id(volume_id)
        self._check_readable()
        return self._read_root(volume_id)

    def list_roots(self) -> list[tuple[bytes, int]]:
        """(volume_id, seq) of every root record on the disk, by volume id; records that do
        not verify are left out."""
        self._check_readable()
        try:
            names = os.listdir(self._rdir)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise DiskUnavailable(f"{self.path}: cannot list root records: {e}") from e
        out = []
        for name in sorted(names):
            volume_id = _volume_id_of(name)
            if volume_id is None:
                continue
            try:
                rec = self._read_root(volume_id)
            except ChunkCorrupt:
                continue
            if rec is not None:
                out.append((volume_id, rec.seq))
        return out

    def _root_path(self, volume_id: bytes) -> str:
        return os.path.join(self._rdir, volume_id.hex())

    def _read_root(self, volume_id: bytes) -> RootRecord | None:
        path = self._root_path(volume_id)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_RECORD_SIZE + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise DiskUnavailable(f"{self.path}: cannot read root record {path}: {e}") from e
        try:
            rec = RootRecord.decode(raw)
        except ChunkCorrupt as e:
            raise ChunkCorrupt(f"{path}: {e}") from None
        if rec.volume_id != volume_id:
            raise ChunkCorrupt(f"{path}: holds the root record of volume {rec.volume_id.hex()}")
        return rec

    def _write_root(self, rec: RootRecord) -> None:
        """Replace the volume's record file atomically and durably (roots lock held)."""
        final = self._root_path(rec.volume_id)
        try:
            if not os.path.isdir(self._rdir):
                os.makedirs(self._rdir, exist_ok=True)
                _fsync_dir(self.path)
            atomic_write(final, rec.encode(), mode=0o640)
        except OSError as e:
            if e.errno in _NOSPACE:
                raise DiskFull(f"{self.path}: no space for the root record of volume {rec.volume_id.hex()}") from e
            raise DiskUnavailable(f"{self.path}: cannot write root record: {e}") from e

    def _remove_root_temps(self) -> None:
        """Remove temp files a crash left in ``roots/`` (best effort)."""
        try:
            names = os.listdir(self._rdir)
        except OSError:
            return
        for name in names:
            if name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(self._rdir, name))
                except OSError:
                    pass

    def close(self) -> None:
        """Finish in-flight commits and release files and the index. Idempotent."""
        if self._closed:
            return
        with self._cv:
            while self._syncing:
                self._cv.wait()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cache.release(self._active)
            self._cache.close()
        try:
            self._db.close()
        except Exception:
            pass

    def __enter__(self) -> "DiskStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DiskStore({self.path!r}, disk_id={self.marker.disk_id!r})"
