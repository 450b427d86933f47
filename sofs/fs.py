"""The filesystem API of the SOFS layer: POSIX files and directories over metadata and chunks.

:class:`Filesystem` is plain Python (no FUSE import); ``fuse_mount`` serves it and tests call it
directly. It is thread-safe: one lock guards the in-memory state and metadata commits and is never
held during chunk I/O, compression or erasure coding, so the FUSE event loop may call the cheap
namespace operations directly while data operations (``read``, ``write``, ``flush``, ``fsync``,
``release``, ``setattr`` with a size) run in worker threads.

Data path (design note section 3): writes land in per-inode dirty block buffers
(:mod:`sofs.filedata`); a block that fills up, and every block on flush/fsync/release, is encoded
(:mod:`sofs.blocks`), stored in the RING as an immutable content-addressed chunk, and then the
block map, the chunk refcounts (:mod:`sofs.chunkrefs`) and the inode are committed in one batch.
Overwrites and truncates never modify a chunk: they map new chunks and drop references to old
ones, which the garbage collector deletes after a grace period. Blocks of zeros are not stored:
they become holes.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from chunkstore import errors as cerr
from chunkstore.keys import ChunkRef
from chunkstore.store import ChunkStore

from . import chunkrefs, schema
from .blocks import BlockCodec
from .errors import (AccessDenied, AttributeTooLarge, BadFileHandle, DataUnavailable,
                     DirectoryNotEmpty, EntryExists, FsError, InvalidArgument, IsADirectory,
                     NameTooLong, NoSpace, NoSuchAttribute, NoSuchEntry, NotADirectory,
                     NotPermitted, TooManyLinks)
from .filedata import BlockCache, FileBuffers
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
READ_AHEAD_BLOCKS = 2  # blocks fetched ahead of a sequential reader


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


@dataclasses.dataclass(frozen=True)
class _Pending:
    index: int
    data: bytes | bytearray  # frozen: never modified once detached
    seq: int


def _now() -> int:
    return time.time_ns()


def _check_name(name: bytes) -> None:
    if len(name) > NAME_MAX:
        raise NameTooLong(f"name of {len(name)} bytes (max {NAME_MAX})")
    if not name or b"/" in name or b"\0" in name:
        raise InvalidArgument(f"invalid name {name!r}")


def _is_zero(data: bytes | bytearray) -> bool:
    if not data:
        return True
    # cheap probes first: real data almost never starts, ends and peaks in the middle at 0
    if data[0] or data[-1] or data[len(data) // 2]:
        return False
    return data.count(0) == len(data)


class Filesystem:
    """One mounted volume. Open with :meth:`open_volume`; :meth:`close` flushes everything."""

    def __init__(self, meta: MetaStore, store: ChunkStore, config: VolumeConfig, *,
                 cache_bytes: int = 64 << 20, dirty_limit: int = 48 << 20,
                 gc_grace_s: float = 3600.0, workers: int = 6) -> None:
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

    def close(self) -> None:
        """Flush every file, sync metadata, stop the workers; the store stays open.

        One file that cannot be stored does not keep the others from being flushed: the first
        error is raised after everything else was done."""
        errors = []
        for ino in list(self._buffers):
            try:
                self._flush_inode(ino)
            except FsError as e:
                errors.append(e)
        try:
            self.meta.commit(self.meta.batch(), sync=True)
        finally:
            self._pool.shutdown(wait=True)
            self.meta.close()
        if errors:
            raise errors[0]

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
        # IDs are handed out from reserved ranges: the ceiling is persisted before use, so a
        # crash skips numbers but never reuses one.
        self._next_ino = schema.parse_le_u64(b.get(schema.SUPER_NEXT_INO))
        self._ino_ceiling = self._next_ino
        self._next_cookie = schema.parse_le_u64(b.get(schema.SUPER_NEXT_COOKIE))
        self._cookie_ceiling = self._next_cookie
        m.commit(b, sync=True)

    def _free_orphans(self) -> None:
        """Inodes unlinked while open when the last mount died: nobody holds them now."""
        orphans = [schema.parse_ino_key(k) for k, _ in self.meta.scan(b"O")]
        for ino in orphans:
            b = self.meta.batch()
            self._free_inode(b, ino)
            self.meta.commit(b)

    def _alloc_ino(self, b: Batch) -> int:
        if self._next_ino >= self._ino_ceiling:
            self._ino_ceiling = self._next_ino + _ID_RESERVE
            b.put(schema.SUPER_NEXT_INO, schema.le_u64(self._ino_ceiling))
        ino = self._next_ino
        self._next_ino += 1
        return ino

    def _alloc_cookie(self, b: Batch) -> int:
        if self._next_cookie >= self._cookie_ceiling:
            self._cookie_ceiling = self._next_cookie + _ID_RESERVE
            b.put(schema.SUPER_NEXT_COOKIE, schema.le_u64(self._cookie_ceiling))
        cookie = self._next_cookie
        self._next_cookie += 1
        return cookie

    # ------------------------------------------------------------------ inode helpers

    def _inode(self, ino: int) -> Inode:
        node = self._inodes.get(ino)
        if node is None:
            value = self.meta.get(schema.inode_key(ino))
            if value is None:
                raise NoSuchEntry(f"inode {ino}")
            node = Inode.unpack(ino, value)
            if len(self._inodes) > 200_000:
                self._evict_inodes()
            self._inodes[ino] = node
        return node

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
            self._dir(parent)
            if name == b".":
                return self._inode(parent).copy()
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
                      files=2**40, files_free=2**40 - self._next_ino)

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
        self._inodes[node.ino] = node
        return node

    def _create_node(self, parent: int, name: bytes, mode: int, ctx: Ctx, *,
                     rdev: int = 0, target: bytes | None = None) -> Inode:
        _check_name(name)
        with self._lock:
            pnode = self._dir(parent)
            if self._child(parent, name) is not None:
                raise EntryExists(name.decode(errors="replace"))
            if stat.S_ISDIR(mode) and pnode.nlink >= LINK_MAX:
                raise TooManyLinks("too many subdirectories")
            b = self.meta.batch()
            node = self._new_inode(b, pnode, mode, ctx, rdev)
            if node.is_dir:
                node.nlink = 2
                pnode.nlink += 1
                b.put(schema.parent_key(node.ino), schema.le_u64(parent))
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
        return self._create_node(parent, name, stat.S_IFDIR | (mode & 0o7777 & ~ctx.umask), ctx)

    def mknod(self, parent: int, name: bytes, mode: int, rdev: int = 0,
              ctx: Ctx = ROOT_CTX) -> Inode:
        fmt = stat.S_IFMT(mode) or stat.S_IFREG
        if fmt not in (stat.S_IFREG, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK):
            raise InvalidArgument("unsupported file type")
        return self._create_node(parent, name, fmt | (mode & 0o7777 & ~ctx.umask), ctx, rdev=rdev)

    def symlink(self, parent: int, name: bytes, target: bytes, ctx: Ctx = ROOT_CTX) -> Inode:
        if len(target) > 4095:
            raise NameTooLong("symlink target over 4095 bytes")
        return self._create_node(parent, name, stat.S_IFLNK | 0o777, ctx, target=target)

    def create(self, parent: int, name: bytes, mode: int, flags: int,
               ctx: Ctx = ROOT_CTX) -> tuple[int, Inode]:
        node = self._create_node(parent, name, stat.S_IFREG | (mode & 0o7777 & ~ctx.umask), ctx)
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
        with self._lock:
            pnode = self._dir(parent)
            child = self._child(parent, name)
            if child is None:
                raise NoSuchEntry(name.decode(errors="replace"))
            node = self._inode(child[0])
            if node.is_dir:
                raise IsADirectory(name.decode(errors="replace"))
            self._check_sticky(pnode, node, ctx)
            b = self.meta.batch()
            now = _now()
            self._drop_link(b, pnode, name, child[0], child[1], now)
            self._touch(pnode, now)
            self._save(b, pnode)
            self.meta.commit(b)

    def rmdir(self, parent: int, name: bytes, ctx: Ctx = ROOT_CTX) -> None:
        if name == b".":
            raise InvalidArgument("cannot remove '.'")
        if name == b"..":
            raise DirectoryNotEmpty("cannot remove '..'")
        _check_name(name)
        with self._lock:
            pnode = self._dir(parent)
            child = self._child(parent, name)
            if child is None:
                raise NoSuchEntry(name.decode(errors="replace"))
            node = self._inode(child[0])
            if not node.is_dir:
                raise NotADirectory(name.decode(errors="replace"))
            if not self._is_empty_dir(node.ino):
                raise DirectoryNotEmpty(name.decode(errors="replace"))
            self._check_sticky(pnode, node, ctx)
            b = self.meta.batch()
            now = _now()
            self._drop_link(b, pnode, name, child[0], child[1], now)
            self._touch(pnode, now)
            self._save(b, pnode)
            self.meta.commit(b)

    def _check_sticky(self, parent: Inode, node: Inode, ctx: Ctx) -> None:
        if (parent.mode & stat.S_ISVTX and ctx.uid not in (0, parent.uid, node.uid)):
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
            if uid is not None and uid != node.uid and ctx.uid != 0:
                raise NotPermitted("only root changes the owner")
            if gid is not None and gid != node.gid and ctx.uid not in (0, node.uid):
                raise NotPermitted("only the owner or root changes the group")
            if mode is not None and ctx.uid not in (0, node.uid):
                raise NotPermitted("only the owner or root changes the mode")
            if mode is not None:
                node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
            if uid is not None:
                node.uid = uid
            if gid is not None:
                node.gid = gid
            if (uid is not None or gid is not None) and ctx.uid != 0 and not node.is_dir:
                node.mode &= ~(stat.S_ISUID | stat.S_ISGID)
            if atime_ns is not None:
                node.atime_ns = atime_ns
            if mtime_ns is not None:
                node.mtime_ns = mtime_ns
            node.ctime_ns = now
            b = self.meta.batch()
            self._save(b, node)
            self.meta.commit(b)
            return node.copy()

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
            raise AttributeTooLarge("xattr name empty or over 255 bytes")
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
            b.put(key, bytes(value))
            node.ctime_ns = _now()
            self._save(b, node)
            self.meta.commit(b)

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
        if node.mode & (stat.S_ISUID | stat.S_ISGID):
            node.mode &= ~(stat.S_ISUID | stat.S_ISGID)

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
        """Whether a flush of ``ino`` would have anything to store or wait for."""
        with self._lock:
            fb = self._buffers.get(ino)
            return fb is not None and not fb.is_idle()

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

    def statistics(self) -> dict[str, int]:
        with self._lock:
            return {"open_files": len(self._handles), "dirty_bytes": self._dirty_total,
                    "cached_inodes": len(self._inodes), "cache_hits": self.cache.hits,
                    "cache_misses": self.cache.misses}
