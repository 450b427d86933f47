"""The filesystem API of the SOFS layer: POSIX files and directories over metadata and chunks.

:class:`Filesystem` is plain Python (no FUSE import); ``fuse_mount`` serves it and tests call it
directly. It is thread-safe: one lock guards the in-memory state and metadata commits and is never
held during chunk I/O, compression or erasure coding, so the FUSE event loop may call the cheap
namespace operations directly while data operations (``read``, ``write``, ``flush``, ``fsync``,
``release``, ``setattr`` with a size, ``fallocate``) run in worker threads.

This module holds the namespace (lookups, directories, links, renames, attributes, xattrs) and
the open-file handles. The parts it owns: the in-memory inodes (:mod:`sofs.inodes`), the data
path (:class:`sofs.fileio.DataPath`, to which the data operations delegate), the blocks in the
RING (:mod:`sofs.chunkio`), the garbage collector (:mod:`sofs.collector`), the superblock
(:mod:`sofs.superblock`); permission rules are in :mod:`sofs.permissions`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from chunkstore.api import ChunkStore
from chunkstore.clock import SYSTEM_CLOCK, Clock

from . import acl, schema
from .blocks import BlockCodec
from .chunkio import ChunkIO
from .collector import Collector
from .dirents import NAME_MAX, Directories, check_name
from .errors import (
    AccessDenied,
    EntryExists,
    FsError,
    InvalidArgument,
    IsADirectory,
    NameTooLong,
    NoSuchEntry,
    NotADirectory,
    NotPermitted,
    TooManyLinks,
)
from .fallocate import check_space, parse_request
from .filedata import BlockCache
from .fileio import DataPath
from .fsstats import StatFs, Statistics
from .handles import HandleTable, OpenFile
from .inode import TRASHED, Inode
from .inodes import InodeTable
from .lostwrites import LostWrites
from .metadata import Batch, MetaStore
from .namespace import LINK_MAX, RENAME_EXCHANGE, RENAME_NOREPLACE, NamespaceChanges
from .permissions import ROOT_CTX, Ctx, check_access, check_setattr, drops_setgid
from .superblock import mount_superblock
from .timestamps import wall_ns
from .trash import Trash, TrashOps
from .volume import VolumeConfig, load_volume, volume_dir
from .worm.admin import WormAdmin
from .worm.dosattrib import readonly_flag
from .worm.records import COMMITTED, HELD
from .worm.rules import WormRules
from .xattrs import XATTR_CREATE, XATTR_NAME_MAX, XATTR_REPLACE, XATTR_SIZE_MAX, Xattrs

__all__ = ["Filesystem", "Ctx", "ROOT_CTX", "StatFs", "Statistics", "RENAME_NOREPLACE",
           "RENAME_EXCHANGE", "XATTR_CREATE", "XATTR_REPLACE", "XATTR_NAME_MAX", "XATTR_SIZE_MAX",
           "NAME_MAX", "LINK_MAX"]

DOT_COOKIE = 1
DOTDOT_COOKIE = 2


class Filesystem(NamespaceChanges, WormAdmin, TrashOps):
    """One mounted volume. Open with :meth:`open_volume`; :meth:`close` flushes everything.

    ``check_permissions``: enforce the owner rules of chmod/chown and sticky directories here.
    A FUSE mount with ``default_permissions`` turns it off: the kernel checks every request
    first (with the caller's groups, which this layer does not know) and then sends some
    requests of its own in the caller's name, such as dropping set-user-ID after a write.

    ``clock`` dates the collector's grace periods and, when it is not the system clock, the
    inode timestamps too (a test passes a ``FakeClock`` and advances it instead of waiting).

    ``read_only``: a view of metadata that must not change (a snapshot): nothing is written
    when it opens, and every change fails (VolumeFenced).

    ``untrashed``: names of directories at the root whose files skip the trash when deleted
    (the exports' health probes write and delete a file there every few seconds).

    ``synced_acks``: a close of a written file returns once its commit is on stable storage
    (:mod:`sofs.fileio`); False, for benchmarks only, leaves it in the page cache.
    """

    def __init__(self, meta: MetaStore, store: ChunkStore, config: VolumeConfig, *,
                 cache_bytes: int = 64 << 20, dirty_limit: int = 48 << 20,
                 gc_grace_s: float = 3600.0, workers: int = 6,
                 check_permissions: bool = True, clock: Clock = SYSTEM_CLOCK,
                 read_only: bool = False, untrashed: frozenset[bytes] = frozenset(),
                 synced_acks: bool = True) -> None:
        self.check_permissions = check_permissions
        self.read_only = read_only
        self.meta = meta
        self.store = store
        self.config = config
        self.block_size = config.block_size
        self.protection = config.protection()
        self.cache = BlockCache(cache_bytes)
        self._clock = clock
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sofs-data")
        self._inodes = InodeTable(meta)
        self._handles = HandleTable(self._inodes)
        self.lost_writes = LostWrites(self._handles, self._lock, clock)
        self._collector = Collector(meta, store, self._lock, int(gc_grace_s * 1e9), clock)
        chunks = ChunkIO(store, BlockCodec(config.zstd_level, uuid.UUID(config.uuid).bytes),
                         self.protection, self.cache, self._pool)
        self._data = DataPath(meta, self._lock, self._inodes, chunks, self._collector,
                              self._pool, block_size=config.block_size,
                              dirty_limit=dirty_limit, clock=clock,
                              on_lost=self.lost_writes.record)
        self._data.synced_close = self.synced_acks = synced_acks
        self._worm = WormRules(meta, store, config.uuid, clock, self._data.stage_inode,
                               lambda b, node: self._xattrs.chmod_acl(b, node))
        self._trash = Trash(meta, lambda: self._dirs, config.trash_s * 10**9,
                            self._data.stage_inode, untrashed)
        self._sb = mount_superblock(meta, self._now(), read_only=read_only)
        self.generation = self._sb.generation
        self._dirs = Directories(meta, self._sb.cookies)
        self._xattrs = Xattrs(meta, self._lock, self._inodes, self._data.stage_inode, clock)
        if read_only:  # a snapshot: as it was, and every change refused (VolumeFenced)
            meta.fence("a read-only snapshot")
        else:
            self._data.free_orphans()
            self._data.recover_unflushed()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open_volume(cls, data_dir: Path, name: str, store: ChunkStore,
                    **kw: Any) -> "Filesystem":
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
        self._data.flush_all()

    def close(self) -> None:
        """Flush every file, sync metadata (:meth:`flush_all`), stop the workers; the store
        stays open."""
        try:
            self.flush_all()
        finally:
            self._pool.shutdown(wait=True)
            self._worm.close()
            self._collector.close()  # the snapshots its pins hold open
            self.meta.close()

    def _now(self) -> int:
        return wall_ns(self._clock)

    # ------------------------------------------------------------------ inode helpers

    def _save(self, b: Batch, node: Inode) -> None:
        """Stage the inode (with the size of its last complete flush, see
        :meth:`DataPath.stage_inode`)."""
        self._data.stage_inode(b, node)

    def _dir(self, ino: int) -> Inode:
        node = self._inodes.get(ino)
        if not node.is_dir:
            raise NotADirectory(f"inode {ino} is not a directory")
        return node

    def _touch(self, node: Inode, now: int) -> None:
        node.ctime_ns = node.mtime_ns = now

    # ------------------------------------------------------------------ namespace reads

    def getattr(self, ino: int) -> Inode:
        with self._lock:
            node = self._live(ino)
            if node.flags:  # in a WORM domain: stat tells the truth about autocommit
                self._worm.catch_up(node, reading=True)
            return node.copy()

    def _live(self, ino: int) -> Inode:
        """The inode ``ino``; NoSuchEntry for one in the trash that nobody has open (an NFS
        handle of a deleted file finds nothing, as without a trash)."""
        node = self._inodes.get(ino)
        if node.flags & TRASHED and not self._inodes.is_open(ino):
            raise NoSuchEntry(f"inode {ino} was deleted")
        return node

    def _free_inode(self, b: Batch, ino: int) -> None:
        self._data.free_inode(b, ino)

    def lookup(self, parent: int, name: bytes) -> Inode:
        with self._lock:
            if name == b".":  # any inode: the kernel's export path looks files up by number
                return self._live(parent).copy()  # a trashed one is stale, as a freed one
            self._dir(parent)
            if name == b"..":
                return self._inodes.get(self._dirs.parent_of(parent)).copy()
            check_name(name)
            child = self._dirs.child(parent, name)
            if child is None:
                raise NoSuchEntry(name.decode(errors="replace"))
            node = self._inodes.get(child[0])
            if node.flags:
                self._worm.catch_up(node, reading=True)
            return node.copy()

    def readdir(self, ino: int, start: int = 0, limit: int = 1024) -> list[tuple[bytes, Inode, int]]:
        """Up to ``limit`` entries after readdir offset ``start``: (name, inode, its offset).

        Offsets are per-entry cookies that never change while the entry exists, so a listing
        resumed after entries were added or removed neither repeats nor skips survivors.
        """
        out: list[tuple[bytes, Inode, int]] = []
        with self._lock:
            self._dir(ino)
            if start < DOT_COOKIE:
                out.append((b".", self._inodes.get(ino).copy(), DOT_COOKIE))
            if start < DOTDOT_COOKIE:
                out.append((b"..", self._inodes.get(self._dirs.parent_of(ino)).copy(), DOTDOT_COOKIE))
            for name, child, cookie in self._dirs.entries(ino, start):
                if len(out) >= limit:
                    break
                try:
                    node = self._inodes.get(child).copy()
                except NoSuchEntry:
                    continue
                out.append((name, node, cookie))
        return out

    def readlink(self, ino: int) -> bytes:
        with self._lock:
            node = self._inodes.get(ino)
            if not node.is_symlink:
                raise InvalidArgument("not a symbolic link")
            target = self.meta.get(schema.symlink_key(ino))
            return target or b""

    def access(self, ino: int, mode: int, ctx: Ctx) -> None:
        """Raise AccessDenied unless ``ctx`` may access ``ino`` with ``mode`` (R_OK|W_OK|X_OK)."""
        with self._lock:
            check_access(self._inodes.get(ino), mode, ctx)

    def statfs(self) -> StatFs:
        """The volume's own figures, not the host's: used is what its files hold in stored
        blocks (before compression, as ``du`` counts), free is what the RING can still take
        at this volume's protection; the size is the two added up."""
        cap = self.store.capacity()
        overhead = self.protection.large.overhead
        bsize = 4096
        used = -(-self._data.block_bytes() // bsize)
        free = int(cap.free_bytes / overhead) // bsize
        return StatFs(block_size=bsize, blocks=used + free, blocks_free=free,
                      files=2**40, files_free=2**40 - self._sb.inos.next)

    # ------------------------------------------------------------------ namespace changes

    def _new_inode(self, b: Batch, parent: Inode, mode: int, ctx: Ctx, rdev: int = 0) -> Inode:
        now = self._now()
        gid = ctx.gid
        if parent.mode & stat.S_ISGID:
            gid = parent.gid
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
        node = Inode(self._sb.inos.take(b), mode, ctx.uid, gid, 1, 0, now, now, now, rdev,
                     self._sb.generation)
        if parent.flags:
            self._worm.stamp_child(b, parent, node)
        self._inodes.add(node)
        return node

    def _create_node(self, parent: int, name: bytes, mode: int, ctx: Ctx, *,
                     rdev: int = 0, target: bytes | None = None) -> Inode:
        """Create an inode under ``parent``; ``mode`` is the caller's, before the umask (or
        the default ACL the parent passes on: :meth:`Xattrs.inherit`)."""
        check_name(name)
        with self._lock:
            pnode = self._dir(parent)
            if self._dirs.child(parent, name) is not None:
                raise EntryExists(name.decode(errors="replace"))
            if stat.S_ISDIR(mode) and pnode.nlink >= LINK_MAX:
                raise TooManyLinks("too many subdirectories")
            b = self.meta.batch()
            inherited = None
            if target is None:  # a symlink's mode is always 0777
                mode, inherited = self._xattrs.inherit(parent, mode, ctx.umask)
            node = self._new_inode(b, pnode, mode, ctx, rdev)
            if inherited is not None:
                self._xattrs.stage_inherited(b, node, inherited)
            if node.is_dir:
                node.nlink = 2
                pnode.nlink += 1
                self._dirs.set_parent(b, node.ino, parent)
            if target is not None:
                node.size = len(target)
                b.put(schema.symlink_key(node.ino), target)
            self._dirs.add(b, parent, name, node.ino)
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

    def setattr(self, ino: int, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, ctx: Ctx = ROOT_CTX,
                kill_setid: Literal["chown", "write"] | None = None) -> Inode:
        """Change attributes; ``size`` truncates or extends (data work: call from a thread).

        ``kill_setid`` is a request that changes nothing else but the set-ID bits the kernel
        left to the file layer (:func:`drops_setgid`): ``"write"`` before a write (no
        permission check, as the kernel forces it), ``"chown"`` for ``chown(f, -1, -1)``
        (only the owner or root may then change the mode)."""
        if size is not None:
            self.truncate(ino, size)
        with self._lock:
            node = self._live(ino)
            old = node.copy()
            now = self._now()
            if self.check_permissions:
                check_setattr(node, ctx, mode=mode, uid=uid, gid=gid)
            b = self.meta.batch()
            commit_at = None
            if node.flags:
                atime_ns, commit_at = self._worm.setattr(b, node, mode=mode, uid=uid, gid=gid,
                                                       atime_ns=atime_ns, mtime_ns=mtime_ns)
            if mode is not None:
                node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
                self._xattrs.chmod_acl(b, node)
            if uid is not None:
                node.uid = uid
            if gid is not None:
                node.gid = gid
            if (uid is not None or gid is not None) and not node.is_dir:
                # Linux drops set-user-ID on chown, root included, and set-group-ID as
                # drops_setgid decides (judged against the group before the change)
                node.mode &= ~stat.S_ISUID
                if drops_setgid(old, ctx, chown=True):
                    node.mode &= ~stat.S_ISGID
            if (size is not None or kill_setid) and drops_setgid(
                    node, ctx, chown=kill_setid == "chown"):
                if kill_setid == "chown" and ctx.uid not in (0, node.uid):
                    raise NotPermitted("only the owner or root changes the mode")
                node.mode &= ~stat.S_ISGID
            if atime_ns is not None:
                node.atime_ns = atime_ns
            if mtime_ns is not None:
                node.mtime_ns = mtime_ns
            node.ctime_ns = now
            self._save(b, node)
            if commit_at is not None:
                self._worm.commit(b, node, "chmod", commit_at)
            self.meta.commit(b)
            return node.copy()

    def bare_setattr_kind(self, ino: int, ctx: Ctx) -> Literal["chown", "write"]:
        """What a SETATTR that changes nothing is, without writeback caching (the kernel then
        sends the same request for both): the set-ID kill before a write, or chown(f, -1, -1).
        The kernel kills set-ID bits only for a write it allowed, so a caller who may not
        write the file (by its mode; a file with an ACL is given the benefit) is chowning."""
        with self._lock:
            node = self._inodes.get(ino)
            if ctx.uid in (0, node.uid) or self._xattrs.has(ino, acl.ACCESS):
                return "write"
            try:
                check_access(node, os.W_OK, ctx)
            except AccessDenied:
                return "chown"
            return "write"

    # ------------------------------------------------------------------ xattrs

    def getxattr(self, ino: int, name: bytes) -> bytes:
        with self._lock:
            self._live(ino)
        return self._xattrs.get(ino, name)

    def listxattr(self, ino: int) -> list[bytes]:
        with self._lock:
            self._live(ino)
        return self._xattrs.names(ino)

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        """``flags``: XATTR_CREATE (fail if it exists) or XATTR_REPLACE (if it does not).

        Samba's DOS attributes (:mod:`sofs.worm.dosattrib`) in a WORM domain: setting the
        read-only attribute commits the file (``attrib +r``, as ``chmod a-w``); rewriting them
        with read-only still set is allowed on a committed file, clearing it is not."""
        readonly = readonly_flag(name.decode(errors="replace"), value)
        if readonly:
            with self._lock:
                node = self._live(ino)
                if node.flags:
                    self._worm.catch_up(node)
                if node.flags & COMMITTED and not node.flags & HELD:
                    self._xattrs.set(ino, name, value, flags)
                    return
        self._check_worm(ino, "setting an xattr")
        self._xattrs.set(ino, name, value, flags)
        if readonly:
            with self._lock:
                node = self._live(ino)
                if self._worm.commits_on_readonly(node):
                    b = self.meta.batch()
                    self._worm.commit(b, node, "smb-readonly")
                    self.meta.commit(b)

    def removexattr(self, ino: int, name: bytes) -> None:
        self._check_worm(ino, "removing an xattr")
        self._xattrs.remove(ino, name)

    def _check_worm(self, ino: int, what: str) -> None:
        """Refuse a change of ``ino``'s data or xattrs when it is a committed WORM file."""
        with self._lock:
            node = self._live(ino)
            if node.flags:
                self._worm.check_data(node, what)

    # ------------------------------------------------------------------ open files

    def _new_handle(self, ino: int, flags: int) -> int:
        with self._lock:
            return self._handles.open(ino, flags)

    def _handle(self, fh: int) -> OpenFile:
        with self._lock:
            return self._handles.get(fh)

    def handle_ino(self, fh: int) -> int:
        return self._handle(fh).ino

    def open(self, ino: int, flags: int, ctx: Ctx = ROOT_CTX) -> int:
        """Open a file; ``O_TRUNC`` truncates (data work: call from a thread)."""
        with self._lock:
            node = self._inodes.get(ino)
            if node.is_dir and flags & os.O_ACCMODE != os.O_RDONLY:
                raise IsADirectory("cannot open a directory for writing")
            if node.nlink == 0 and not self._inodes.is_open(ino):
                raise NoSuchEntry(f"inode {ino} was deleted")
            if node.flags:
                self._worm.check_open(node, flags)
            fh = self._new_handle(ino, flags)
        if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY and node.is_reg:
            self.truncate(ino, 0)
        return fh

    def _flush_open(self, h: OpenFile, sync: bool = False) -> None:
        """Store what was written to the file of ``h``; raise its own failure or, once, that
        of writes to the file lost since ``h`` last heard of one (:mod:`sofs.lostwrites`)."""
        try:
            self._data.flush(h.ino, sync=sync)
        except FsError:
            self.lost_writes.reported(h)
            raise
        self.lost_writes.raise_unreported(h)

    def raise_lost_writes(self, fh: int) -> None:
        """A close that needs no flush still reports writes lost since the open last did."""
        self.lost_writes.raise_unreported(self._handle(fh))

    def release(self, fh: int) -> None:
        """Last close of an open: store what is buffered, free an unlinked inode."""
        h = self._handle(fh)
        try:
            self._flush_open(h)
        finally:
            with self._lock:
                if not self._handles.close(fh):
                    self._last_close(h.ino)

    def _last_close(self, ino: int) -> None:
        node = self._inodes.cached(ino)
        if node is not None and node.nlink == 0 and not node.flags & TRASHED:
            b = self.meta.batch()
            self._data.free_inode(b, ino)
            self.meta.commit(b)
        self._data.drop_idle_buffers(ino)

    def flush(self, fh: int) -> None:
        """close(2) of one descriptor: everything written so far is stored and committed."""
        self._flush_open(self._handle(fh))

    def fsync(self, fh: int, datasync: bool = False) -> None:
        self._flush_open(self._handle(fh), sync=True)

    # ------------------------------------------------------------------ file data

    def write(self, fh: int, offset: int, data: bytes) -> int:
        h = self._handle(fh)
        self._check_worm(h.ino, "write")
        return self._data.write(h, offset, data)

    def write_nowait(self, fh: int, offset: int, data: bytes) -> int | None:
        """:meth:`write` when it needs no I/O: only dirty or brand-new blocks are touched, none
        fills up and the dirty limit holds. Returns None (nothing written) otherwise, and the
        caller uses :meth:`write` from a worker thread."""
        with self._lock:
            h = self._handles.get(fh)
            self._check_worm(h.ino, "write")
            return self._data.write_nowait(h, offset, data)

    def read(self, fh: int, offset: int, size: int) -> bytes:
        result = self._data.read(self._handle(fh), offset, size)
        assert result is not None
        return result

    def read_nowait(self, fh: int, offset: int, size: int) -> bytes | None:
        """:meth:`read` when every block it needs is in memory (dirty, in flight, cached or a
        hole); None otherwise, and the caller uses :meth:`read` from a worker thread."""
        return self._data.read(self._handle(fh), offset, size, may_block=False)

    def truncate(self, ino: int, size: int) -> None:
        self._check_worm(ino, "truncate")
        self._data.truncate(ino, size)

    def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        """fallocate(2) of an open file, as :mod:`sofs.fallocate` says (data work: call from a
        thread)."""
        h = self._handle(fh)
        self._check_worm(h.ino, "fallocate")
        punch, grow = parse_request(mode, offset, length, self.getattr(h.ino), h.flags)
        if not punch:
            check_space(self.store.capacity(), self.protection, self.block_size, offset, length)
        self._data.fallocate(h.ino, offset, offset + length, punch=punch, grow=grow)

    def needs_flush(self, ino: int) -> bool:
        """Whether a (non-sync) flush of ``ino`` would have anything to store, commit or wait
        for (see :meth:`DataPath.needs_flush`)."""
        return self._data.needs_flush(ino)

    # ------------------------------------------------------------------ garbage collection

    def collect_garbage(self, now_ns: int | None = None, batch: int = 8) -> int:
        """Delete chunks whose refcount has been 0 for the grace period; returns how many
        (``now_ns``: the wall time to judge by, default the clock's)."""
        self.trash_expire(now_ns if now_ns is not None else wall_ns(self._clock))
        return self._collector.collect(now_ns, batch)

    def checkpoint_metadata(self, path: Path) -> None:
        """A consistent copy of the metadata at ``path`` (a snapshot, :mod:`sofs.snapshot`):
        taken between two operations of the volume."""
        with self._lock:
            self.meta.checkpoint(path)

    def requeue_snapshot_chunks(self, snapshot_meta: MetaStore) -> int:
        """A snapshot goes: the chunks it kept that the volume no longer counts go back to the
        collector's queue; how many."""
        return self._collector.requeue_released(snapshot_meta)

    def gc_paused(self) -> contextlib.AbstractContextManager[None]:
        """No chunk is collected inside this block (an online fsck probes a stable store);
        entering waits for a running pass to end."""
        return self._collector.paused()

    def statistics(self) -> Statistics:
        with self._lock:
            return Statistics(open_files=len(self._handles),
                              dirty_bytes=self._data.dirty_bytes,
                              cached_inodes=len(self._inodes), cache_hits=self.cache.hits,
                              cache_misses=self.cache.misses)
