"""The trash of a volume: deleted files kept for a while, invisible to clients, restorable.

On a volume whose trash is on (:attr:`sofs.volume.VolumeConfig.trash_s` > 0, 7 days by
default), removing the last name of a regular file outside any WORM domain, by ``unlink`` or by
a rename over it, through FUSE, NFS or SMB alike, does not free it: the inode stays as it was
(data, owner, mode, times, xattrs), without a name, with the ``TRASHED`` flag and a ``T`` record
(where it was, when it went). Nothing reaches it any more: it is in no directory, and a lookup
by inode number (an NFS handle) answers that it does not exist. Restoring
(:meth:`TrashOps.trash_restore`) gives it a name again, so the bytes, owner, mode, times and
xattrs are those it had. A trashed file is purged (freed: its chunks go to the collector, which
deletes them after its grace period) once its time in the trash has passed, at the mount's
collector pass (:meth:`TrashOps.trash_expire`), or by ``sofsctl trash purge``.

Files of a WORM domain never go to the trash (their deletion is judged by the WORM rules), nor
do directories, symlinks or special files (nothing of value is lost with them: a restored file
whose directory is gone gets its directories made again). Data overwritten in place is not in
the trash: snapshots keep that.

A part of :class:`sofs.fs.Filesystem` (:class:`TrashOps` is one of its bases, as
:mod:`sofs.namespace`); :class:`Trash` holds the records and the path cache.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable

from . import schema
from .dirents import Directories, check_name
from .errors import EntryExists, InvalidArgument, MetadataDamaged, NoSuchEntry
from .inode import ROOT_INO, TRASHED, Inode
from .inodes import InodeTable
from .metadata import Batch, MetaStore
from .schema import trash_key
from .worm.records import domain_index
from .worm.rules import WormRules

log = logging.getLogger(__name__)

PATH_CACHE = 4096


@dataclasses.dataclass(frozen=True)
class TrashEntry:
    """A file in the trash: where it was and when it went."""

    ino: int
    path: str          # its path in the volume when it was deleted
    deleted_ns: int    # wall clock
    size: int
    uid: int
    gid: int
    mode: int

    def to_value(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode("utf-8", "surrogateescape")

    @classmethod
    def from_value(cls, value: bytes) -> "TrashEntry":
        try:
            d = json.loads(value.decode("utf-8", "surrogateescape"))
            return cls(int(d["ino"]), str(d["path"]), int(d["deleted_ns"]), int(d["size"]),
                       int(d["uid"]), int(d["gid"]), int(d["mode"]))
        except (ValueError, KeyError, TypeError) as e:
            raise MetadataDamaged(f"unreadable trash record: {e}") from e

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Trash:
    """The trash records of one volume and the rule of what goes there (module docstring)."""

    def __init__(self, meta: MetaStore, dirs: Callable[[], Directories], retention_ns: int,
                 save: Callable[[Batch, Inode], None],
                 untrashed: frozenset[bytes] = frozenset()) -> None:
        self._meta = meta
        self._dirs = dirs
        self.retention_ns = retention_ns
        self._untrashed = untrashed  # directories at the root whose files are not kept
        self._save = save
        self._paths: dict[int, str] = {}  # directory ino -> its path (forgotten on moves)

    def keeps(self, node: Inode, parent: int) -> bool:
        """Whether removing the last name of ``node`` (in directory ``parent``) moves it to
        the trash."""
        if not (self.retention_ns > 0 and node.is_reg and not domain_index(node.flags)):
            return False
        if parent != ROOT_INO:
            for name in self._untrashed:  # e.g. the exports' probe files (fuse_mount.names)
                child = self._dirs().child(ROOT_INO, name)
                if child is not None and child[0] == parent:
                    return False
        return True

    def put(self, b: Batch, node: Inode, parent: int, name: bytes, now_ns: int) -> None:
        """Stage moving ``node`` (its last name, ``name`` in ``parent``, just removed) to the
        trash."""
        path = f"{self.dir_path(parent)}/{name.decode(errors='surrogateescape')}"
        node.flags |= TRASHED
        b.put(trash_key(node.ino), TrashEntry(node.ino, path, now_ns, node.size, node.uid,
                                              node.gid, node.mode).to_value())
        self._save(b, node)

    def dir_path(self, ino: int) -> str:
        """The path of directory ``ino`` ("" for the root), from the cache or the entries."""
        parts: list[str] = []
        at = ino
        for _ in range(4096):
            if at == ROOT_INO:
                break
            if at in self._paths:
                parts.append(self._paths[at])
                break
            up = self._dirs().parent_of(at)
            name = next((n for n, child, _ in self._dirs().entries(up) if child == at), None)
            parts.append("/?" if name is None else "/" + name.decode(errors="surrogateescape"))
            at = up
        path = "".join(reversed(parts))
        if len(self._paths) >= PATH_CACHE:
            self._paths.clear()
        self._paths[ino] = path
        return path

    def forget_dirs(self) -> None:
        """A directory moved or went: cached paths may be wrong."""
        self._paths.clear()

    def entry(self, ino: int) -> TrashEntry:
        value = self._meta.get(trash_key(ino))
        if value is None:
            raise NoSuchEntry(f"inode {ino} is not in the trash")
        return TrashEntry.from_value(value)

    def entries(self) -> list[TrashEntry]:
        return sorted((TrashEntry.from_value(v) for _, v in self._meta.scan(b"T")),
                      key=lambda e: (e.deleted_ns, e.ino))


class TrashOps:
    """Listing, restoring and purging the trash (a base of :class:`sofs.fs.Filesystem`)."""

    meta: MetaStore
    _lock: threading.RLock
    _inodes: InodeTable
    _dirs: Directories
    _worm: WormRules
    _trash: Trash
    _dir: Callable[[int], Inode]
    _now: Callable[[], int]
    _touch: Callable[[Inode, int], None]
    _save: Callable[[Batch, Inode], None]
    resolve: Callable[..., int]
    _free_inode: Callable[[Batch, int], None]

    def trash_list(self) -> list[TrashEntry]:
        with self._lock:
            return self._trash.entries()

    def trash_restore(self, ino: int, to: str | None = None) -> str:
        """Give the trashed file ``ino`` a name again: its old path, or ``to``; missing
        directories are made (root's, 0755). EntryExists when the name is taken. Returns the
        path; synced before it returns."""
        with self._lock:
            entry = self._trash.entry(ino)
        path = to if to is not None else entry.path
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise InvalidArgument("restore to a path of a file, not the volume's root")
        name = parts[-1].encode(errors="surrogateescape")
        check_name(name)
        parent = self.resolve("/".join(parts[:-1]), create_dirs=True)
        with self._lock:
            self._trash.entry(ino)  # still there
            pnode = self._dir(parent)
            if self._dirs.child(parent, name) is not None:
                raise EntryExists(f"{'/' + '/'.join(parts)} exists: restore to another path "
                                  "(--to)")
            node = self._inodes.get(ino)
            b = self.meta.batch()
            node.flags &= ~TRASHED
            node.nlink = 1
            self._worm.stamp_child(b, pnode, node)
            self._dirs.add(b, parent, name, ino)
            b.delete(trash_key(ino))
            self._touch(pnode, self._now())
            self._save(b, node)
            self._save(b, pnode)
            self.meta.commit(b, sync=True)
        shown = "/" + "/".join(parts)
        log.info("trash: inode %d restored to %s", ino, shown)
        return shown

    def trash_purge(self, inos: list[int] | None = None, before_ns: int | None = None) -> int:
        """Free trashed files for good: those of ``inos``, or every one deleted before
        ``before_ns``, or all; returns how many. A file still open is freed at its last
        close."""
        done = 0
        with self._lock:
            todo = [e.ino for e in self._trash.entries()
                    if (inos is None or e.ino in inos)
                    and (before_ns is None or e.deleted_ns < before_ns)]
        missing = set(inos or ()) - set(todo)
        if missing:
            raise NoSuchEntry(f"not in the trash: inode {min(missing)}")
        for ino in todo:
            with self._lock:
                if self.meta.get(trash_key(ino)) is None:
                    continue
                b = self.meta.batch()
                node = self._inodes.get(ino)
                b.delete(trash_key(ino))
                node.flags &= ~TRASHED
                if self._inodes.is_open(ino):
                    b.put(schema.orphan_key(ino), b"")
                    self._save(b, node)
                else:
                    self._free_inode(b, ino)
                self.meta.commit(b)
                done += 1
        return done

    def trash_expire(self, now_ns: int) -> int:
        """Purge what has been in the trash longer than the volume's trash time (all of it
        once the trash is turned off)."""
        n = self.trash_purge(before_ns=now_ns - self._trash.retention_ns)
        if n:
            log.info("trash: %d file(s) purged after %d s in the trash", n,
                     self._trash.retention_ns // 10**9)
        return n
