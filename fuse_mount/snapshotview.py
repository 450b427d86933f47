"""The hidden ``.snapshots`` directory at a mount's root: every snapshot of the volume, read-only.

``/.snapshots`` is not listed in the root directory (``ls -a`` does not show it, so backups and
``du`` of the volume do not walk every snapshot), but a lookup of the name works on the mount,
and so through NFS and SMB: ``cd /mnt/vol/.snapshots/NAME``. Its entries are the volume's ready
snapshots (:mod:`sofs.snapshot`), each a read-only tree as the volume was when it was taken:
every change (write, create, unlink, rename, chmod, setxattr...) fails with EROFS.

Inode numbers: a snapshot's inode is ``slot << SLOT_SHIFT | ino`` (``ino`` its own number in
the snapshot's metadata), the ``.snapshots`` directory is slot 1 with ``ino`` 0, and each
snapshot has the slot its catalog entry gives it (2, 3...: never given to another snapshot of
the volume, :mod:`sofs.snapshot.catalog`), so the numbers are the same after a remount and an
NFS file handle of a deleted snapshot's file finds nothing rather than another snapshot's
file. The live volume's inode numbers stay below ``1 << SLOT_SHIFT`` (2**40: its statfs says
it holds at most 2**40 files); slots stay below 2**23, so every number fits in 63 bits. File
handles of a snapshot are numbered the same way.

Each snapshot is served by a read-only :class:`~sofs.fs.Filesystem` (:mod:`sofs.snapshot.view`),
opened at the first lookup in it and closed once the snapshot is deleted and no file of it is
open. The catalog is read again whenever it changed (its file is replaced on each change), so a
snapshot taken by ``sofsctl snapshot create`` appears at once; the kernel keeps the entries of
``.snapshots`` for a second only (a snapshot's own tree never changes: cached as long as the
live volume's).
"""

from __future__ import annotations

import logging
import os
import stat
import threading

from sofs.errors import FsError, IsADirectory, NoSuchAttribute, NoSuchEntry, NotADirectory, VolumeFenced
from sofs.fs import Filesystem
from sofs.inode import ROOT_INO, Inode
from sofs.snapshot import catalog
from sofs.snapshot.catalog import MAX_SLOT, SnapshotInfo
from sofs.snapshot.manager import Snapshots

log = logging.getLogger(__name__)

SNAPSHOTS_NAME = b".snapshots"
SLOT_SHIFT = 40
INNER_MASK = (1 << SLOT_SHIFT) - 1
SNAPDIR_INO = 1 << SLOT_SHIFT
assert (MAX_SLOT << SLOT_SHIFT | INNER_MASK) < 1 << 63
SNAPDIR_TIMEOUT = 1.0  # seconds the kernel may keep .snapshots and its entries
VIEW_CACHE_BYTES = 16 << 20
READ_ONLY = "a snapshot is read-only"


def _refuse() -> VolumeFenced:
    return VolumeFenced(READ_ONLY)


