"""The volume root records of one disk: one small file per volume in ``DISK_DIR/roots/``.

Root records (format and rules: :mod:`chunkstore.roots`) live outside the containers and the
index, so nothing else on the disk depends on them. The file of a volume is named by its id
in lower-case hex and replaced atomically with :func:`~chunkstore.atomicfile.atomic_write`
(temp file ``.<hex>.*.tmp`` in ``roots/``, fsync, rename over ``<hex>``, fsync of ``roots/``)
under one lock per disk: a crash leaves either the old or the new record; a stale temp file
is ignored and removed when the disk is opened. ``roots/`` is created by the first write.
Log records (:func:`chunkstore.roots.is_log_record`: the slots of metadata journals) are
written in place instead, with one data sync (and a sync of ``roots/`` when the file is new):
a torn write leaves a file that does not verify, which reads skip.

:class:`RootFiles` is used by :class:`~chunkstore.disk.store.DiskStore` (``put_root`` /
``get_root`` / ``list_roots``), which checks first that the disk is open and usable.
"""

from __future__ import annotations

import errno
import os
import threading

from chunkstore.atomicfile import atomic_write, fsync_dir
from chunkstore.errors import ChunkCorrupt, DiskFull, DiskUnavailable, KeyConflict
from chunkstore.roots import MAX_RECORD_SIZE, VOLUME_ID_SIZE, RootRecord, is_log_record

ROOTS_DIR = "roots"
_NOSPACE = (errno.ENOSPC, errno.EDQUOT)


def volume_id_of(name: str) -> bytes | None:
    """The volume id a ``roots/`` file name stands for (lower-case hex), or None."""
    if len(name) != 2 * VOLUME_ID_SIZE:
        return None
    try:
        volume_id = bytes.fromhex(name)
    except ValueError:
        return None
    return volume_id if volume_id.hex() == name else None


class RootFiles:
    """The ``roots/`` directory of the disk directory ``disk_path``. Thread-safe."""

    def __init__(self, disk_path: str) -> None:
        self.disk_path = disk_path
        self.dir = os.path.join(disk_path, ROOTS_DIR)
        self._lock = threading.Lock()  # one root record write at a time
        self._remove_temps()
        # a log record file created just before a crash may not have its name on stable
        # storage yet, and in-place writes sync only data: make the names durable now
        self._dir_dirty = os.path.isdir(self.dir)


    def put(self, rec: RootRecord) -> int:
        """Keep ``rec`` if its seq is higher than the one held (durably); the same seq and body
        again is a no-op, the same seq with another body a KeyConflict, a lower seq stores
        nothing. Returns the seq held afterwards. DiskFull when there is no space for it."""
        with self._lock:
            try:
                held = self.get(rec.volume_id)
            except ChunkCorrupt:
                held = None  # an unreadable record is replaced by the new one
            if held is not None and held.seq >= rec.seq:
                if held.seq == rec.seq and held.body != rec.body:
                    raise KeyConflict(f"{self.disk_path}: root record {rec.seq} of volume {rec.volume_id.hex()} "
                                      "already stored with another body")
                return held.seq
            self._write(rec)
            return rec.seq

    def get(self, volume_id: bytes) -> RootRecord | None:
        """The record held for the volume, or None. ChunkCorrupt if it does not verify."""
        path = self._path(volume_id)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_RECORD_SIZE + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise DiskUnavailable(f"{self.disk_path}: cannot read root record {path}: {e}") from e
        try:
            rec = RootRecord.decode(raw)
        except ChunkCorrupt as e:
            raise ChunkCorrupt(f"{path}: {e}") from None
        if rec.volume_id != volume_id:
            raise ChunkCorrupt(f"{path}: holds the root record of volume {rec.volume_id.hex()}")
        return rec

    def list(self) -> list[tuple[bytes, int]]:
        """(volume_id, seq) of every record, by volume id; records that do not verify are left out."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise DiskUnavailable(f"{self.disk_path}: cannot list root records: {e}") from e
        out = []
        for name in sorted(names):
            volume_id = volume_id_of(name)
            if volume_id is None:
                continue
            try:
                rec = self.get(volume_id)
            except ChunkCorrupt:
                continue
            if rec is not None:
                out.append((volume_id, rec.seq))
        return out

    def _path(self, volume_id: bytes) -> str:
        return os.path.join(self.dir, volume_id.hex())

    def _write(self, rec: RootRecord) -> None:
        """Replace the volume's record file atomically and durably (lock held)."""
        try:
            if not os.path.isdir(self.dir):
                os.makedirs(self.dir, exist_ok=True)
                fsync_dir(self.disk_path)
            if is_log_record(rec.volume_id):
                self._write_in_place(rec)
            else:
                atomic_write(self._path(rec.volume_id), rec.encode(), mode=0o640)
        except OSError as e:
            if e.errno in _NOSPACE:
                raise DiskFull(f"{self.disk_path}: no space for the root record of volume {rec.volume_id.hex()}") from e
            raise DiskUnavailable(f"{self.disk_path}: cannot write root record: {e}") from e

    def _write_in_place(self, rec: RootRecord) -> None:
        path = self._path(rec.volume_id)
        raw = rec.encode()
        if not os.path.exists(path):
            self._dir_dirty = True  # until the new name is synced (lock held)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, raw, 0)
            os.ftruncate(fd, len(raw))
            os.fdatasync(fd)
        finally:
            os.close(fd)
        if self._dir_dirty:
            fsync_dir(self.dir)
            self._dir_dirty = False

    def _remove_temps(self) -> None:
        """Remove temp files a crash left in ``roots/`` (best effort)."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        for name in names:
            if name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(self.dir, name))
                except OSError:
                    pass
