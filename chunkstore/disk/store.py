"""One disk directory (the "bizoid" role): append-only containers plus a rocksdict index.

Layout of a disk directory::

    DISK          marker, JSON {"cluster_id", "disk_id", "format_version"} (chunkstore.disk.marker)
    containers/   NNNNNNNN.ctr append-only container files (format: chunkstore.disk.container),
                  the highest id is the active one; a new one is started past 64 MiB
    index/        rocksdict DB: piece id -> location (schema: chunkstore.disk.index)
    roots/        volume root records, one file per volume (chunkstore.disk.rootfiles)

The API is narrow and byte-oriented (keys, fragment indexes, policy codes, bytes) so it can be
served over a wire (chunkstore.net.server). All methods are thread-safe.

The store is the disk's front: it owns the index, the fd cache of the container files, the
root files and the append log (:class:`~chunkstore.disk.log.ContainerLog`: active container,
group commit, accounting), and checks every request before handing it on.

Write path of ``put`` (and ``delete``, whose record is a tombstone), step by step:

1. hash the data (blake3-128; skipped when the caller passes the checksum it has verified
   already) and build the 64-byte record header – outside any lock;
2. under the log's append lock (``with self._log.appending()``, which refuses once close()
   began: checked there, so a close() racing the put never lets it write through a released
   file descriptor): refuse a different piece already stored/pending under the same id
   (KeyConflict) or return early for the same bytes (idempotent); append header + data at the
   end of the active container (on ENOSPC the partial record is truncated away and DiskFull
   raised, so no torn record shadows later appends); queue the pending index entry
   (chunkstore.disk.pending);
3. group commit (``ContainerLog.wait_committed``): the first waiter that finds no sync in
   progress becomes the leader, takes every queued entry, ``fdatasync``s the active container
   once for all of them, then commits all their index entries plus the new high-water mark in
   one rocksdict WriteBatch; the other waiters whose records were covered just return;
4. ack (return).

The WriteBatch is not fsynced on its own: the container fdatasync already made the records
durable, and recovery re-indexes every record after the durable high-water mark, so an index
write lost in a power cut is rebuilt from the containers. Compaction (chunkstore.disk.compact),
which deletes files, does sync the index before deleting anything.

Read path of ``get`` / ``get_piece``: one index lookup, then one ``pread`` of header + data;
the record header must match the index entry, and the data its checksum unless the caller
verifies it otherwise (``verify=False``).

An idempotent re-put (the index already names the same piece) reads the stored record and
checks its header and checksum before it answers: a rotten copy is written again (a new
record, the index re-pointed, the old one counted dead) instead of being trusted.

Conditional deletes: every put notes, in the index (``put_time_key``, chunkstore.disk.index),
the time it landed by this disk's clock – an idempotent re-put too, synced since no record
backs it; an appended put's note is covered by the record (recovery notes every record it
re-indexes at the recovery time). ``delete(..., decided_at=T)`` refuses (KeyConflict) when
the piece's last put landed at or after T, or when its put time is unknown and the disk only
keeps put times since after T (``PUT_FLOOR_KEY``). The check and the notes are made under the
append lock, so a put and a conditional delete of one piece are ordered. This is what keeps
the repair sweep's cleanup of a deleted chunk from removing a chunk written again with the
same content (chunk keys are content addresses) by any process on any node: the disk that
holds the piece is the one place every writer and the sweep meet (chunkstore.healing.sweep).

Root records (``put_root`` / ``get_root`` / ``list_roots``) live outside the containers and the
index, in small files of their own: chunkstore.disk.rootfiles.

``close`` closes the log – it waits for a running group commit, then leads one last commit of
what is still queued (those callers are answered normally) and releases the active container
– and only then closes the container files and the index.

Recovery on open (chunkstore.disk.recovery) re-indexes what the containers hold after the
durable high-water mark and cuts a torn tail off the active container.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable, Iterator

from rocksdict import Options, Rdict, WriteOptions

from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.disk import compact as compaction
from chunkstore.disk import container as ctr
from chunkstore.disk import recovery
from chunkstore.disk.errorcount import ChecksumErrors
from chunkstore.disk.fdcache import FdCache
from chunkstore.disk.index import (
    PUT_FLOOR_KEY,
    PieceInfo,
    decode_put_time,
    encode_put_time,
    iter_pieces,
    piece_id,
    put_time_key,
)
from chunkstore.disk.log import ContainerLog, Data
from chunkstore.disk.marker import MARKER_NAME, DiskMarker, initialise_disk, read_marker
from chunkstore.disk.pending import DEL, MOVE, PUT, PendingOp
from chunkstore.disk.records import CompactReport, DiskStats
from chunkstore.disk.rootfiles import RootFiles
from chunkstore.errors import ChunkCorrupt, ChunkNotFound, DiskFull, DiskUnavailable, FormatError, KeyConflict
from chunkstore.protection.policy import PolicyCode
from chunkstore.roots import RootRecord, check_volume_id

log = logging.getLogger("sofs.disk")

DEFAULT_CONTAINER_SIZE = 64 * 1024 * 1024
# A put leaves this much of the filesystem free: the index must always be able to flush its
# memtable and to reopen (RocksDB writes while it recovers: a disk filled to the last byte
# cannot be opened again, and its pieces are unreadable), and deletes, whose tombstones free
# space, must still be appended. 1% of the filesystem, between 1 MiB and 256 MiB.
RESERVE_FRACTION = 0.01
RESERVE_MIN, RESERVE_MAX = 1 << 20, 256 << 20


def default_reserve(fs_bytes: int) -> int:
    """The free space :meth:`DiskStore.put` keeps on a filesystem of ``fs_bytes``."""
    return min(max(int(fs_bytes * RESERVE_FRACTION), RESERVE_MIN), RESERVE_MAX)


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
        reserve_bytes: int | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.path = os.fspath(path)
        self._clock = clock
        self.container_size = container_size
        self._reserve = reserve_bytes  # None: default_reserve() of the filesystem
        self.marker = read_marker(self.path)
        if cluster_id is not None and self.marker.cluster_id != cluster_id:
            raise DiskUnavailable(f"{self.path}: belongs to cluster {self.marker.cluster_id}, not {cluster_id}")
        if disk_id is not None and self.marker.disk_id != disk_id:
            raise DiskUnavailable(f"{self.path}: is disk {self.marker.disk_id}, not {disk_id}")
        self._marker_path = os.path.join(self.path, MARKER_NAME)
        self._marker_ino = os.stat(self._marker_path).st_ino
        cdir = os.path.join(self.path, "containers")
        os.makedirs(cdir, exist_ok=True)
        self._roots = RootFiles(self.path)
        self._errors = ChecksumErrors(self.path)

        self._delete_lock = threading.Lock()  # excludes deletes during compaction
        self._compact_lock = threading.Lock()  # one compaction at a time
        self._close_lock = threading.Lock()
        self._released = False  # close() has released the files and the index

        self._cache = FdCache(lambda cid: os.open(ctr.container_path(cdir, cid), os.O_RDWR | os.O_CLOEXEC), fd_cache_size)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_max_open_files(32)
        opts.set_keep_log_file_num(2)
        opts.set_write_buffer_size(4 * 1024 * 1024)
        try:
            self._db = Rdict(os.path.join(self.path, "index"), opts)
        except Exception as e:
            raise DiskUnavailable(f"{self.path}: cannot open index: {e}") from e
        try:
            sync_wopts = WriteOptions()
            sync_wopts.sync = True
            cids, end = recovery.recover(self._db, self._cache, cdir, sync_wopts, now=clock.time())
            self._sync_wopts = sync_wopts
            floor = self._db.get(PUT_FLOOR_KEY)
            if floor is None:  # first open with put times: puts before now are not known
                self._db.put(PUT_FLOOR_KEY, encode_put_time(clock.time()), sync_wopts)
            self._log = ContainerLog(
                self.path, cdir, self._db, self._cache, cids, end, container_size=container_size, check_alive=self.check_alive
            )
        except BaseException:
            self._cache.close()
            self._db.close()
            raise

    # -- set-up -----------------------------------------------------------------------

    @classmethod
    def initialise(cls, path: str | os.PathLike, cluster_id: str, disk_id: str) -> DiskMarker:
        """Create the marker (and the directory if its parent exists). Idempotent for the
        same ids; DiskUnavailable for another marker or a non-empty unmarked directory
        (chunkstore.disk.marker)."""
        return initialise_disk(path, cluster_id, disk_id)

    @property
    def clock(self) -> Clock:
        """The clock put times are noted by (and conditional deletes compared on)."""
        return self._clock

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
        self._log.check_open()
        self.check_alive()

    def _check_usable(self) -> None:
        self._log.check_writable()
        self.check_alive()

    def _check_room(self, length: int) -> None:
        """DiskFull if appending ``length`` bytes would eat into the reserve (see
        :data:`RESERVE_FRACTION`); a failing statvfs leaves it to the append to tell."""
        try:
            vfs = os.statvfs(self.path)
        except OSError:
            return
        reserve = self._reserve
        if reserve is None:
            reserve = default_reserve(vfs.f_blocks * vfs.f_frsize)
        if vfs.f_bavail * vfs.f_frsize - length < reserve:
            raise DiskFull(f"{self.path}: disk full (the last {reserve >> 10} KiB are kept for "
                           "the index and for deletes)")

    # -- public API ---------------------------------------------------------------------

    def put(
        self, key: bytes, frag_idx: int, policy_code: PolicyCode, chunk_size: int, data: Data, *, checksum: bytes | None = None
    ) -> None:
        """Store one piece durably. Idempotent for the same bytes; KeyConflict for others.

        ``checksum``: the blake3-128 of ``data`` when the caller has computed and checked it
        already (the node passes the PUT's verified end-to-end checksum), so the data is not
        hashed twice; it is stored as given. Without it the data is hashed here.
        """
        pid = piece_id(key, frag_idx)
        self._check_usable()
        header, checksum = ctr.encode_record(key, frag_idx, policy_code, chunk_size, data, checksum)
        length = len(data)
        self._check_room(len(header) + length)
        # step 2, under the append lock; appending() checks closed again: close() may have run since
        with self._log.appending() as appender:
            op = appender.pending(pid)
            if op is not None and op.info is not None:  # a pending put (or compaction move)
                if (op.info.checksum, op.info.length) != (checksum, length):
                    raise KeyConflict(f"piece {pid.hex()} already stored with different bytes")
            else:
                raw = self._db.get(pid) if op is None else None
                old = None
                if raw is not None:
                    info = PieceInfo.decode(pid, raw)
                    if (info.checksum, info.length) != (checksum, length):
                        raise KeyConflict(f"piece {pid.hex()} already stored with different bytes")
                    if self._stored_verifies(info):
                        self._note_put(pid, sync=True)  # no record is appended: the time must last
                        return
                    # the index names the piece but its record rotted: write it again
                    log.warning("%s: piece %s put again over a stored copy that does not verify: "
                                "rewritten", self.path, pid.hex())
                    self._errors.add(pid.hex(), piece=pid.hex())
                    old = info
                self._note_put(pid, sync=False)  # before the record: recovery re-notes those after the hwm
                cid, off = appender.append([header, data])
                info = PieceInfo(key, frag_idx, cid, off, length, checksum, policy_code, chunk_size)
                # a rewrite re-points the index like a compaction move (the old record dead)
                op = appender.enqueue(PendingOp(PUT if old is None else MOVE, pid, info, old))
        # steps 3-4: group commit (fdatasync, index WriteBatch), then return = ack
        self._log.wait_committed(op)
        if op.old is None:
            self._errors.forget_piece(pid)

    def _stored_verifies(self, info: PieceInfo) -> bool:
        """Whether the record the index entry INFO names is intact: header matches, data
        matches its checksum (an idempotent re-put does not trust the index alone)."""
        try:
            with self._cache.open(info.container) as fd:
                record = os.pread(fd, ctr.RECORD_HEADER_SIZE + info.length, info.offset)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise DiskUnavailable(f"{self.path}: read failed: {e}") from e
        try:
            h = ctr.parse_record_header(record[: ctr.RECORD_HEADER_SIZE])
        except FormatError:
            return False
        data = record[ctr.RECORD_HEADER_SIZE:]
        return (h.key == info.key and h.frag_idx == info.frag_idx and h.checksum == info.checksum
                and h.rtype == ctr.TYPE_PUT and len(data) == info.length
                and ctr.data_checksum(data) == info.checksum)

    def _note_put(self, pid: bytes, *, sync: bool) -> None:
        """Remember when a put of PID last landed here (see :meth:`delete`'s ``decided_at``).
        Called under the append lock, as the delete's check is."""
        if sync:
            self._db.put(put_time_key(pid), encode_put_time(self._clock.time()), self._sync_wopts)
        else:
            self._db[put_time_key(pid)] = encode_put_time(self._clock.time())

    def _put_since(self, pid: bytes, decided_at: float) -> bool:
        """True if a put of PID may have landed at or after DECIDED_AT (unknown counts as yes)."""
        raw = self._db.get(put_time_key(pid))
        if isinstance(raw, bytes):
            return decode_put_time(raw) >= decided_at
        floor = self._db.get(PUT_FLOOR_KEY)  # no put of it since put times are kept
        return not isinstance(floor, bytes) or decode_put_time(floor) >= decided_at

    def get(self, key: bytes, frag_idx: int, verify: bool = True) -> bytes:
        """The piece's data, verified against its checksum. ChunkNotFound / ChunkCorrupt.

        ``verify=False`` skips hashing the data (the record header is still checked): for
        callers that verify the whole chunk against its key anyway and fall back to verified
        reads when that fails, so each byte is hashed once on the fast path.
        """
        return self.get_piece(key, frag_idx, verify)[1]

    def get_piece(
        self, key: bytes, frag_idx: int, verify: bool = True, *, reserve: Callable[[PieceInfo], None] | None = None
    ) -> tuple[PieceInfo, bytes]:
        """The piece's index entry and data, from one index lookup (:meth:`get` without
        throwing the entry away: its checksum is the one stored when the piece was written).

        ``reserve``, if given, is called with the entry after the lookup and before the data
        is read into memory, with no lock of the store held: it may block (the node waits
        there for room in its memory budget) or raise (nothing is read then). It is called
        again only in the rare case that compaction moved the piece meanwhile.

        A ChunkCorrupt is counted in the disk's checksum errors (:mod:`.errorcount`).
        """
        try:
            return self._get_piece(key, frag_idx, verify, reserve)
        except ChunkCorrupt:
            pid = piece_id(key, frag_idx).hex()
            self._errors.add(pid, piece=pid)
            raise

    def _get_piece(
        self, key: bytes, frag_idx: int, verify: bool, reserve: Callable[[PieceInfo], None] | None
    ) -> tuple[PieceInfo, bytes]:
        pid = piece_id(key, frag_idx)
        self._check_readable()
        for attempt in range(2):
            raw = self._db.get(pid)
            if raw is None:
                raise ChunkNotFound(f"{self.path}: piece {pid.hex()} not found")
            info = PieceInfo.decode(pid, raw)
            if reserve is not None:
                reserve(info)
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
            return info, data
        raise ChunkNotFound(f"{self.path}: piece {pid.hex()} not found")  # pragma: no cover

    def piece(self, key: bytes, frag_idx: int) -> PieceInfo | None:
        """Index entry of a piece, or None (does not read or verify the data)."""
        pid = piece_id(key, frag_idx)
        raw = self._db.get(pid)
        return None if raw is None else PieceInfo.decode(pid, raw)

    def has(self, key: bytes, frag_idx: int) -> bool:
        """True if the piece is indexed (not verified)."""
        return self._db.get(piece_id(key, frag_idx)) is not None

    def delete(self, key: bytes, frag_idx: int, decided_at: float | None = None) -> None:
        """Append a tombstone and drop the index entry. Idempotent.

        ``decided_at`` (unix seconds, by the deleter's clock minus its skew margin) makes the
        delete conditional: KeyConflict, and nothing deleted, if a put of the piece landed
        here at or after that time (see the module docstring, "Conditional deletes")."""
        pid = piece_id(key, frag_idx)
        self._check_usable()
        with self._delete_lock:
            # under the append lock; appending() checks closed again: close() may have run since
            with self._log.appending() as appender:
                op = appender.pending(pid)
                if op is not None:
                    old = None if op.kind == DEL else op.info
                else:
                    raw = self._db.get(pid)
                    old = PieceInfo.decode(pid, raw) if raw is not None else None
                if old is None:
                    if op is None:
                        return
                else:
                    if decided_at is not None and self._put_since(pid, decided_at):
                        raise KeyConflict(f"piece {pid.hex()} was put again after the delete was "
                                          "decided: not deleted")
                    appender.append([ctr.encode_tombstone(key, frag_idx, old.policy, old.chunk_size)])
                    op = appender.enqueue(PendingOp(DEL, pid, None, old))
            self._log.wait_committed(op)

    def pieces(self) -> Iterator[PieceInfo]:
        """Every indexed piece (a consistent snapshot of the index)."""
        yield from iter_pieces(self._db.items())

    def stats(self) -> DiskStats:
        """Usage of the disk: its containers (from the log's accounting) and its file system."""
        u = self._log.usage()
        try:
            vfs = os.statvfs(self.path)
            dev = os.stat(self.path).st_dev
        except OSError as e:
            raise DiskUnavailable(f"{self.path}: statvfs failed: {e}") from e
        return DiskStats(
            used_bytes=u.used_bytes,
            live_pieces=u.live_pieces,
            live_bytes=u.live_bytes,
            dead_bytes=u.used_bytes - u.containers * ctr.FILE_HEADER_SIZE - u.live_bytes,
            containers=u.containers,
            fs_total_bytes=vfs.f_blocks * vfs.f_frsize,
            fs_free_bytes=vfs.f_bavail * vfs.f_frsize,
            fs_dev=dev,
            checksum_errors=self._errors.count,
        )

    def compact(self, min_dead_ratio: float = 0.3) -> CompactReport:
        """Rewrite sealed containers whose dead share is >= ``min_dead_ratio`` (the active
        one sealed first when it is worth it: chunkstore.disk.compact.worth_sealing).

        Live records are copied verbatim into the active container through the normal group
        commit (so the index points to the copies), the index is synced, and only then is the
        old file deleted: a crash at any step leaves every piece reachable
        (chunkstore.disk.compact).
        """
        self._check_usable()
        try:
            st = os.statvfs(self.path)
            free: int | None = st.f_bavail * st.f_frsize
        except OSError:
            free = None
        with self._compact_lock, self._delete_lock:  # deletes wait: no tombstone for a record being moved
            report = compaction.compact(self._log, self._db, self._cache, min_dead_ratio,
                                        free_bytes=free, container_size=self.container_size)
        if report.pieces_dropped:
            self._errors.add(f"{report.pieces_dropped} piece(s) dropped by compaction",
                             report.pieces_dropped)
        return report

    # -- volume root records (format and rules: chunkstore.roots; files: chunkstore.disk.rootfiles)

    def put_root(self, volume_id: bytes, seq: int, body: bytes) -> int:
        """Keep this root record if ``seq`` is higher than the one held (durably); the same
        seq and body again is a no-op, the same seq with another body a KeyConflict, a lower
        seq stores nothing. Returns the seq the disk holds afterwards. FormatError for invalid
        fields, DiskFull when there is no space for the record."""
        rec = RootRecord(volume_id, seq, body)
        self._check_usable()
        return self._roots.put(rec)

    def get_root(self, volume_id: bytes) -> RootRecord | None:
        """The root record held for the volume, or None. ChunkCorrupt if it does not verify."""
        volume_id = check_volume_id(volume_id)
        self._check_readable()
        return self._roots.get(volume_id)

    def list_roots(self) -> list[tuple[bytes, int]]:
        """(volume_id, seq) of every root record on the disk, by volume id; records that do
        not verify are left out."""
        self._check_readable()
        return self._roots.list()

    def close(self) -> None:
        """Finish in-flight commits and release files and the index. Idempotent.

        Closes the log first (ContainerLog.close): it waits for a running group commit, then
        leads one last commit of what is still queued (records appended before the close:
        their callers are answered normally) while holding off any other, so nothing touches
        the active container after it is released. Puts and deletes that come later raise
        DiskUnavailable. Only then are the container files and the index closed.
        """
        with self._close_lock:
            if self._released:
                return
            self._released = True
            try:
                self._log.close()
            finally:
                self._cache.close()
                try:
                    self._db.close()
                except Exception as e:  # rocksdict: nothing left to do at close but say so
                    log.warning("%s: closing the index failed: %s: %s", self.path, type(e).__name__, e)

    def __enter__(self) -> "DiskStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DiskStore({self.path!r}, disk_id={self.marker.disk_id!r})"
