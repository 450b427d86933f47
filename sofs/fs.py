"""The filesystem API of the SOFS layer: POSIX files and directories over metadata and chunks.

:class:`Filesystem` is plain Python (no FUSE import); ``fuse_mount`` serves it and tests call it
directly. It is thread-safe: one lock guards the in-memory state and metadata commits and is never
held during chunk I/O, compression or erasure coding, so the FUSE event loop may call the cheap
namespace operations directly while data operations (``read``, ``write``, ``flush``, ``fsync``,
``release``, ``setattr`` with a size) run in worker threads.

This module holds the namespace (lookups, directories, links, renames, attributes, xattrs) and
the open-file handles; the data path is in its base class :class:`sofs.fileio.FileIO`.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from chunkstore.api import ChunkStore

from . import acl, schema
from .blocks import BlockCodec
from .errors import (AccessDenied, AttributeNameInvalid, AttributeTooLarge, BadFileHandle,
                     DirectoryNotEmpty, EntryExists, FsError, InvalidArgument, IsADirectory,
                     NameTooLong, NoSuchAttribute, NoSuchEntry, NotADirectory,
                     NotPermitted, TooManyLinks)
from .filedata import BlockCache, FileBuffers
from .fileio import FileIO, _now
from .inode import ROOT_INO, Inode
from .metadata import Batch, MetaStore
from .rwlock import SharedExclusiveLock
from .volume import VolumeConfig, load_volume, volume_dir

NAME_MAX = 255
XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536
LINK_MAX = 65000
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
XATTR_CREATE = 1
XATTR_REPLACE = 2
DOT_COOKIE = 1
DOTDOT_COOKIE = 2
_FIRST_COOKIE = 3
_ID_RESERVE = 4096
_DAY_NS = 86400 * 10**9


@dataclasses.dataclass(frozen=True)
class Ctx:
    """Who asks: the caller's uid, gid and umask (from the FUSE request)."""

    uid: int = 0
    gid: int = 0
    umask: int = 0


ROOT_CTX = Ctx()


@dataclasses.dataclass(frozen=True)
class StatFs:
    block_size: int
    blocks: int
    blocks_free: int
    files: int
    files_free: int
    name_max: int = NAME_MAX


@dataclasses.dataclass
class _Handle:
    ino: int
    flags: int
    last_end: int = -1  # end of the previous read, to detect sequential access


def _check_name(name: bytes) -> None:
    if len(name) > NAME_MAX:
        raise NameTooLong(f"name of {len(name)} bytes (max {NAME_MAX})")
    if not name or b"/" in name or b"\0" in name:
        raise InvalidArgument(f"invalid name {name!r}")


class _ReservedCounter:
    """Numbers (inodes, readdir cookies) handed out from reserved ranges: the range's ceiling
    is persisted (in the batch of the operation that first needs it) before a number of it is
    used, so a crash skips numbers but never reuses one."""

    def __init__(self, key: bytes, first: int) -> None:
        self.key = key
        self.next = self.ceiling = first

    def take(self, b: Batch) -> int:
        if self.next >= self.ceiling:
            self.ceiling = self.next + _ID_RESERVE
            b.put(self.key, schema.le_u64(self.ceiling))
        n = self.next
        self.next += 1
        return n


