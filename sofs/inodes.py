"""The in-memory inodes of a mounted volume: a cache of inode records, how many times each
is open, and which ones hold unflushed data.

:class:`InodeTable` is shared by the namespace (:mod:`sofs.fs`) and the data path
(:mod:`sofs.fileio`): an inode being written has a size ahead of its stored record, so it is
the same object for both, and it must not be evicted while it is open or *pinned* (the data
path pins an inode while it has buffers). It is not thread-safe: every caller holds the
filesystem's lock.
"""

from __future__ import annotations

from . import schema
from .errors import NoSuchEntry
from .inode import Inode
from .metadata import MetaStore

CACHE_LIMIT = 200_000   # past this many inodes, the older half of the idle ones goes


class InodeTable:
    """Inodes by number, loaded on first use; open counts; pins."""

    def __init__(self, meta: MetaStore, limit: int = CACHE_LIMIT) -> None:
        self._meta = meta
        self._limit = limit
        self._nodes: dict[int, Inode] = {}
        self._open: dict[int, int] = {}
        self._pinned: set[int] = set()

    # ------------------------------------------------------------------ records

    def get(self, ino: int) -> Inode:
        """The inode (the live object, not a copy); NoSuchEntry if it has no record."""
        node = self._nodes.get(ino)
        if node is None:
            value = self._meta.get(schema.inode_key(ino))
            if value is None:
                raise NoSuchEntry(f"inode {ino}")
            node = Inode.unpack(ino, value)
            self.add(node)
        return node

    def cached(self, ino: int) -> Inode | None:
        """The inode if it is in memory (never loads it)."""
        return self._nodes.get(ino)

    def add(self, node: Inode) -> None:
        """Keep an inode in memory (a new one, or one just loaded)."""
        if len(self._nodes) >= self._limit:
            self._evict()
        self._nodes[node.ino] = node

    def forget(self, ino: int) -> None:
        """Drop an inode that no longer exists."""
        self._nodes.pop(ino, None)

    def clear(self) -> None:
        """Drop every idle inode (neither open nor pinned): they are reloaded on next use."""
        for ino in [i for i in self._nodes if i not in self._open and i not in self._pinned]:
            del self._nodes[ino]

    def _evict(self) -> None:
        for ino in list(self._nodes)[: len(self._nodes) // 2]:
            if ino not in self._open and ino not in self._pinned:
                del self._nodes[ino]

    def __len__(self) -> int:
        return len(self._nodes)

    # ------------------------------------------------------------------ opens and pins

    def opened(self, ino: int) -> None:
        self._open[ino] = self._open.get(ino, 0) + 1

    def closed(self, ino: int) -> int:
        """One open of ``ino`` ends; how many are left."""
        left = self._open[ino] - 1
        if left:
            self._open[ino] = left
        else:
            del self._open[ino]
        return left

    def is_open(self, ino: int) -> bool:
        return ino in self._open

    def pin(self, ino: int) -> None:
        """Keep ``ino`` in memory until :meth:`unpin` (it has data not yet stored)."""
        self._pinned.add(ino)

    def unpin(self, ino: int) -> None:
        self._pinned.discard(ino)
