"""A FUSE filesystem for power-cut tests: only what was fsynced survives a "cut".

Everything written through the mount is kept in this process's memory until it is made durable
the way Linux promises on ext4, read conservatively:

* a file's data and size are durable once the file is fsynced or fdatasynced (through any
  descriptor of it); ``close()`` makes nothing durable;
* a name (create, mknod, mkdir, link, rename in or out, unlink, rmdir) is durable once its
  directory is fsynced; a new directory's own entries, once it is fsynced itself; a rename
  between two directories is durable in each one when that one is fsynced;
* what is durable is written to the backing directory (``obj/<id>``: a file's content,
  ``dir/<id>.json``: a directory's entries), what is not stays in memory only.

A power cut is a SIGUSR1 to this process: it exits at once (between two requests: the handlers
never yield to the event loop while they work), dropping everything that was not durable. The
test then lazily unmounts the dead mount and starts a new server on the same backing directory,
which mounts exactly the durable state: a name whose file was never fsynced comes back empty,
a file whose name was never made durable is gone, unsynced appends are cut off. Directories
and files that nothing durable names are deleted from the backing directory at startup.

It serves regular files and directories only (no symlinks, special files or xattrs); inode
numbers are the backing ids; it never checks permissions (root mounts it, with
``default_permissions``).

    python -m tests.powercut.cutfs BACKING MOUNTPOINT

serves in the foreground and prints ``ready`` once the mount answers.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import sys
import time
from dataclasses import dataclass, field

import pyfuse3
import trio
from pyfuse3 import FUSEError

PAGE = 64 * 1024
ROOT = pyfuse3.ROOT_INODE
TIMEOUT = 60.0
RENAME_NOREPLACE = 1


@dataclass
class Node:
    """One file or directory: its current state, and what of it is durable."""

    id: int
    is_dir: bool
    mode: int
    mtime_ns: int = field(default_factory=time.time_ns)
    # a file: current size, pages written since its last fsync, and the backing object,
    # of which only the bytes below ``floor`` are still current (a truncate since cut it)
    size: int = 0
    pages: dict[int, bytearray] = field(default_factory=dict)
    floor: int = 0
    # a directory: current entries (name -> id)
    entries: dict[bytes, int] = field(default_factory=dict)
    nlink: int = 0  # current names (a directory: 2 + its subdirectories)


class CutFs(pyfuse3.Operations):
    enable_writeback_cache = False

    def __init__(self, backing: str) -> None:
        super().__init__()
        self.backing = backing
        os.makedirs(self._path("obj"), exist_ok=True)
        os.makedirs(self._path("dir"), exist_ok=True)
        self.nodes: dict[int, Node] = {}
        self.handles: dict[int, int] = {}  # fh -> node id
        self._next_fh = 1
        self._load()

    # ------------------------------------------------------------------ backing

    def _path(self, *parts: str) -> str:
        return os.path.join(self.backing, *parts)

    def _obj(self, nid: int) -> str:
        return self._path("obj", str(nid))

    def _dirfile(self, nid: int) -> str:
        return self._path("dir", f"{nid}.json")

    def _load(self) -> None:
        """The durable tree from the backing directory; what it does not reach is deleted."""
        root = Node(ROOT, True, stat.S_IFDIR | 0o755, nlink=2)
        self.nodes[ROOT] = root
        todo = [root]
        while todo:
            d = todo.pop()
            try:
                with open(self._dirfile(d.id)) as f:
                    saved = json.load(f)
            except FileNotFoundError:
                saved = {}
            for hexname, (nid, is_dir, mode) in saved.items():
                name = bytes.fromhex(hexname)
                node = self.nodes.get(nid)
                if node is not None and (node.is_dir or is_dir):
                    continue  # a directory named twice (a rename half made durable): keep one
                if node is None:
                    node = self.nodes[nid] = Node(nid, is_dir, mode)
                    if is_dir:
                        node.nlink = 2
                        d.nlink += 1
                        todo.append(node)
                    else:
                        try:
                            node.size = node.floor = os.stat(self._obj(nid)).st_size
                        except FileNotFoundError:
                            pass
                if not is_dir:
                    node.nlink += 1
                d.entries[name] = nid
        seen = [ROOT]
        for sub, suffix in (("obj", ""), ("dir", ".json")):
            for fname in os.listdir(self._path(sub)):
                stem = fname.removesuffix(suffix)
                if stem.isdigit():
                    seen.append(int(stem))
                    if int(stem) not in self.nodes:
                        os.unlink(self._path(sub, fname))
                else:
                    os.unlink(self._path(sub, fname))  # a temporary file of a dead server
        self._next_id = max(seen) + 1

    def _persist_file(self, node: Node) -> None:
        """fsync: the file's current content becomes its backing object."""
        fd = os.open(self._obj(node.id), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, node.floor)  # bytes a truncate cut off read as zeros from here on
            for index, page in node.pages.items():
                start = index * PAGE
                if start < node.size:
                    os.pwrite(fd, page[:node.size - start], start)
            os.ftruncate(fd, node.size)
        finally:
            os.close(fd)
        node.pages.clear()
        node.floor = node.size

    def _persist_dir(self, node: Node) -> None:
        """fsyncdir: the directory's current entries become durable."""
        saved = {name.hex(): [nid, self.nodes[nid].is_dir, self.nodes[nid].mode]
                 for name, nid in node.entries.items()}
        tmp = self._dirfile(node.id) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(saved, f)
        os.replace(tmp, self._dirfile(node.id))

    # ------------------------------------------------------------------ helpers

    def _node(self, nid: int) -> Node:
        node = self.nodes.get(nid)
        if node is None:
            raise FUSEError(errno.ENOENT)
        return node

    def _dir(self, nid: int) -> Node:
        node = self._node(nid)
        if not node.is_dir:
            raise FUSEError(errno.ENOTDIR)
        return node

    def _child(self, parent: int, name: bytes) -> Node:
        nid = self._dir(parent).entries.get(name)
        if nid is None:
            raise FUSEError(errno.ENOENT)
        return self.nodes[nid]

    def _attr(self, node: Node) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = node.id
        e.generation = 0
        e.entry_timeout = e.attr_timeout = TIMEOUT
        e.st_mode = node.mode
        e.st_nlink = node.nlink
        e.st_uid = e.st_gid = 0
        e.st_size = node.size
        e.st_blksize = PAGE
        e.st_blocks = (node.size + 511) // 512
        e.st_atime_ns = e.st_mtime_ns = e.st_ctime_ns = node.mtime_ns
        return e

    def _new(self, parent: Node, name: bytes, mode: int) -> Node:
        if name in parent.entries:
            raise FUSEError(errno.EEXIST)
        is_dir = stat.S_ISDIR(mode)
        if not (is_dir or stat.S_ISREG(mode)):
            raise FUSEError(errno.EPERM)
        node = self.nodes[self._next_id] = Node(self._next_id, is_dir, mode,
                                                nlink=2 if is_dir else 1)
        self._next_id += 1
        parent.entries[name] = node.id
        if is_dir:
            parent.nlink += 1
        parent.mtime_ns = time.time_ns()
        return node

    def _drop_name(self, parent: Node, name: bytes) -> None:
        node = self.nodes[parent.entries.pop(name)]
        if node.is_dir:
            parent.nlink -= 1
        else:
            node.nlink -= 1
            self._forget_unsynced(node)
        parent.mtime_ns = time.time_ns()

    def _forget_unsynced(self, node: Node) -> None:
        """A file without names or opens can never be fsynced again: drop its pages."""
        if node.nlink == 0 and node.id not in self.handles.values():
            node.pages.clear()

    def _page(self, node: Node, index: int) -> bytearray:
        """The current content of one page, loaded from the backing object when clean."""
        page = node.pages.get(index)
        if page is None:
            page = bytearray(PAGE)
            start = index * PAGE
            if start < node.floor:
                with open(self._obj(node.id), "rb") as f:
                    f.seek(start)
                    data = f.read(min(PAGE, node.floor - start))
                page[:len(data)] = data
            node.pages[index] = page
        return page

    def _truncate(self, node: Node, size: int) -> None:
        if size < node.size:
            for index in [i for i in node.pages if i * PAGE >= size]:
                del node.pages[index]
            index, offset = divmod(size, PAGE)
            if offset and (index in node.pages or index * PAGE < node.floor):
                page = self._page(node, index)
                page[offset:] = bytes(PAGE - offset)
            node.floor = min(node.floor, size)
        node.size = size
        node.mtime_ns = time.time_ns()

    # ------------------------------------------------------------------ namespace

    async def lookup(self, parent_inode, name, ctx):
        return self._attr(self._child(parent_inode, name))

    async def getattr(self, inode, ctx):
        return self._attr(self._node(inode))

    async def setattr(self, inode, attr, fields, fh, ctx):
        node = self._node(inode)
        if fields.update_size:
            if node.is_dir:
                raise FUSEError(errno.EISDIR)
            self._truncate(node, attr.st_size)
        if fields.update_mode:
            node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
        if fields.update_mtime:
            node.mtime_ns = attr.st_mtime_ns
        return self._attr(node)

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        return self._attr(self._new(self._dir(parent_inode), name, mode))

    async def mkdir(self, parent_inode, name, mode, ctx):
        return self._attr(self._new(self._dir(parent_inode), name, stat.S_IFDIR | mode))

    async def unlink(self, parent_inode, name, ctx):
        parent = self._dir(parent_inode)
        if self._child(parent_inode, name).is_dir:
            raise FUSEError(errno.EISDIR)
        self._drop_name(parent, name)

    async def rmdir(self, parent_inode, name, ctx):
        parent = self._dir(parent_inode)
        node = self._child(parent_inode, name)
        if not node.is_dir:
            raise FUSEError(errno.ENOTDIR)
        if node.entries:
            raise FUSEError(errno.ENOTEMPTY)
        self._drop_name(parent, name)

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        if flags & ~RENAME_NOREPLACE:
            raise FUSEError(errno.EINVAL)
        old, new = self._dir(parent_inode_old), self._dir(parent_inode_new)
        node = self._child(parent_inode_old, name_old)
        target = new.entries.get(name_new)
        if target == node.id:
            return
        if target is not None:
            if flags & RENAME_NOREPLACE:
                raise FUSEError(errno.EEXIST)
            other = self.nodes[target]
            if other.is_dir != node.is_dir:
                raise FUSEError(errno.EISDIR if other.is_dir else errno.ENOTDIR)
            if other.is_dir and other.entries:
                raise FUSEError(errno.ENOTEMPTY)
            self._drop_name(new, name_new)
        del old.entries[name_old]
        new.entries[name_new] = node.id
        if node.is_dir and old is not new:
            old.nlink -= 1
            new.nlink += 1
        old.mtime_ns = new.mtime_ns = time.time_ns()

    async def link(self, inode, new_parent_inode, new_name, ctx):
        node = self._node(inode)
        parent = self._dir(new_parent_inode)
        if node.is_dir:
            raise FUSEError(errno.EPERM)
        if new_name in parent.entries:
            raise FUSEError(errno.EEXIST)
        parent.entries[new_name] = node.id
        node.nlink += 1
        return self._attr(node)

    async def forget(self, inode_list):
        return None  # nodes stay in memory: a cut or the end of the test frees them

    async def opendir(self, inode, ctx):
        self._dir(inode)
        return inode

    async def readdir(self, fh, start_id, token):
        names = sorted(self._dir(fh).entries)
        for i, name in enumerate(names[start_id:], start_id + 1):
            nid = self.nodes[fh].entries.get(name)
            if nid is not None and not pyfuse3.readdir_reply(token, name,
                                                             self._attr(self.nodes[nid]), i):
                return

    async def releasedir(self, fh):
        return None

    async def fsyncdir(self, fh, datasync):
        self._persist_dir(self._dir(fh))

    async def statfs(self, ctx):
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        used = sum(n.size for n in self.nodes.values()) // 4096
        s.f_blocks = (256 << 30) // 4096
        s.f_bfree = s.f_bavail = s.f_blocks - used
        s.f_files = s.f_ffree = s.f_favail = 1 << 30
        s.f_namemax = 255
        return s

    # ------------------------------------------------------------------ files

    def _open(self, node: Node, flags: int) -> pyfuse3.FileInfo:
        if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY:
            self._truncate(node, 0)
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = node.id
        return pyfuse3.FileInfo(fh=fh)

    async def open(self, inode, flags, ctx):
        node = self._node(inode)
        if node.is_dir:
            raise FUSEError(errno.EISDIR)
        return self._open(node, flags)

    async def create(self, parent_inode, name, mode, flags, ctx):
        node = self._new(self._dir(parent_inode), name, stat.S_IFREG | stat.S_IMODE(mode))
        return self._open(node, flags), self._attr(node)

    def _handle(self, fh: int) -> Node:
        nid = self.handles.get(fh)
        if nid is None:
            raise FUSEError(errno.EBADF)
        return self.nodes[nid]

    async def read(self, fh, off, size):
        node = self._handle(fh)
        end = min(off + size, node.size)
        out = bytearray()
        pos = off
        while pos < end:
            index, offset = divmod(pos, PAGE)
            n = min(PAGE - offset, end - pos)
            page = node.pages.get(index)
            if page is not None:
                out += page[offset:offset + n]
            elif pos < node.floor:
                with open(self._obj(node.id), "rb") as f:
                    f.seek(pos)
                    data = f.read(min(n, node.floor - pos))
                out += data + bytes(n - len(data))
            else:
                out += bytes(n)
            pos += n
        return bytes(out)

    async def write(self, fh, off, buf):
        node = self._handle(fh)
        view = memoryview(buf)
        pos = 0
        while pos < len(view):
            index, offset = divmod(off + pos, PAGE)
            n = min(PAGE - offset, len(view) - pos)
            self._page(node, index)[offset:offset + n] = view[pos:pos + n]
            pos += n
        node.size = max(node.size, off + len(view))
        node.mtime_ns = time.time_ns()
        return len(view)

    async def flush(self, fh):
        return None  # close() makes nothing durable

    async def fsync(self, fh, datasync):
        self._persist_file(self._handle(fh))

    async def release(self, fh):
        nid = self.handles.pop(fh, None)
        if nid is not None:
            self._forget_unsynced(self.nodes[nid])


async def _serve(mountpoint: str) -> None:
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGTERM) as sigs:
                async for signum in sigs:
                    if signum == signal.SIGUSR1:  # the power cut: nothing more is written
                        os._exit(0)
                    pyfuse3.terminate()
                    return

        async def announce() -> None:
            await trio.to_thread.run_sync(os.stat, mountpoint)
            print("ready", flush=True)

        nursery.start_soon(watch_signals)
        nursery.start_soon(announce)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    backing, mountpoint = (argv if argv is not None else sys.argv[1:])
    mountpoint = os.path.realpath(mountpoint)
    options = set(pyfuse3.default_options) | {"fsname=cutfs", "subtype=cutfs"}
    pyfuse3.init(CutFs(backing), mountpoint, options)
    try:
        trio.run(_serve, mountpoint)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
