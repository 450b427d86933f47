"""Making the kernel forget written data that sofs could not store.

The kernel keeps written pages in its page cache (kept across opens) and the file's attributes
(its size) in its attribute cache (long timeouts: this connector is the only writer). When sofs
drops writes it could not store (:mod:`sofs.lostwrites`), readers would go on seeing that data,
and the size it gave the file, until the cache expired. For each lost write,
:class:`KernelCacheFixer` (a thread of the mount process: the call waits on the kernel, which
may wait on requests the event loop serves, so it must not run on it) invalidates the inode
(``pyfuse3.invalidate_inode``): its pages are dropped and its attributes asked again, and
without writeback caching the kernel then takes the size sofs has (and cuts its page cache
there). An inode the kernel does not hold needs nothing.

This runs just after the failing request has answered, so a reader in that moment may still
see the kernel's copy once.
"""

from __future__ import annotations

import errno
import logging
import queue
import threading
from collections.abc import Callable

import pyfuse3

from sofs.errors import FsError
from sofs.inode import Inode
from sofs.lostwrites import LostWrite

log = logging.getLogger(__name__)

_STOP = None


class KernelCacheFixer:
    """Applies lost writes to the kernel's view of the mount, one at a time, in its own
    thread. ``current(ino)`` gives an inode's size as sofs has it now, or None when it is
    gone."""

    def __init__(self, current: Callable[[int], int | None]) -> None:
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
        try:
            pyfuse3.invalidate_inode(ino, attr_only=False)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOSYS):
                raise
            return  # the kernel does not hold the inode: nothing cached
        self.fixed += 1
        log.info("inode %d: the kernel's cached copy dropped (sofs keeps %d bytes)", ino, now)


def inode_now(getattr: Callable[[int], Inode]) -> Callable[[int], int | None]:
    """``current`` for :class:`KernelCacheFixer` from ``Filesystem.getattr``."""
    def current(ino: int) -> int | None:
        try:
            return getattr(ino).size
        except FsError:
            return None
    return current
