"""pyfuse3 request handlers over :class:`sofs.fs.Filesystem`.

Cheap namespace requests (lookup, getattr, readdir, mkdir, xattrs...) touch only the
in-memory inode cache and unsynced rocksdict batches, which cost microseconds: they run on the
trio event loop. Everything that compresses, erasure-codes, touches chunk disks or fsyncs (read,
write, flush, fsync, release, truncate, O_TRUNC opens, and unlink/rename, which may free a
whole file) runs in worker threads through
``trio.to_thread.run_sync`` behind a capacity limiter, so one slow disk never stalls the loop;
so does fallocate, which pyfuse3 cannot route here by itself (:mod:`fuse_mount.fallocate_hook`).

Durability (issue 13): a request that changes the namespace or attributes (mkdir, mknod,
symlink, link, rmdir, unlink, rename, setattr) is answered only once its metadata commit is on
stable storage: the commit runs as above, then :meth:`sofs.metadata.MetaStore.make_durable`
waits in a worker thread for the volume's group-committed log sync (concurrent requests share
one). A file's create is made durable by the first close (or fsync) of the handle it returned,
with its data; xattr changes ride along with the next durable answer of the volume (every log
sync covers all commits before it). Data: :mod:`sofs.fileio`.

Snapshots: requests for the hidden ``/.snapshots`` tree (inode and handle numbers at and above
``1 << 40``) go to :class:`fuse_mount.snapshotview.SnapshotView`, in worker threads (the first
request in a snapshot opens its metadata), and every change there fails with EROFS.

Caching: this connector is the only writer of its volume, so the kernel gets long entry/attribute
timeouts and keeps page-cache contents across opens. Writeback caching is off: with it the kernel
keeps regular files' mtime and ctime itself, stamped by its coarse clock (4 ms here), so two
writes or chmods in a row could leave the NFSv4 change attribute that Ganesha derives from them
unchanged and NFS clients would keep stale caches; it also owned the file size, so data that could
not be stored stayed visible. Writes still arrive up to 1 MiB per request (max_write); measured
(100 MiB with dd, one run each): 4 KiB writes 22.5 vs 24.7 MB/s, 64 KiB 146 vs 101 MB/s, 1 MiB
186 vs 226 MB/s with vs without. Errors leave through :func:`fuse_mount.errno_map.fuse_errors` only; with ``metrics``,
:func:`fuse_mount.opmetrics.measured` counts and times every answered request around it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import TypeVar

import pyfuse3
import trio

from sofs.fs import Ctx, Filesystem
from sofs.inode import ROOT_INO, Inode

from .errno_map import fuse_errors
from .fallocate_hook import FallocateHook
from .fallocate_hook import install as install_fallocate
from .names import HIDDEN_ROOT_NAMES
from .opmetrics import FuseMetrics, measured
from .snapshotview import SNAPSHOTS_NAME, SnapshotView

T = TypeVar("T")

ATTR_TIMEOUT = 300.0
assert pyfuse3.ROOT_INODE == ROOT_INO


def _ctx(ctx: pyfuse3.RequestContext) -> Ctx:
    return Ctx(uid=ctx.uid, gid=ctx.gid, umask=ctx.umask)


class SofsOperations(pyfuse3.Operations):
    supports_dot_lookup = True      # export support: NFS-Ganesha needs '.' and '..' on any inode
    enable_writeback_cache = False  # see the module docstring: NFS change attribute, sizes
    enable_acl = True           # the kernel enforces POSIX ACLs; sofs keeps mode and inheritance

    def __init__(self, fs: Filesystem, *, workers: int = 8,
                 metrics: FuseMetrics | None = None) -> None:
        super().__init__()
        self.fs = fs
        self.metrics = metrics  # counted by @measured (fuse_mount.opmetrics); None: off
        self._limiter = trio.CapacityLimiter(workers)
        self._fallocate_hook: FallocateHook | None = None
        self.snapshots = SnapshotView(fs)
        self._created: set[int] = set()  # handles from create() whose close has to sync

    async def _run(self, fn: Callable[..., T], *args) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def _durable(self) -> None:
        """Wait until what was committed so far is on stable storage (module docstring): a log
        sync in a worker thread, shared with concurrent requests; no hop when it already is."""
        meta = self.fs.meta
        upto = meta.written
        if self.fs.synced_acks and not meta.is_durable(upto):
            await trio.to_thread.run_sync(meta.make_durable, upto)

    def _durably(self, fn: Callable[..., T], *args) -> T:
        """``fn(*args)`` then, in the same worker thread, its commit made durable."""
        result = fn(*args)
        if self.fs.synced_acks:
            self.fs.meta.make_durable()
        return result

    def _read_only(self, *numbers: int) -> None:
        """EROFS when any of the inodes (or handles) is a snapshot's."""
        if any(self.snapshots.owns(n) for n in numbers):
            raise self.snapshots.refuse()

    def _not_snapshots(self, parent: int, name: bytes, taken: bool = True) -> None:
        """Before making or removing ``name`` in the live directory ``parent``: EEXIST
        (``taken``) or EROFS for ``/.snapshots``, and EROFS inside a snapshot."""
        self._read_only(parent)
        if self.snapshots.is_entry(parent, name):
            raise pyfuse3.FUSEError(errno.EEXIST) if taken else self.snapshots.refuse()

    def _entry(self, node: Inode) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = node.ino
        e.generation = node.generation
        e.entry_timeout = ATTR_TIMEOUT
        e.attr_timeout = ATTR_TIMEOUT
        short = self.snapshots.timeout(node.ino) if self.snapshots.owns(node.ino) else None
        if short is not None:
            e.entry_timeout = e.attr_timeout = short
        e.st_mode = node.mode
        e.st_nlink = node.nlink
        e.st_uid = node.uid
        e.st_gid = node.gid
        e.st_rdev = node.rdev
        e.st_size = node.size
        e.st_blksize = 128 * 1024
        e.st_blocks = (node.size + 511) // 512
        e.st_atime_ns = node.atime_ns
        e.st_mtime_ns = node.mtime_ns
        e.st_ctime_ns = node.ctime_ns
        return e

    # -------------------------------------------------------------- namespace

    @measured
    @fuse_errors
    async def lookup(self, parent_inode, name, ctx):
        if self.snapshots.owns(parent_inode):
            return self._entry(await self._run(self.snapshots.lookup, parent_inode, name))
        if self.snapshots.is_entry(parent_inode, name):
            return self._entry(await self._run(self.snapshots.entry))
        return self._entry(self.fs.lookup(parent_inode, name))

    @measured
    @fuse_errors
    async def getattr(self, inode, ctx):
        if self.snapshots.owns(inode):
            return self._entry(await self._run(self.snapshots.getattr, inode))
        return self._entry(self.fs.getattr(inode))

    @measured
    @fuse_errors
    async def setattr(self, inode, attr, fields, fh, ctx):
        self._read_only(inode)
        kw = {}
        if fields.update_mode:
            kw["mode"] = attr.st_mode
        if fields.update_uid:
            kw["uid"] = attr.st_uid
        if fields.update_gid:
            kw["gid"] = attr.st_gid
        if fields.update_atime:
            kw["atime_ns"] = attr.st_atime_ns
        if fields.update_mtime:
            kw["mtime_ns"] = attr.st_mtime_ns
        if not kw and not fields.update_size:
            # nothing but ctime: chown(f, -1, -1); nothing at all: the kernel asks to drop
            # set-ID bits before a write (see Filesystem.setattr)
            # (without writeback caching the kernel does not say ctime: the file layer tells)
            kw["kill_setid"] = ("chown" if fields.update_ctime
                                else self.fs.bare_setattr_kind(inode, _ctx(ctx)))
        if fields.update_size:
            kw["size"] = attr.st_size
            node = await self._run(self._durably,
                                   lambda: self.fs.setattr(inode, ctx=_ctx(ctx), **kw))
        else:
            node = self.fs.setattr(inode, ctx=_ctx(ctx), **kw)
            await self._durable()
        return self._entry(node)

    @measured
    @fuse_errors
    async def readlink(self, inode, ctx):
        if self.snapshots.owns(inode):
            return await self._run(self.snapshots.readlink, inode)
        return self.fs.readlink(inode)

    @measured
    @fuse_errors
    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        self._not_snapshots(parent_inode, name)
        node = self.fs.mknod(parent_inode, name, mode, rdev, _ctx(ctx))
        await self._durable()
        return self._entry(node)

    @measured
    @fuse_errors
    async def mkdir(self, parent_inode, name, mode, ctx):
        self._not_snapshots(parent_inode, name)
        node = self.fs.mkdir(parent_inode, name, mode, _ctx(ctx))
        await self._durable()
        return self._entry(node)

    @measured
    @fuse_errors
    async def unlink(self, parent_inode, name, ctx):
        self._not_snapshots(parent_inode, name, taken=False)
        # freeing a large file walks its whole block map: not on the event loop
        await self._run(self._durably, self.fs.unlink, parent_inode, name, _ctx(ctx))

    @measured
    @fuse_errors
    async def rmdir(self, parent_inode, name, ctx):
        self._not_snapshots(parent_inode, name, taken=False)
        self.fs.rmdir(parent_inode, name, _ctx(ctx))
        await self._durable()

    @measured
    @fuse_errors
    async def symlink(self, parent_inode, name, target, ctx):
        self._not_snapshots(parent_inode, name)
        node = self.fs.symlink(parent_inode, name, target, _ctx(ctx))
        await self._durable()
        return self._entry(node)

    @measured
    @fuse_errors
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        self._not_snapshots(parent_inode_old, name_old, taken=False)
        self._not_snapshots(parent_inode_new, name_new, taken=False)
        await self._run(self._durably, self.fs.rename, parent_inode_old, name_old,
                        parent_inode_new, name_new, flags, _ctx(ctx))

    @measured
    @fuse_errors
    async def link(self, inode, new_parent_inode, new_name, ctx):
        self._read_only(inode)
        self._not_snapshots(new_parent_inode, new_name)
        node = self.fs.link(inode, new_parent_inode, new_name, _ctx(ctx))
        await self._durable()
        return self._entry(node)

    async def forget(self, inode_list):
        # Inodes are persistent and freed by link count and open count alone.
        return None

    @measured
    @fuse_errors
    async def opendir(self, inode, ctx):
        if self.snapshots.owns(inode):
            await self._run(self.snapshots.opendir, inode)
            return inode
        node = self.fs.getattr(inode)
        if not stat.S_ISDIR(node.mode):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    @measured
    @fuse_errors
    async def readdir(self, fh, start_id, token):
        snapshot = self.snapshots.owns(fh)
        while True:
            if snapshot:
                entries = await self._run(self.snapshots.readdir, fh, start_id)
            else:
                entries = self.fs.readdir(fh, start_id)
            if not entries:
                return
            for name, node, offset in entries:
                if fh == ROOT_INO and (name in HIDDEN_ROOT_NAMES or name == SNAPSHOTS_NAME):
                    start_id = offset
                    continue
                if not pyfuse3.readdir_reply(token, name, self._entry(node), offset):
                    return
                start_id = offset

    async def releasedir(self, fh):
        return None

    @measured
    @fuse_errors
    async def fsyncdir(self, fh, datasync):
        if self.snapshots.owns(fh):
            return
        await trio.to_thread.run_sync(self.fs.meta.make_durable)

    @measured
    @fuse_errors
    async def statfs(self, ctx):
        st = await self._run(self.fs.statfs)
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = st.block_size
        s.f_blocks = st.blocks
        s.f_bfree = s.f_bavail = st.blocks_free
        s.f_files = st.files
        s.f_ffree = s.f_favail = st.files_free
        s.f_namemax = st.name_max
        return s

    @measured
    @fuse_errors
    async def access(self, inode, mode, ctx):
        if self.snapshots.owns(inode):
            self.snapshots.access(inode, mode)
            return
        self.fs.access(inode, mode, _ctx(ctx))

    # -------------------------------------------------------------- xattrs

    @measured
    @fuse_errors
    async def getxattr(self, inode, name, ctx):
        if self.snapshots.owns(inode):
            return await self._run(self.snapshots.getxattr, inode, name)
        return self.fs.getxattr(inode, name)

    @measured
    @fuse_errors
    async def setxattr(self, inode, name, value, ctx):
        self._read_only(inode)
        self.fs.setxattr(inode, name, value)

    @measured
    @fuse_errors
    async def listxattr(self, inode, ctx):
        if self.snapshots.owns(inode):
            return await self._run(self.snapshots.listxattr, inode)
        return self.fs.listxattr(inode)

    @measured
    @fuse_errors
    async def removexattr(self, inode, name, ctx):
        self._read_only(inode)
        self.fs.removexattr(inode, name)

    # -------------------------------------------------------------- files

    @staticmethod
    def _flags(flags: int) -> int:
        # The kernel implements O_APPEND itself (it sends each write at the end of file it
        # knows, its cached size; mmap writeback may go through any handle): the filesystem
        # must not move writes to the end on its own.
        return flags & ~os.O_APPEND

    @measured
    @fuse_errors
    async def open(self, inode, flags, ctx):
        if self.snapshots.owns(inode):
            fh = await self._run(self.snapshots.open, inode, self._flags(flags))
            return pyfuse3.FileInfo(fh=fh, keep_cache=True)
        if flags & os.O_TRUNC:
            fh = await self._run(self._durably, self.fs.open, inode, self._flags(flags),
                                 _ctx(ctx))
        else:
            fh = self.fs.open(inode, self._flags(flags), _ctx(ctx))
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    @measured
    @fuse_errors
    async def create(self, parent_inode, name, mode, flags, ctx):
        self._not_snapshots(parent_inode, name)
        fh, node = self.fs.create(parent_inode, name, mode, self._flags(flags), _ctx(ctx))
        self._created.add(fh)  # durable at its first close or fsync (module docstring)
        return pyfuse3.FileInfo(fh=fh, keep_cache=True), self._entry(node)

    @measured
    @fuse_errors
    async def read(self, fh, off, size):
        # blocks already in memory (read ahead, dirty, holes) are served without a thread hop
        fs = self.snapshots if self.snapshots.owns(fh) else self.fs
        data = fs.read_nowait(fh, off, size)
        if data is None:
            data = await self._run(fs.read, fh, off, size)
        return data

    @measured
    @fuse_errors
    async def write(self, fh, off, buf):
        self._read_only(fh)
        # copying into a dirty buffer is cheap: only block loads and flushes need a thread
        written = self.fs.write_nowait(fh, off, buf)
        if written is None:
            written = await self._run(self.fs.write, fh, off, buf)
        return written

    @measured
    @fuse_errors
    async def flush(self, fh):
        if self.snapshots.owns(fh):
            return
        # close(2): NFS-Ganesha and Samba open and close files many times per client request,
        # mostly without writing; a clean file needs no thread hop
        if self.fs.needs_flush(self.fs.handle_ino(fh)):
            await self._run(self.fs.flush, fh)  # durable, its create too (a later commit)
        else:  # still says, once, that writes to the file were lost (sofs.lostwrites)
            self.fs.raise_lost_writes(fh)
            if fh in self._created:
                await self._durable()
        self._created.discard(fh)

    @measured
    @fuse_errors
    async def fsync(self, fh, datasync):
        if self.snapshots.owns(fh):
            return
        await self._run(self.fs.fsync, fh, bool(datasync))

    def init(self) -> None:
        # pyfuse3 has no fallocate handler: give libfuse one (see fuse_mount.fallocate_hook)
        self._fallocate_hook = install_fallocate(self.fallocate)

    @measured
    @fuse_errors
    async def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        """fallocate(2): the kernel checked the mode's basics and write access on the fd."""
        self._read_only(fh)
        await self._run(self.fs.fallocate, fh, mode, offset, length)

    @measured
    @fuse_errors
    async def release(self, fh):
        if self.snapshots.owns(fh):
            await self._run(self.snapshots.release, fh)
            return
        created = fh in self._created
        self._created.discard(fh)
        if self.fs.needs_flush(self.fs.handle_ino(fh)):
            await self._run(self.fs.release, fh)
        else:  # close() already flushed: only bookkeeping (or freeing an unlinked inode) left
            self.fs.release(fh)
            if created:
                await self._durable()