class Filesystem(FileIO):
    """One mounted volume. Open with :meth:`open_volume`; :meth:`close` flushes everything.

    ``check_permissions``: enforce the owner rules of chmod/chown and sticky directories here.
    A FUSE mount with ``default_permissions`` turns it off: the kernel checks every request
    first (with the caller's groups, which this layer does not know) and then sends some
    requests of its own in the caller's name, such as dropping set-user-ID after a write.
    """

    def __init__(self, meta: MetaStore, store: ChunkStore, config: VolumeConfig, *,
                 cache_bytes: int = 64 << 20, dirty_limit: int = 48 << 20,
                 gc_grace_s: float = 3600.0, workers: int = 6,
                 check_permissions: bool = True) -> None:
        self.check_permissions = check_permissions
        self.meta = meta
        self.store = store
        self.config = config
        self.block_size = config.block_size
        self.codec = BlockCodec(config.zstd_level, uuid.UUID(config.uuid).bytes)
        self.protection = config.protection()
        self.gc_grace_ns = int(gc_grace_s * 1e9)
        self.dirty_limit = dirty_limit
        self.cache = BlockCache(cache_bytes)
        self._lock = threading.RLock()
        self._gc_lock = SharedExclusiveLock()
        self._gc_pass = threading.Lock()  # one collector pass at a time; held to pause it
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sofs-data")
        # at most this many flushes encode and store at once: bounds memory (each holds a few
        # copies of a block) while keeping both cores and the disks busy
        self._flush_slots = threading.BoundedSemaphore(3)
        self._inodes: dict[int, Inode] = {}
        self._open_count: dict[int, int] = {}
        self._handles: dict[int, _Handle] = {}
        self._next_fh = 1
        self._buffers: dict[int, FileBuffers] = {}
        self._dirty_total = 0
        self._fetching: dict[bytes, Future] = {}
        self._init_superblock()
        self._free_orphans()
        self._recover_unflushed()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open_volume(cls, data_dir: Path, name: str, store: ChunkStore, **kw) -> "Filesystem":
        config = load_volume(data_dir, name)
        meta = MetaStore(volume_dir(data_dir, name) / "meta")
        try:
            return cls(meta, store, config, **kw)
        except BaseException:
            meta.close()
            raise

    def flush_all(self) -> None:
        """Store every buffered file and sync the metadata.

        One file that cannot be stored does not keep the others from being flushed: the first
        error is raised after everything else was done."""
        errors = []
        for ino in list(self._buffers):
            try:
                self._flush_inode(ino)
            except FsError as e:
                errors.append(e)
        self.meta.commit(self.meta.batch(), sync=True)
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Flush every file, sync metadata (:meth:`flush_all`), stop the workers; the store
        stays open."""
        try:
            self.flush_all()
        finally:
            self._pool.shutdown(wait=True)
            self.meta.close()

    def _init_superblock(self) -> None:
        m = self.meta
        b = m.batch()
        if m.get(schema.SUPER_FORMAT) is None:
            now = _now()
            root = Inode(ROOT_INO, stat.S_IFDIR | 0o755, 0, 0, 2, 0, now, now, now)
            b.put(schema.inode_key(ROOT_INO), root.pack())
            b.put(schema.SUPER_FORMAT, schema.le_u64(schema.SCHEMA_VERSION))
            b.put(schema.SUPER_NEXT_INO, schema.le_u64(ROOT_INO + 1))
            b.put(schema.SUPER_NEXT_COOKIE, schema.le_u64(_FIRST_COOKIE))
            b.put(schema.SUPER_MOUNTS, schema.le_u64(0))
        else:
            version = schema.parse_le_u64(m.get(schema.SUPER_FORMAT))
            if version != schema.SCHEMA_VERSION:
                raise FsError(f"metadata schema version {version} is not supported")
        mounts = schema.parse_le_u64(b.get(schema.SUPER_MOUNTS)) + 1
        b.put(schema.SUPER_MOUNTS, schema.le_u64(mounts))
        self.generation = mounts & 0xFFFFFFFF
        self._inos = _ReservedCounter(schema.SUPER_NEXT_INO,
                                      schema.parse_le_u64(b.get(schema.SUPER_NEXT_INO)))
        self._cookies = _ReservedCounter(schema.SUPER_NEXT_COOKIE,
                                         schema.parse_le_u64(b.get(schema.SUPER_NEXT_COOKIE)))
        m.commit(b, sync=True)

    def _free_orphans(self) -> None:
        """Inodes unlinked while open when the last mount died: nobody holds them now."""
        orphans = [schema.parse_ino_key(k) for k, _ in self.meta.scan(b"O")]
        for ino in orphans:
            b = self.meta.batch()
            self._free_inode(b, ino)
            self.meta.commit(b)

    def _alloc_ino(self, b: Batch) -> int:
        return self._inos.take(b)

    def _alloc_cookie(self, b: Batch) -> int:
        return self._cookies.take(b)

    # ------------------------------------------------------------------ inode helpers

    def _inode(self, ino: int) -> Inode:
        node = self._inodes.get(ino)
        if node is None:
            value = self.meta.get(schema.inode_key(ino))
            if value is None:
                raise NoSuchEntry(f"inode {ino}")
            node = Inode.unpack(ino, value)
            self._remember(node)
        return node

    def _remember(self, node: Inode) -> None:
        """Cache an inode; past 200,000 the older half of the idle ones goes."""
        if len(self._inodes) >= 200_000:
            self._evict_inodes()
        self._inodes[node.ino] = node

    def _evict_inodes(self) -> None:
        busy = set(self._open_count) | set(self._buffers)
        for ino in list(self._inodes)[: len(self._inodes) // 2]:
            if ino not in busy:
                del self._inodes[ino]

    def _save(self, b: Batch, node: Inode) -> None:
        """Stage the inode; a file being written keeps the size of its last complete flush
        (see :meth:`_commit_blocks`), whatever the operation that saves it."""
        fb = self._buffers.get(node.ino)
        if fb is not None and fb.durable_size != node.size:
            b.put(schema.inode_key(node.ino), dataclasses.replace(node, size=fb.durable_size).pack())
        else:
            b.put(schema.inode_key(node.ino), node.pack())

    def _dir(self, ino: int) -> Inode:
        node = self._inode(ino)
        if not node.is_dir:
            raise NotADirectory(f"inode {ino} is not a directory")
        return node

    def _child(self, parent: int, name: bytes) -> tuple[int, int] | None:
        value = self.meta.get(schema.dentry_key(parent, name))
        return schema.parse_dentry_value(value) if value else None

    def _parent_of(self, ino: int) -> int:
        value = self.meta.get(schema.parent_key(ino))
        return schema.parse_le_u64(value) if value else ROOT_INO

    def _add_entry(self, b: Batch, parent: int, name: bytes, ino: int) -> None:
        cookie = self._alloc_cookie(b)
        b.put(schema.dentry_key(parent, name), schema.dentry_value(ino, cookie))
        b.put(schema.readdir_key(parent, cookie), schema.readdir_value(ino, name))

    def _remove_entry(self, b: Batch, parent: int, name: bytes, cookie: int) -> None:
        b.delete(schema.dentry_key(parent, name))
        b.delete(schema.readdir_key(parent, cookie))

    def _touch(self, node: Inode, now: int, *, mtime: bool = True) -> None:
        node.ctime_ns = now
        if mtime:
            node.mtime_ns = now

    # ------------------------------------------------------------------ namespace reads

    def getattr(self, ino: int) -> Inode:
        with self._lock:
            return self._inode(ino).copy()

    def lookup(self, parent: int, name: bytes) -> Inode:
        with self._lock:
            if name == b".":  # any inode: the kernel's export path looks files up by number
                return self._inode(parent).copy()
            self._dir(parent)
            if name == b"..":
                return self._inode(self._parent_of(parent)).copy()
            _check_name(name)
            child = self._child(parent, name)
            if child is None:
                raise NoSuchEntry(name.decode(errors="replace"))
            return self._inode(child[0]).copy()

    def readdir(self, ino: int, start: int = 0, limit: int = 1024) -> list[tuple[bytes, Inode, int]]:
        """Up to ``limit`` entries after readdir offset ``start``: (name, inode, its offset).

        Offsets are per-entry cookies that never change while the entry exists, so a listing
        resumed after entries were added or removed neither repeats nor skips survivors.
        """
        out: list[tuple[bytes, Inode, int]] = []
        with self._lock:
            self._dir(ino)
            if start < DOT_COOKIE:
                out.append((b".", self._inode(ino).copy(), DOT_COOKIE))
            if start < DOTDOT_COOKIE:
                out.append((b"..", self._inode(self._parent_of(ino)).copy(), DOTDOT_COOKIE))
            first = schema.readdir_key(ino, max(start + 1, _FIRST_COOKIE))
            for key, value in self.meta.scan(schema.readdir_prefix(ino), first):
                if len(out) >= limit:
                    break
                child, name = schema.parse_readdir_value(value)
                try:
                    node = self._inode(child).copy()
                except NoSuchEntry:
                    continue
                out.append((name, node, schema.parse_readdir_key(key)))
        return out

    def readlink(self, ino: int) -> bytes:
        with self._lock:
            node = self._inode(ino)
            if not node.is_symlink:
                raise InvalidArgument("not a symbolic link")
            target = self.meta.get(schema.symlink_key(ino))
            return target or b""

    def access(self, ino: int, mode: int, ctx: Ctx) -> None:
        """Raise AccessDenied unless ``ctx`` may access ``ino`` with ``mode`` (R_OK|W_OK|X_OK)."""
        with self._lock:
            self._check_access(self._inode(ino), mode, ctx)

    def _check_access(self, node: Inode, mode: int, ctx: Ctx) -> None:
        if mode == os.F_OK:
            return
        if ctx.uid == 0:
            if mode & os.X_OK and not node.is_dir and not node.mode & 0o111:
                raise AccessDenied("no execute bit")
            return
        if ctx.uid == node.uid:
            bits = (node.mode >> 6) & 7
        elif ctx.gid == node.gid:
            bits = (node.mode >> 3) & 7
        else:
            bits = node.mode & 7
        if mode & ~bits & 7:
            raise AccessDenied("permission bits deny access")

    def statfs(self) -> StatFs:
        cap = self.store.capacity()
        overhead = self.protection.large.overhead
        bsize = 4096
        return StatFs(block_size=bsize, blocks=int(cap.total_bytes / overhead) // bsize,
                      blocks_free=int(cap.free_bytes / overhead) // bsize,
                      files=2**40, files_free=2**40 - self._inos.next)

    # ------------------------------------------------------------------ namespace changes

    def _new_inode(self, b: Batch, parent: Inode, mode: int, ctx: Ctx, rdev: int = 0) -> Inode:
        now = _now()
        gid = ctx.gid
        if parent.mode & stat.S_ISGID:
            gid = parent.gid
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
        node = Inode(self._alloc_ino(b), mode, ctx.uid, gid, 1, 0, now, now, now, rdev,
                     self.generation)
        self._remember(node)
        return node

    def _create_node(self, parent: int, name: bytes, mode: int, ctx: Ctx, *,
                     rdev: int = 0, target: bytes | None = None) -> Inode:
        """Create an inode under ``parent``; ``mode`` is the caller's, before the umask.

        The umask applies unless the parent has a default ACL, which is then inherited
        instead (masked by ``mode``), as on ext4.
        """
        _check_name(name)
        with self._lock:
            pnode = self._dir(parent)
            if self._child(parent, name) is not None:
                raise EntryExists(name.decode(errors="replace"))
            if stat.S_ISDIR(mode) and pnode.nlink >= LINK_MAX:
                raise TooManyLinks("too many subdirectories")
            b = self.meta.batch()
            inherited = None
            default = None if target is not None else \
                self.meta.get(schema.xattr_key(parent, acl.DEFAULT))
            if default is not None:
                inherited, mode = acl.inherit(acl.decode(default), mode)
            elif target is None:
                mode &= ~(ctx.umask & 0o777)
            node = self._new_inode(b, pnode, mode, ctx, rdev)
            if inherited is not None and not acl.is_minimal(inherited):
                b.put(schema.xattr_key(node.ino, acl.ACCESS), acl.encode(inherited))
            if node.is_dir:
                node.nlink = 2
                pnode.nlink += 1
                b.put(schema.parent_key(node.ino), schema.le_u64(parent))
                if default is not None:
                    b.put(schema.xattr_key(node.ino, acl.DEFAULT), default)
            if target is not None:
                node.size = len(target)
                b.put(schema.symlink_key(node.ino), target)
            self._add_entry(b, parent, name, node.ino)
            self._touch(pnode, node.ctime_ns)
            self._save(b, node)
            self._save(b, pnode)
            self.meta.commit(b)
            return node.copy()

    def mkdir(self, parent: int, name: bytes, mode: int, ctx: Ctx = ROOT_CTX) -> Inode:
        return self._create_node(parent, name, stat.S_IFDIR | (mode & 0o7777), ctx)

    def mknod(self, parent: int, name: bytes, mode: int, rdev: int = 0,
              ctx: Ctx = ROOT_CTX) -> Inode:
        fmt = stat.S_IFMT(mode) or stat.S_IFREG
        if fmt not in (stat.S_IFREG, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK):
            raise InvalidArgument("unsupported file type")
        return self._create_node(parent, name, fmt | (mode & 0o7777), ctx, rdev=rdev)

    def symlink(self, parent: int, name: bytes, target: bytes, ctx: Ctx = ROOT_CTX) -> Inode:
        if len(target) > 4095:
            raise NameTooLong("symlink target over 4095 bytes")
        return self._create_node(parent, name, stat.S_IFLNK | 0o777, ctx, target=target)

    def create(self, parent: int, name: bytes, mode: int, flags: int,
               ctx: Ctx = ROOT_CTX) -> tuple[int, Inode]:
        node = self._create_node(parent, name, stat.S_IFREG | (mode & 0o7777), ctx)
        return self._new_handle(node.ino, flags), node

    def link(self, ino: int, new_parent: int, new_name: bytes, ctx: Ctx = ROOT_CTX) -> Inode:
        _check_name(new_name)
        with self._lock:
            node = self._inode(ino)
            if node.is_dir:
                raise NotPermitted("hard links to directories are not allowed")
            if node.nlink == 0:
                raise NoSuchEntry("inode was unlinked")
            if node.nlink >= LINK_MAX:
                raise TooManyLinks("too many links")
            pnode = self._dir(new_parent)
            if self._child(new_parent, new_name) is not None:
                raise EntryExists(new_name.decode(errors="replace"))
            b = self.meta.batch()
            now = _now()
            node.nlink += 1
            node.ctime_ns = now
            self._add_entry(b, new_parent, new_name, ino)
            self._touch(pnode, now)
            self._save(b, node)
            self._save(b, pnode)
            self.meta.commit(b)
            return node.copy()

    def _is_empty_dir(self, ino: int) -> bool:
        return not self.meta.has_prefix(schema.dentry_prefix(ino))

    def _drop_link(self, b: Batch, parent: Inode, name: bytes, ino: int, cookie: int,
                   now: int) -> None:
        """Remove one name of ``ino`` (file or empty directory), freeing it when unreferenced."""
        node = self._inode(ino)
        self._remove_entry(b, parent.ino, name, cookie)
        if node.is_dir:
            parent.nlink -= 1
            node.nlink = 0
            b.delete(schema.parent_key(ino))
        else:
            node.nlink -= 1
        node.ctime_ns = now
        if node.nlink == 0:
            if self._open_count.get(ino):
                b.put(schema.orphan_key(ino), b"")
                self._save(b, node)
            else:
                self._free_inode(b, ino)
        else:
            self._save(b, node)

    def unlink(self, parent: int, name: bytes, ctx: Ctx = ROOT_CTX) -> None:
        _check_name(name)
        self._remove(parent, name, ctx, want_dir=False)

    def rmdir(self, parent: int, name: bytes, ctx: Ctx = ROOT_CTX) -> None:
        if name == b".":
            raise InvalidArgument("cannot remove '.'")
        if name == b"..":
            raise DirectoryNotEmpty("cannot remove '..'")
        _check_name(name)
        self._remove(parent, name, ctx, want_dir=True)

    def _remove(self, parent: int, name: bytes, ctx: Ctx, want_dir: bool) -> None:
        """unlink (``want_dir`` False) or rmdir (True) of one name, in one batch."""
        shown = name.decode(errors="replace")
        with self._lock:
            pnode = self._dir(parent)
            child = self._child(parent, name)
            if child is None:
                raise NoSuchEntry(shown)
            node = self._inode(child[0])
            if node.is_dir and not want_dir:
                raise IsADirectory(shown)
            if want_dir and not node.is_dir:
                raise NotADirectory(shown)
            if want_dir and not self._is_empty_dir(node.ino):
                raise DirectoryNotEmpty(shown)
            self._check_sticky(pnode, node, ctx)
            b = self.meta.batch()
            now = _now()
            self._drop_link(b, pnode, name, child[0], child[1], now)
            self._touch(pnode, now)
            self._save(b, pnode)
            self.meta.commit(b)

    def _check_sticky(self, parent: Inode, node: Inode, ctx: Ctx) -> None:
        if (self.check_permissions and parent.mode & stat.S_ISVTX
                and ctx.uid not in (0, parent.uid, node.uid)):
            raise NotPermitted("sticky directory: only the owner may remove or rename")

    def _is_ancestor(self, maybe_ancestor: int, ino: int) -> bool:
        seen = 0
        while ino != ROOT_INO and seen < 100_000:
            if ino == maybe_ancestor:
                return True
            ino = self._parent_of(ino)
            seen += 1
        return maybe_ancestor == ROOT_INO

    def rename(self, old_parent: int, old_name: bytes, new_parent: int, new_name: bytes,
               flags: int = 0, ctx: Ctx = ROOT_CTX) -> None:
        for name in (old_name, new_name):
            if name in (b".", b".."):
                raise InvalidArgument("cannot rename '.' or '..'")
            _check_name(name)
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == (RENAME_NOREPLACE
                                                                      | RENAME_EXCHANGE):
            raise InvalidArgument("unsupported rename flags")
        with self._lock:
            op = self._dir(old_parent)
            np = self._dir(new_parent)
            src = self._child(old_parent, old_name)
            if src is None:
                raise NoSuchEntry(old_name.decode(errors="replace"))
            dst = self._child(new_parent, new_name)
            snode = self._inode(src[0])
            if dst is not None and dst[0] == src[0]:
                return  # same inode under both names: POSIX says do nothing
            if flags & RENAME_NOREPLACE and dst is not None:
                raise EntryExists(new_name.decode(errors="replace"))
            if flags & RENAME_EXCHANGE and dst is None:
                raise NoSuchEntry(new_name.decode(errors="replace"))
            if snode.is_dir and self._is_ancestor(snode.ino, new_parent):
                raise InvalidArgument("cannot move a directory into its own subtree")
            self._check_sticky(op, snode, ctx)
            now = _now()
            b = self.meta.batch()
            if flags & RENAME_EXCHANGE:
                dnode = self._inode(dst[0])
                if dnode.is_dir and self._is_ancestor(dnode.ino, old_parent):
                    raise InvalidArgument("cannot move a directory into its own subtree")
                self._remove_entry(b, old_parent, old_name, src[1])
                self._remove_entry(b, new_parent, new_name, dst[1])
                self._add_entry(b, new_parent, new_name, snode.ino)
                self._add_entry(b, old_parent, old_name, dnode.ino)
                self._reparent(b, snode, op, np)
                self._reparent(b, dnode, np, op)
                dnode.ctime_ns = now
                self._save(b, dnode)
            else:
                if dst is not None:
                    dnode = self._inode(dst[0])
                    if dnode.is_dir and not snode.is_dir:
                        raise IsADirectory(new_name.decode(errors="replace"))
                    if snode.is_dir and not dnode.is_dir:
                        raise NotADirectory(new_name.decode(errors="replace"))
                    if dnode.is_dir and not self._is_empty_dir(dnode.ino):
                        raise DirectoryNotEmpty(new_name.decode(errors="replace"))
                    self._check_sticky(np, dnode, ctx)
                    self._drop_link(b, np, new_name, dnode.ino, dst[1], now)
                self._remove_entry(b, old_parent, old_name, src[1])
                self._add_entry(b, new_parent, new_name, snode.ino)
                self._reparent(b, snode, op, np)
            snode.ctime_ns = now
            self._touch(op, now)
            self._touch(np, now)
            self._save(b, snode)
            self._save(b, op)
            self._save(b, np)
            self.meta.commit(b)

    def _reparent(self, b: Batch, node: Inode, old: Inode, new: Inode) -> None:
        if node.is_dir and old.ino != new.ino:
            old.nlink -= 1
            new.nlink += 1
            b.put(schema.parent_key(node.ino), schema.le_u64(new.ino))

    def setattr(self, ino: int, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, ctx: Ctx = ROOT_CTX) -> Inode:
        """Change attributes; ``size`` truncates or extends (data work: call from a thread)."""
        if size is not None:
            self.truncate(ino, size)
        with self._lock:
            node = self._inode(ino)
            now = _now()
            if self.check_permissions:
                if uid is not None and uid != node.uid and ctx.uid != 0:
                    raise NotPermitted("only root changes the owner")
                if gid is not None and gid != node.gid and ctx.uid not in (0, node.uid):
                    raise NotPermitted("only the owner or root changes the group")
                if mode is not None and ctx.uid not in (0, node.uid):
                    raise NotPermitted("only the owner or root changes the mode")
            b = self.meta.batch()
            if mode is not None:
                node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
                self._chmod_acl(b, node)
            if uid is not None:
                node.uid = uid
            if gid is not None:
                node.gid = gid
            if (uid is not None or gid is not None) and not node.is_dir:
                # Linux drops set-user-ID on chown, root included, and set-group-ID when the
                # group may execute (without group-execute it marks mandatory locking)
                node.mode &= ~stat.S_ISUID
                if node.mode & stat.S_IXGRP:
                    node.mode &= ~stat.S_ISGID
            if atime_ns is not None:
                node.atime_ns = atime_ns
            if mtime_ns is not None:
                node.mtime_ns = mtime_ns
            node.ctime_ns = now
            self._save(b, node)
            self.meta.commit(b)
            return node.copy()

    def _chmod_acl(self, b: Batch, node: Inode) -> None:
        """A mode change rewrites the owner, mask and other entries of an access ACL."""
        key = schema.xattr_key(node.ino, acl.ACCESS)
        value = self.meta.get(key)
        if value is not None:
            b.put(key, acl.encode(acl.apply_mode(acl.decode(value), node.mode)))

    # ------------------------------------------------------------------ xattrs

    def getxattr(self, ino: int, name: bytes) -> bytes:
        with self._lock:
            self._inode(ino)
            value = self.meta.get(schema.xattr_key(ino, name))
        if value is None:
            raise NoSuchAttribute(name.decode(errors="replace"))
        return value

    def listxattr(self, ino: int) -> list[bytes]:
        with self._lock:
            self._inode(ino)
            prefix = schema.xattr_prefix(ino)
            return [k[len(prefix):] for k, _ in self.meta.scan(prefix)]

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        if not name or len(name) > XATTR_NAME_MAX:
            raise AttributeNameInvalid("xattr name empty or over 255 bytes")
        if len(value) > XATTR_SIZE_MAX:
            raise AttributeTooLarge("xattr value over 64 KiB")
        with self._lock:
            node = self._inode(ino)
            key = schema.xattr_key(ino, name)
            exists = self.meta.get(key) is not None
            if flags & XATTR_CREATE and exists:
                raise EntryExists(name.decode(errors="replace"))
            if flags & XATTR_REPLACE and not exists:
                raise NoSuchAttribute(name.decode(errors="replace"))
            b = self.meta.batch()
            if name in (acl.ACCESS, acl.DEFAULT):
                self._set_acl(b, node, name, key, bytes(value))
            else:
                b.put(key, bytes(value))
            node.ctime_ns = _now()
            self._save(b, node)
            self.meta.commit(b)

    def _set_acl(self, b: Batch, node: Inode, name: bytes, key: bytes, value: bytes) -> None:
        acl.check_target(name, node.mode)
        entries = acl.decode(value)
        if name == acl.DEFAULT:
            if entries:
                b.put(key, acl.encode(entries))
            else:
                b.delete(key)
            return
        if not entries:
            raise InvalidArgument("an access ACL cannot be empty")
        node.mode = (node.mode & ~0o777) | acl.mode_bits(entries)
        if acl.is_minimal(entries):
            b.delete(key)  # the mode bits say it all, as ext4 stores it
        else:
            b.put(key, acl.encode(entries))

    def removexattr(self, ino: int, name: bytes) -> None:
        with self._lock:
            node = self._inode(ino)
            key = schema.xattr_key(ino, name)
            if self.meta.get(key) is None:
                raise NoSuchAttribute(name.decode(errors="replace"))
            b = self.meta.batch()
            b.delete(key)
            node.ctime_ns = _now()
            self._save(b, node)
            self.meta.commit(b)

    # ------------------------------------------------------------------ open files

    def _new_handle(self, ino: int, flags: int) -> int:
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = _Handle(ino, flags)
            self._open_count[ino] = self._open_count.get(ino, 0) + 1
            return fh

    def _handle(self, fh: int) -> _Handle:
        h = self._handles.get(fh)
        if h is None:
            raise BadFileHandle(f"file handle {fh} is not open")
        return h

    def handle_ino(self, fh: int) -> int:
        with self._lock:
            return self._handle(fh).ino

    def open(self, ino: int, flags: int, ctx: Ctx = ROOT_CTX) -> int:
        """Open a file; ``O_TRUNC`` truncates (data work: call from a thread)."""
        with self._lock:
            node = self._inode(ino)
            if node.is_dir and flags & os.O_ACCMODE != os.O_RDONLY:
                raise IsADirectory("cannot open a directory for writing")
            if node.nlink == 0 and not self._open_count.get(ino):
                raise NoSuchEntry(f"inode {ino} was deleted")
            fh = self._new_handle(ino, flags)
        if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY and node.is_reg:
            self.truncate(ino, 0)
        return fh

    def release(self, fh: int) -> None:
        """Last close of an open: store what is buffered, free an unlinked inode."""
        with self._lock:
            h = self._handle(fh)
        try:
            self._flush_inode(h.ino)
        finally:
            with self._lock:
                del self._handles[fh]
                left = self._open_count[h.ino] - 1
                if left:
                    self._open_count[h.ino] = left
                    return
                del self._open_count[h.ino]
                node = self._inodes.get(h.ino)
                if node is not None and node.nlink == 0:
                    b = self.meta.batch()
                    self._free_inode(b, h.ino)
                    self.meta.commit(b)
                buf = self._buffers.get(h.ino)
                if buf is not None and buf.is_idle():
                    del self._buffers[h.ino]

    def flush(self, fh: int) -> None:
        """close(2) of one descriptor: everything written so far is stored and committed."""
        with self._lock:
            h = self._handle(fh)
        self._flush_inode(h.ino)

    def fsync(self, fh: int, datasync: bool = False) -> None:
        with self._lock:
            h = self._handle(fh)
        self._flush_inode(h.ino, sync=True)

    def statistics(self) -> dict[str, int]:
        with self._lock:
            return {"open_files": len(self._handles), "dirty_bytes": self._dirty_total,
                    "cached_inodes": len(self._inodes), "cache_hits": self.cache.hits,
                    "cache_misses": self.cache.misses}
