"""Open files of a mounted volume: file handle numbers and what each open is (:class:`OpenFile`).

The handle table counts the opens of each inode in the :class:`~sofs.inodes.InodeTable` (an
inode unlinked while open lives on until its last close). Not thread-safe: callers hold the
filesystem's lock.
"""

from __future__ import annotations

import dataclasses

from .errors import BadFileHandle, FsError
from .inodes import InodeTable


@dataclasses.dataclass
class OpenFile:
    """One open of a file (a file handle): its inode, open flags, and where the previous read
    ended (to detect sequential access)."""

    ino: int
    flags: int
    last_end: int = -1
    # writes lost since this open last reported it (sofs.lostwrites): its next close or fsync
    write_error: FsError | None = None


class HandleTable:
    """File handle numbers -> :class:`OpenFile`."""

    def __init__(self, inodes: InodeTable) -> None:
        self._inodes = inodes
        self._open: dict[int, OpenFile] = {}
        self._next = 1

    def open(self, ino: int, flags: int) -> int:
        """A new handle for an open of ``ino``."""
        fh = self._next
        self._next += 1
        self._open[fh] = OpenFile(ino, flags)
        self._inodes.opened(ino)
        return fh

    def get(self, fh: int) -> OpenFile:
        h = self._open.get(fh)
        if h is None:
            raise BadFileHandle(f"file handle {fh} is not open")
        return h

    def opens_of(self, ino: int) -> list[OpenFile]:
        """Every open of ``ino`` (a scan: for rare events)."""
        return [h for h in self._open.values() if h.ino == ino]

    def close(self, fh: int) -> int:
        """End the open ``fh``; how many opens of its inode are left."""
        h = self._open.pop(fh)
        return self._inodes.closed(h.ino)

    def __len__(self) -> int:
        return len(self._open)