class SnapshotView:
    """The ``.snapshots`` tree of the mounted volume ``fs`` (module docstring). Thread-safe:
    namespace requests come from the event loop, reads from worker threads."""

    def __init__(self, fs: Filesystem) -> None:
        self._live = fs
        self._snaps = Snapshots(fs)
        self._lock = threading.RLock()
        self._infos: dict[int, SnapshotInfo] = {}  # slot -> a ready snapshot
        self._open: dict[int, Filesystem] = {}
        self._retired: dict[int, Filesystem] = {}  # deleted, but files of it are open
        self._signature: tuple[int, int] | None = None

    @staticmethod
    def owns(ino: int) -> bool:
        """Whether the inode (or file handle) number is one of the snapshots'."""
        return ino > INNER_MASK

    @staticmethod
    def is_entry(parent: int, name: bytes) -> bool:
        """Whether ``name`` in the live directory ``parent`` is the ``.snapshots`` entry."""
        return parent == ROOT_INO and name == SNAPSHOTS_NAME

    # ------------------------------------------------------------------ the catalog

    def refresh(self) -> None:
        """Read the catalog again if it changed: new snapshots appear, deleted ones go."""
        path = catalog.catalog_path(self._snaps.vdir)
        try:
            st = os.stat(path)
            signature: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            signature = None
        with self._lock:
            if signature != self._signature or (signature is None and self._infos):
                try:
                    ready = self._snaps.ready()
                except FsError as e:
                    log.error("the snapshots of volume %s cannot be listed: %s",
                              self._live.config.name, e)
                    ready = []
                self._signature = signature
                self._infos = {info.slot: info for info in ready}
                for slot in [s for s in self._open if s not in self._infos]:
                    self._retired[slot] = self._open.pop(slot)
            self._close_idle()

    def _close_idle(self) -> None:
        """Close the views of deleted snapshots that have no open file any more."""
        with self._lock:
            for slot, view in list(self._retired.items()):
                if not view.statistics().open_files:
                    del self._retired[slot]
                    self._close(view)

    def _close(self, view: Filesystem) -> None:
        try:
            view.close()
        except FsError as e:
            log.warning("closing a snapshot's view: %s", e)

    def close(self) -> None:
        """Close every snapshot's view (at the end of the mount)."""
        with self._lock:
            for view in [*self._open.values(), *self._retired.values()]:
                self._close(view)
            self._open.clear()
            self._retired.clear()

    def _view(self, number: int) -> tuple[Filesystem, int]:
        """The snapshot's Filesystem and its own inode (or handle) number of ``number``."""
        slot, inner = number >> SLOT_SHIFT, number & INNER_MASK
        with self._lock:
            view = self._open.get(slot) or self._retired.get(slot)
            if view is not None:
                return view, inner
            info = self._infos.get(slot)
            if info is None:
                raise NoSuchEntry(f"inode {number}: no such snapshot (deleted?)")
            view = self._snaps.open(info.name, cache_bytes=VIEW_CACHE_BYTES)
            self._open[slot] = view
            return view, inner

    # ------------------------------------------------------------------ entries

    def _remap(self, slot: int, node: Inode) -> Inode:
        out = node.copy()
        out.ino = slot << SLOT_SHIFT | node.ino
        return out

    def _snapdir(self) -> Inode:
        root = self._live.getattr(ROOT_INO)
        newest = max((i.created_ns for i in self._infos.values()), default=root.ctime_ns)
        return Inode(SNAPDIR_INO, stat.S_IFDIR | 0o555, 0, 0, 2 + len(self._infos), 0,
                     newest, newest, newest)

    def timeout(self, ino: int) -> float | None:
        """How long the kernel may keep the entry of ``ino`` if it is not as long as the
        live volume's: ``.snapshots`` and the snapshots' roots (they come and go)."""
        if ino == SNAPDIR_INO or (self.owns(ino) and ino & INNER_MASK == ROOT_INO):
            return SNAPDIR_TIMEOUT
        return None

    def entry(self) -> Inode:
        """``/.snapshots`` itself (looked up in the live root)."""
        self.refresh()
        return self._snapdir()

    def lookup(self, parent: int, name: bytes) -> Inode:
        if parent == SNAPDIR_INO:
            if name == b".":
                return self.entry()
            if name == b"..":
                return self._live.getattr(ROOT_INO)
            self.refresh()
            for slot, info in self._infos.items():
                if info.name.encode() == name:
                    view, _ = self._view(slot << SLOT_SHIFT)
                    return self._remap(slot, view.getattr(ROOT_INO))
            raise NoSuchEntry(name.decode(errors="replace"))
        view, inner = self._view(parent)
        if inner == ROOT_INO and name == b"..":
            return self.entry()
        return self._remap(parent >> SLOT_SHIFT, view.lookup(inner, name))

    def getattr(self, ino: int) -> Inode:
        if ino == SNAPDIR_INO:
            return self.entry()
        view, inner = self._view(ino)
        return self._remap(ino >> SLOT_SHIFT, view.getattr(inner))

    def readdir(self, ino: int, start: int) -> list[tuple[bytes, Inode, int]]:
        """Entries after readdir offset ``start`` (as :meth:`Filesystem.readdir`)."""
        if ino == SNAPDIR_INO:
            self.refresh()
            out = []
            if start < 1:
                out.append((b".", self._snapdir(), 1))
            if start < 2:
                out.append((b"..", self._live.getattr(ROOT_INO), 2))
            for slot in sorted(self._infos):
                if slot + 1 <= start:  # offsets 3, 4...: a snapshot's slot keeps its offset
                    continue
                snapshot = self._infos[slot].name
                try:
                    view, _ = self._view(slot << SLOT_SHIFT)
                    root = self._remap(slot, view.getattr(ROOT_INO))
                except FsError as e:  # one damaged snapshot does not hide the others
                    log.error("snapshot %s cannot be opened: %s", snapshot, e)
                    continue
                out.append((snapshot.encode(), root, slot + 1))
            return out
        view, inner = self._view(ino)
        slot = ino >> SLOT_SHIFT
        out = []
        for name, node, offset in view.readdir(inner, start):
            if inner == ROOT_INO and name == b"..":
                out.append((name, self._snapdir(), offset))
            else:
                out.append((name, self._remap(slot, node), offset))
        return out

    def opendir(self, ino: int) -> None:
        node = self.getattr(ino)
        if not node.is_dir:
            raise NotADirectory(f"inode {ino} is not a directory")

    def readlink(self, ino: int) -> bytes:
        view, inner = self._view(ino)
        return view.readlink(inner)

    def getxattr(self, ino: int, name: bytes) -> bytes:
        if ino == SNAPDIR_INO:
            raise NoSuchAttribute(name.decode(errors="replace"))
        view, inner = self._view(ino)
        return view.getxattr(inner, name)

    def listxattr(self, ino: int) -> list[bytes]:
        if ino == SNAPDIR_INO:
            return []
        view, inner = self._view(ino)
        return view.listxattr(inner)

    def access(self, ino: int, mode: int) -> None:
        if mode & os.W_OK:
            raise _refuse()

    # ------------------------------------------------------------------ files

    def open(self, ino: int, flags: int) -> int:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & (os.O_TRUNC | os.O_CREAT):
            raise _refuse()
        if ino == SNAPDIR_INO:
            raise IsADirectory(".snapshots is a directory")
        view, inner = self._view(ino)
        return (ino >> SLOT_SHIFT) << SLOT_SHIFT | view.open(inner, flags)

    def read_nowait(self, fh: int, offset: int, size: int) -> bytes | None:
        view, inner = self._view(fh)
        return view.read_nowait(inner, offset, size)

    def read(self, fh: int, offset: int, size: int) -> bytes:
        view, inner = self._view(fh)
        return view.read(inner, offset, size)

    def release(self, fh: int) -> None:
        view, inner = self._view(fh)
        view.release(inner)
        if self._retired:
            self._close_idle()

    @staticmethod
    def refuse() -> VolumeFenced:
        """The error of every change under ``.snapshots`` (EROFS)."""
        return _refuse()

