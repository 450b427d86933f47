"""Namespace changes of the SOFS layer: hard links, unlink, rmdir and rename.

A part of :class:`sofs.fs.Filesystem` (its base class), kept apart so that each module holds one
job: these are the operations that remove or move names, where the sticky-directory rules and
the WORM rules (:mod:`sofs.worm.rules`) are judged before anything is staged. Every change is one
metadata batch, as in the rest of the filesystem.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from . import schema
from .dirents import Directories, check_name
from .errors import (
    DirectoryNotEmpty,
    EntryExists,
    InvalidArgument,
    IsADirectory,
    NoSuchEntry,
    NotADirectory,
    NotPermitted,
    TooManyLinks,
)
from .fileio import DataPath
from .inode import Inode
from .inodes import InodeTable
from .metadata import Batch, MetaStore
from .permissions import ROOT_CTX, Ctx, check_sticky
from .trash import Trash
from .worm.rules import WormRules

LINK_MAX = 65000
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


class NamespaceChanges:
    """Link, unlink, rmdir, rename over the filesystem's state (set by :class:`Filesystem`)."""

    check_permissions: bool
    meta: MetaStore
    _lock: threading.RLock
    _inodes: InodeTable
    _dirs: Directories
    _data: DataPath
    _worm: WormRules
    _trash: Trash

    def _now(self) -> int:
        raise NotImplementedError

    def _dir(self, ino: int) -> Inode:
        raise NotImplementedError

    def _touch(self, node: Inode, now: int) -> None:
        raise NotImplementedError

    def _save(self, b: Batch, node: Inode) -> None:
        raise NotImplementedError

    def link(self, ino: int, new_parent: int, new_name: bytes, ctx: Ctx = ROOT_CTX) -> Inode:
        check_name(new_name)
        with self._lock:
            node = self._inodes.get(ino)
            if node.is_dir:
                raise NotPermitted("hard links to directories are not allowed")
            if node.nlink == 0:
                raise NoSuchEntry("inode was unlinked")
            if node.nlink >= LINK_MAX:
                raise TooManyLinks("too many links")
            pnode = self._dir(new_parent)
            if self._dirs.child(new_parent, new_name) is not None:
                raise EntryExists(new_name.decode(errors="replace"))
            self._worm.check_link(node, pnode)
            b = self.meta.batch()
            now = self._now()
            node.nlink += 1
            node.ctime_ns = now
            self._dirs.add(b, new_parent, new_name, ino)
            self._touch(pnode, now)
            self._save(b, node)
            self._save(b, pnode)
            self.meta.commit(b)
            return node.copy()

    def _drop_link(self, b: Batch, parent: Inode, name: bytes, ino: int, cookie: int,
                   now: int) -> None:
        """Remove one name of ``ino`` (file or empty directory), freeing it when unreferenced."""
        node = self._inodes.get(ino)
        self._dirs.remove(b, parent.ino, name, cookie)
        if node.is_dir:
            parent.nlink -= 1
            node.nlink = 0
            self._dirs.drop_parent(b, ino)
        else:
            node.nlink -= 1
        node.ctime_ns = now
        if node.is_dir:
            self._trash.forget_dirs()
        if node.nlink == 0:
            if self._trash.keeps(node, parent.ino):
                self._trash.put(b, node, parent.ino, name, now)
            elif self._inodes.is_open(ino):
                b.put(schema.orphan_key(ino), b"")
                self._save(b, node)
            else:
                self._data.free_inode(b, ino)
        else:
            self._save(b, node)

    def unlink(self, parent: int, name: bytes, ctx: Ctx = ROOT_CTX) -> None:
        check_name(name)
        self._remove(parent, name, ctx, want_dir=False)

    def rmdir(self, parent: int, name: bytes, ctx: Ctx = ROOT_CTX) -> None:
        if name == b".":
            raise InvalidArgument("cannot remove '.'")
        if name == b"..":
            raise DirectoryNotEmpty("cannot remove '..'")
        check_name(name)
        self._remove(parent, name, ctx, want_dir=True)

    def _remove(self, parent: int, name: bytes, ctx: Ctx, want_dir: bool,
                judge: Callable[[Inode], None] | None = None) -> None:
        """unlink (``want_dir`` False) or rmdir (True) of one name, in one batch; ``judge``
        replaces the WORM check (the privileged delete, :mod:`sofs.worm.admin`)."""
        shown = name.decode(errors="replace")
        with self._lock:
            pnode = self._dir(parent)
            child = self._dirs.child(parent, name)
            if child is None:
                raise NoSuchEntry(shown)
            node = self._inodes.get(child[0])
            if node.is_dir and not want_dir:
                raise IsADirectory(shown)
            if want_dir and not node.is_dir:
                raise NotADirectory(shown)
            if want_dir and not self._dirs.is_empty(node.ino):
                raise DirectoryNotEmpty(shown)
            self._check_sticky(pnode, node, ctx)
            (judge or self._worm.check_remove)(node)
            b = self.meta.batch()
            now = self._now()
            self._drop_link(b, pnode, name, child[0], child[1], now)
            self._touch(pnode, now)
            self._save(b, pnode)
            self.meta.commit(b)

    def _check_sticky(self, parent: Inode, node: Inode, ctx: Ctx) -> None:
        if self.check_permissions:
            check_sticky(parent, node, ctx)

    def rename(self, old_parent: int, old_name: bytes, new_parent: int, new_name: bytes,
               flags: int = 0, ctx: Ctx = ROOT_CTX) -> None:
        for name in (old_name, new_name):
            if name in (b".", b".."):
                raise InvalidArgument("cannot rename '.' or '..'")
            check_name(name)
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == (RENAME_NOREPLACE
                                                                      | RENAME_EXCHANGE):
            raise InvalidArgument("unsupported rename flags")
        with self._lock:
            op = self._dir(old_parent)
            np = self._dir(new_parent)
            src = self._dirs.child(old_parent, old_name)
            if src is None:
                raise NoSuchEntry(old_name.decode(errors="replace"))
            dst = self._dirs.child(new_parent, new_name)
            snode = self._inodes.get(src[0])
            if dst is not None and dst[0] == src[0]:
                return  # same inode under both names: POSIX says do nothing
            if flags & RENAME_NOREPLACE and dst is not None:
                raise EntryExists(new_name.decode(errors="replace"))
            if flags & RENAME_EXCHANGE and dst is None:
                raise NoSuchEntry(new_name.decode(errors="replace"))
            if snode.is_dir and self._dirs.is_ancestor(snode.ino, new_parent):
                raise InvalidArgument("cannot move a directory into its own subtree")
            self._check_sticky(op, snode, ctx)
            now = self._now()
            b = self.meta.batch()
            dnode = self._inodes.get(dst[0]) if dst is not None else None
            if flags & RENAME_EXCHANGE:
                assert dst is not None and dnode is not None  # checked above
                if dnode.is_dir and self._dirs.is_ancestor(dnode.ino, old_parent):
                    raise InvalidArgument("cannot move a directory into its own subtree")
                self._worm.check_rename(b, snode, dnode, op, np, self._emptied(snode))
                self._worm.check_rename(b, dnode, snode, np, op, self._emptied(dnode))
                self._dirs.remove(b, old_parent, old_name, src[1])
                self._dirs.remove(b, new_parent, new_name, dst[1])
                self._dirs.add(b, new_parent, new_name, snode.ino)
                self._dirs.add(b, old_parent, old_name, dnode.ino)
                self._reparent(b, snode, op, np)
                self._reparent(b, dnode, np, op)
                dnode.ctime_ns = now
                self._save(b, dnode)
            else:
                self._worm.check_rename(b, snode, dnode, op, np, self._emptied(snode))
                if dst is not None:
                    assert dnode is not None
                    if dnode.is_dir and not snode.is_dir:
                        raise IsADirectory(new_name.decode(errors="replace"))
                    if snode.is_dir and not dnode.is_dir:
                        raise NotADirectory(new_name.decode(errors="replace"))
                    if dnode.is_dir and not self._dirs.is_empty(dnode.ino):
                        raise DirectoryNotEmpty(new_name.decode(errors="replace"))
                    self._check_sticky(np, dnode, ctx)
                    self._drop_link(b, np, new_name, dnode.ino, dst[1], now)
                self._dirs.remove(b, old_parent, old_name, src[1])
                self._dirs.add(b, new_parent, new_name, snode.ino)
                self._reparent(b, snode, op, np)
            if snode.is_dir or (dnode is not None and dnode.is_dir):
                self._trash.forget_dirs()
            snode.ctime_ns = now
            self._touch(op, now)
            self._touch(np, now)
            self._save(b, snode)
            self._save(b, op)
            self._save(b, np)
            self.meta.commit(b)

    def _emptied(self, node: Inode) -> bool:
        return not node.is_dir or self._dirs.is_empty(node.ino)

    def _reparent(self, b: Batch, node: Inode, old: Inode, new: Inode) -> None:
        if node.is_dir and old.ino != new.ino:
            old.nlink -= 1
            new.nlink += 1
            self._dirs.set_parent(b, node.ino, new.ino)

