"""The benchmark's baseline: a trivial pyfuse3 + trio passthrough of a plain directory.

It measures what a FUSE filesystem written in Python costs before it does any work of its own:
every request is answered by calling the matching blocking syscall on SOURCE_DIR directly, on
the trio event loop. ``tests/bench/run_bench.py`` divides sofs's numbers by this mount's
numbers taken in the same run; a ratio near 1 means sofs adds little beyond the Python/FUSE
floor, a ratio well below 1 is what sofs's own work (hashing, compression, erasure coding,
metadata) costs. Absolute numbers from different runs are not comparable on these noisy
machines; ratios from one run are.

By default it never makes anything durable on its own: ``close()`` (FUSE ``flush``) returns at
once and data reaches the disk when the kernel writes it back, or on an explicit ``fsync``.
sofs instead stores every file durably before ``close()`` returns (its chunk copies are
fsynced), so for small files the two do unequal work. With ``--fsync-on-close`` the ``flush``
handler calls ``os.fsync`` on the file's descriptor in the source directory (the kernel has
already written the file's dirty pages to this process when it sends ``flush``), which makes
every ``close()`` wait for the data and inode to be on disk: the durability-matched baseline
that ``run_bench.py`` shows as ``passthrough+fsync``. Directory entries are not fsynced.

To be a fair baseline it gives the kernel the same caching sofs does (``fuse_mount``):
entry/attribute timeouts of 300 s, ``enable_writeback_cache``, ``keep_cache`` on every open,
mount options ``default_permissions``, and a 1 MiB bdi read-ahead. It keeps no cache of its
own. Inode numbers are its own, mapped to paths (hard links are not supported); every open
gets its own file descriptor, closed on release, so it never holds more descriptors than there
are open files (the open-file limit here is 20,000).

    python -m tests.bench.passthrough [--fsync-on-close] SOURCE_DIR MOUNTPOINT

serves in the foreground, prints ``ready`` on stdout once the mount answers, and stops on
SIGTERM/SIGINT or when unmounted (``fusermount3 -u MOUNTPOINT``).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import stat
import sys

import pyfuse3
import trio
from pyfuse3 import FUSEError

TIMEOUT = 300.0
READ_AHEAD_KB = 1024


class Passthrough(pyfuse3.Operations):
    enable_writeback_cache = True

    def __init__(self, source: str, fsync_on_close: bool = False) -> None:
        super().__init__()
        self._fsync_on_close = fsync_on_close
        root = os.fsencode(os.path.realpath(source))
        self._path: dict[int, bytes] = {pyfuse3.ROOT_INODE: root}   # inode -> current path
        self._ino: dict[bytes, int] = {root: pyfuse3.ROOT_INODE}    # path -> inode
        self._nlookup: dict[int, int] = {}                          # inode -> kernel lookups
        self._next_ino = pyfuse3.ROOT_INODE + 1
        self._dirs: dict[int, tuple[int, list[bytes] | None]] = {}  # dir handle -> (inode, names)
        self._next_dh = 1
        self._euid, self._egid = os.geteuid(), os.getegid()

    # ------------------------------------------------------------------ inode <-> path

    def _to_path(self, ino: int) -> bytes:
        try:
            return self._path[ino]
        except KeyError:
            raise FUSEError(errno.ENOENT) from None

    def _number(self, path: bytes) -> int:
        """The inode number of ``path``, given one if it has none yet."""
        ino = self._ino.get(path)
        if ino is None:
            ino = self._next_ino
            self._next_ino += 1
            self._ino[path] = ino
            self._path[ino] = path
        return ino

    def _remember(self, path: bytes) -> int:
        """The inode number of ``path``, counting one more kernel lookup of it."""
        ino = self._number(path)
        if ino != pyfuse3.ROOT_INODE:
            self._nlookup[ino] = self._nlookup.get(ino, 0) + 1
        return ino

    def _drop_path(self, path: bytes) -> None:
        """``path`` no longer names its inode (unlinked); the inode lives until forgotten."""
        ino = self._ino.pop(path, None)
        if ino is not None and ino not in self._nlookup:
            self._path.pop(ino, None)

    async def forget(self, inode_list) -> None:
        for ino, n in inode_list:
            left = self._nlookup.get(ino, 0) - n
            if left > 0:
                self._nlookup[ino] = left
                continue
            self._nlookup.pop(ino, None)
            path = self._path.pop(ino, None)
            if path is not None and self._ino.get(path) == ino:
                del self._ino[path]

    @staticmethod
    def _attr(st: os.stat_result, ino: int) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = ino
        e.generation = 0
        e.entry_timeout = TIMEOUT
        e.attr_timeout = TIMEOUT
        e.st_mode = st.st_mode
        e.st_nlink = st.st_nlink
        e.st_uid = st.st_uid
        e.st_gid = st.st_gid
        e.st_rdev = st.st_rdev
        e.st_size = st.st_size
        e.st_blksize = st.st_blksize
        e.st_blocks = st.st_blocks
        e.st_atime_ns = st.st_atime_ns
        e.st_mtime_ns = st.st_mtime_ns
        e.st_ctime_ns = st.st_ctime_ns
        return e

    def _entry(self, path: bytes) -> pyfuse3.EntryAttributes:
        try:
            st = os.lstat(path)
        except OSError as e:
            raise FUSEError(e.errno) from None
        return self._attr(st, self._remember(path))

    def _own(self, path: bytes, ctx: pyfuse3.RequestContext) -> None:
        if (ctx.uid, ctx.gid) != (self._euid, self._egid):
            os.chown(path, ctx.uid, ctx.gid, follow_symlinks=False)

    # ------------------------------------------------------------------ namespace

    async def lookup(self, parent_inode, name, ctx):
        if name == b".":
            return self._entry(self._to_path(parent_inode))
        if name == b"..":
            return self._entry(os.path.dirname(self._to_path(parent_inode)))
        return self._entry(os.path.join(self._to_path(parent_inode), name))

    async def getattr(self, inode, ctx):
        try:
            st = os.lstat(self._to_path(inode))
        except OSError as e:
            raise FUSEError(e.errno) from None
        return self._attr(st, inode)

    async def setattr(self, inode, attr, fields, fh, ctx):
        target = fh if fh is not None else self._to_path(inode)
        try:
            if fields.update_size:
                os.truncate(target, attr.st_size)
            if fields.update_mode:
                os.chmod(target, stat.S_IMODE(attr.st_mode))
            if fields.update_uid or fields.update_gid:
                os.chown(target, attr.st_uid if fields.update_uid else -1,
                         attr.st_gid if fields.update_gid else -1)
            if fields.update_atime or fields.update_mtime:
                old = os.stat(target)
                os.utime(target, ns=(
                    attr.st_atime_ns if fields.update_atime else old.st_atime_ns,
                    attr.st_mtime_ns if fields.update_mtime else old.st_mtime_ns))
            st = os.stat(target)
        except OSError as e:
            raise FUSEError(e.errno) from None
        return self._attr(st, inode)

    async def mkdir(self, parent_inode, name, mode, ctx):
        path = os.path.join(self._to_path(parent_inode), name)
        try:
            os.mkdir(path, mode & ~ctx.umask)
            self._own(path, ctx)
        except OSError as e:
            raise FUSEError(e.errno) from None
        return self._entry(path)

    async def unlink(self, parent_inode, name, ctx):
        path = os.path.join(self._to_path(parent_inode), name)
        try:
            os.unlink(path)
        except OSError as e:
            raise FUSEError(e.errno) from None
        self._drop_path(path)

    async def rmdir(self, parent_inode, name, ctx):
        path = os.path.join(self._to_path(parent_inode), name)
        try:
            os.rmdir(path)
        except OSError as e:
            raise FUSEError(e.errno) from None
        self._drop_path(path)

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        if flags:
            raise FUSEError(errno.EINVAL)  # no renameat2() in os; callers fall back
        old = os.path.join(self._to_path(parent_inode_old), name_old)
        new = os.path.join(self._to_path(parent_inode_new), name_new)
        try:
            os.rename(old, new)
        except OSError as e:
            raise FUSEError(e.errno) from None
        self._drop_path(new)  # a replaced target
        prefix = old + b"/"
        moved = [p for p in self._ino if p == old or p.startswith(prefix)]  # a directory's tree
        for p in moved:
            ino = self._ino.pop(p)
            q = new + p[len(old):]
            self._ino[q] = ino
            self._path[ino] = q

    async def opendir(self, inode, ctx):
        path = self._to_path(inode)
        if not os.path.isdir(path):
            raise FUSEError(errno.ENOTDIR)
        dh = self._next_dh
        self._next_dh += 1
        self._dirs[dh] = (inode, None)
        return dh

    async def readdir(self, fh, start_id, token):
        inode, names = self._dirs[fh]
        path = self._to_path(inode)
        if names is None or start_id == 0:  # one snapshot per listing: offsets are indexes
            try:
                names = sorted(os.listdir(path))
            except OSError as e:
                raise FUSEError(e.errno) from None
            self._dirs[fh] = (inode, names)
        for i in range(start_id, len(names)):
            child = os.path.join(path, names[i])
            try:
                st = os.lstat(child)
            except FileNotFoundError:
                continue
            ino = self._number(child)
            if not pyfuse3.readdir_reply(token, names[i], self._attr(st, ino), i + 1):
                return
            self._remember(child)  # readdirplus: the kernel counts a lookup per entry

    async def releasedir(self, fh):
        self._dirs.pop(fh, None)

    async def statfs(self, ctx):
        try:
            sv = os.statvfs(self._path[pyfuse3.ROOT_INODE])
        except OSError as e:
            raise FUSEError(e.errno) from None
        s = pyfuse3.StatvfsData()
        for f in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                  "f_ffree", "f_favail", "f_namemax"):
            setattr(s, f, getattr(sv, f))
        return s

    # ------------------------------------------------------------------ files

    @staticmethod
    def _flags(flags: int) -> int:
        # Writeback caching: the kernel reads pages through write-only handles and implements
        # O_APPEND itself, so open read-write and never append on our own.
        flags &= ~os.O_APPEND
        if flags & os.O_ACCMODE == os.O_WRONLY:
            flags = (flags & ~os.O_ACCMODE) | os.O_RDWR
        return flags | os.O_CLOEXEC

    async def open(self, inode, flags, ctx):
        try:
            fd = os.open(self._to_path(inode), self._flags(flags) & ~os.O_CREAT)
        except OSError as e:
            raise FUSEError(e.errno) from None
        return pyfuse3.FileInfo(fh=fd, keep_cache=True)

    async def create(self, parent_inode, name, mode, flags, ctx):
        path = os.path.join(self._to_path(parent_inode), name)
        try:
            fd = os.open(path, self._flags(flags) | os.O_CREAT, mode & ~ctx.umask)
            self._own(path, ctx)
            st = os.fstat(fd)
        except OSError as e:
            raise FUSEError(e.errno) from None
        return pyfuse3.FileInfo(fh=fd, keep_cache=True), self._attr(st, self._remember(path))

    async def read(self, fh, off, size):
        try:
            return os.pread(fh, size, off)
        except OSError as e:
            raise FUSEError(e.errno) from None

    async def write(self, fh, off, buf):
        try:
            return os.pwrite(fh, buf, off)
        except OSError as e:
            raise FUSEError(e.errno) from None

    async def flush(self, fh):
        # close(2) of one descriptor. The kernel has already sent the file's dirty pages (and
        # waited for those writes) before it sends FLUSH, so an fsync here covers them.
        if self._fsync_on_close:
            try:
                os.fsync(fh)
            except OSError as e:
                raise FUSEError(e.errno) from None

    async def fsync(self, fh, datasync):
        try:
            (os.fdatasync if datasync else os.fsync)(fh)
        except OSError as e:
            raise FUSEError(e.errno) from None

    async def release(self, fh):
        os.close(fh)


def _raise_read_ahead(mountpoint: str) -> None:
    """Same as sofs: let the kernel read 1 MiB at a time from the mount (FUSE default 128 KiB)."""
    try:
        st = os.stat(mountpoint)
        with open(f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/read_ahead_kb",
                  "w") as f:
            f.write(str(READ_AHEAD_KB))
    except OSError as e:
        print(f"passthrough: could not raise read-ahead: {e}", file=sys.stderr)


async def _serve(mountpoint: str) -> None:
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
                async for _ in sigs:
                    pyfuse3.terminate()
                    return

        async def announce() -> None:
            await trio.to_thread.run_sync(_raise_read_ahead, mountpoint)
            print("ready", flush=True)

        nursery.start_soon(watch_signals)
        nursery.start_soon(announce)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.passthrough",
                                description="Mirror SOURCE_DIR at MOUNTPOINT (benchmark baseline).")
    p.add_argument("source")
    p.add_argument("mountpoint")
    p.add_argument("--fsync-on-close", action="store_true",
                   help="fsync the underlying file on every close() (FUSE flush), so that "
                        "each close returns only once the data is durable, as in sofs")
    args = p.parse_args(argv)
    mountpoint = os.path.realpath(args.mountpoint)
    options = set(pyfuse3.default_options)  # default_permissions
    name = "passthrough-fsync" if args.fsync_on_close else "passthrough"
    options |= {f"fsname={name}", "subtype=passthrough"}
    pyfuse3.init(Passthrough(args.source, args.fsync_on_close), mountpoint, options)
    try:
        trio.run(_serve, mountpoint)
    except BaseException:
        pyfuse3.close(unmount=True)
        raise
    pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
