"""A small, thread-safe LRU of open container file descriptors with reference counts.

There may be many disks in one process and the fd limit is 20,000, so each DiskStore keeps
only a few container files open. A descriptor handed out by :meth:`FdCache.acquire` stays valid
until it is released, even if it is evicted meanwhile: eviction only drops the cache's own
reference, and the fd is closed when the last holder releases it (so a reader never sees its
fd number closed and reused under it).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Iterator


class FileHandle:
    """An open fd shared between the cache and its users."""

    __slots__ = ("fd", "refs")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.refs = 1  # the creator's (cache's) reference


class FdCache:
    """LRU of ``capacity`` fds keyed by container id; ``opener(cid) -> fd``."""

    def __init__(self, opener: Callable[[int], int], capacity: int = 4) -> None:
        self._opener = opener
        self._capacity = max(1, capacity)
        self._lru: OrderedDict[int, FileHandle] = OrderedDict()
        self._lock = threading.Lock()

    def _unref(self, h: FileHandle) -> None:
        # caller holds self._lock
        h.refs -= 1
        if h.refs == 0:
            os.close(h.fd)

    def acquire(self, cid: int) -> FileHandle:
        """A handle with one reference for the caller (release it with :meth:`release`)."""
        with self._lock:
            h = self._lru.get(cid)
            if h is not None:
                self._lru.move_to_end(cid)
                h.refs += 1
                return h
        fd = self._opener(cid)  # may raise (FileNotFoundError ...); outside the lock
        with self._lock:
            h = self._lru.get(cid)
            if h is not None:  # another thread opened it meanwhile
                os.close(fd)
                self._lru.move_to_end(cid)
            else:
                h = FileHandle(fd)
                self._lru[cid] = h
                while len(self._lru) > self._capacity:
                    _, old = self._lru.popitem(last=False)
                    self._unref(old)
            h.refs += 1
            return h

    def ref(self, h: FileHandle) -> None:
        """Take one more reference on a handle the caller already holds."""
        with self._lock:
            h.refs += 1

    def release(self, h: FileHandle) -> None:
        with self._lock:
            self._unref(h)

    @contextmanager
    def open(self, cid: int) -> Iterator[int]:
        """``with cache.open(cid) as fd:`` – fd valid inside the block."""
        h = self.acquire(cid)
        try:
            yield h.fd
        finally:
            self.release(h)

    def forget(self, cid: int) -> None:
        """Drop the cached fd of ``cid`` (closed once no holder uses it)."""
        with self._lock:
            h = self._lru.pop(cid, None)
            if h is not None:
                self._unref(h)

    def close(self) -> None:
        """Drop every cached fd."""
        with self._lock:
            while self._lru:
                _, h = self._lru.popitem()
                self._unref(h)

    def __len__(self) -> int:
        with self._lock:
            return len(self._lru)
