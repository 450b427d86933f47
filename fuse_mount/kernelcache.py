"""Making the kernel forget written data that sofs could not store.

The kernel keeps written pages in its page cache (kept across opens) and the file's size in its
attribute cache (long timeouts: this connector is the only writer); with writeback caching it
even owns the size. When sofs drops writes it could not store (:mod:`sofs.lostwrites`), readers
would go on seeing that data, and the size it gave the file, until the inode left the kernel's
cache. For each
lost write, :class:`KernelCacheFixer` (a thread of the mount process: these calls wait on
requests that the event loop serves, so they must not run on it) sets the kernel's size of the
inode to the one sofs has, by a truncate through an ``O_PATH`` descriptor that
``open_by_handle_at(2)`` gives for the inode (no open, so no flush of its own), and then drops
the inode's cached pages (``pyfuse3.invalidate_inode``). An inode the kernel does not hold
any more needs nothing.

This runs just after the failing request has answered (it cannot run before: the kernel holds
the inode's lock during an fsync, and a writeback waits on it), so a reader that comes within
that moment may still see the kernel's copy once.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import queue
import struct
import threading
from collections.abc import Callable

import pyfuse3

from sofs.errors import FsError
from sofs.inode import Inode
from sofs.lostwrites import LostWrite

log = logging.getLogger(__name__)

FILEID_INO64_GEN = 0x81  # the FUSE kernel module's handles: node id (2 x u32), generation
_STOP = None


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * 12)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.POINTER(_FileHandle), ctypes.c_int]
_libc.open_by_handle_at.restype = ctypes.c_int


def open_inode(mount_fd: int, ino: int, generation: int, flags: int = os.O_PATH) -> int:
    """A descriptor of FUSE inode ``ino`` of the mount ``mount_fd`` is on (needs
    CAP_DAC_READ_SEARCH); OSError (ESTALE: the kernel does not know it) otherwise."""
    handle = _FileHandle(12, FILEID_INO64_GEN)
    packed = struct.pack("=III", ino >> 32, ino & 0xFFFFFFFF, generation & 0xFFFFFFFF)
    ctypes.memmove(handle.f_handle, packed, len(packed))
    fd = _libc.open_by_handle_at(mount_fd, ctypes.byref(handle), flags)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


class KernelCacheFixer:
    """Applies lost writes to the kernel's view of a mount, one at a time, in its own thread.

    ``current(ino)`` gives (size, generation) of an inode as sofs has it now, or None when it
    is gone; ``device`` is the mount's ``st_dev``, checked before anything is done through a
    descriptor of ``mountpoint`` (which may have been unmounted and covered meanwhile)."""

    def __init__(self, mountpoint: str, device: int,
                 current: Callable[[int], tuple[int, int] | None]) -> None:
        self._mountpoint = mountpoint
        self._device = device
        self._current = current
        self._queue: queue.SimpleQueue[LostWrite | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sofs-kernelcache", daemon=True)
        self.fixed = 0

    def start(self) -> None:
        self._thread.start()

    def lost(self, lost: LostWrite) -> None:
        """The listener of :class:`sofs.lostwrites.LostWrites`: any thread, never blocks."""
        self._queue.put(lost)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued (bounded by ``timeout``) and end the thread."""
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self._fix(item.ino)
            except Exception as e:  # a helper thread must never die
                log.warning("could not make the kernel forget the lost writes of inode %d: %s",
                            item.ino, e)

    def _fix(self, ino: int) -> None:
        now = self._current(ino)
        if now is None:
            return
        size, generation = now
        # open_by_handle_at refuses an O_PATH descriptor for the mount; this one opens the root
        mount_fd = os.open(self._mountpoint, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if os.fstat(mount_fd).st_dev != self._device:
                return  # not our mount any more
            try:
                fd = open_inode(mount_fd, ino, generation)
            except OSError as e:
                if e.errno in (errno.ESTALE, errno.ENOENT):
                    return  # the kernel does not hold the inode: nothing cached
                raise
            try:
                if os.fstat(fd).st_size != size:
                    os.truncate(f"/proc/self/fd/{fd}", size)
            finally:
                os.close(fd)
        finally:
            os.close(mount_fd)
        try:
            pyfuse3.invalidate_inode(ino, attr_only=False)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOSYS):
                raise
        self.fixed += 1
        log.info("inode %d: the kernel's copy now matches what is stored (%d bytes)", ino, size)


def inode_now(getattr: Callable[[int], Inode]) -> Callable[[int], tuple[int, int] | None]:
    """``current`` for :class:`KernelCacheFixer` from ``Filesystem.getattr``."""
    def current(ino: int) -> tuple[int, int] | None:
        try:
            node = getattr(ino)
        except FsError:
            return None
        return node.size, node.generation
    return current
