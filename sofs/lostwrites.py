"""Writes that could not be stored: who must hear about them, and the record of them.

When the data path (:class:`sofs.fileio.DataPath`) cannot store what was written to a file (the
RING is full, or cannot take the data), it drops that data and puts the file back to its last
complete close or fsync. :class:`LostWrites` then marks every open of the file, so that each
one's next close or fsync fails with the error (as Linux reports a writeback error once to every
file descriptor open at the time), keeps a record per file for the unmount report and
``sofsctl status``, and tells its listeners (the FUSE mount drops the kernel's cached copy of
the lost data, :mod:`fuse_mount.kernelcache`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from chunkstore.clock import Clock

from .errors import FsError
from .handles import HandleTable, OpenFile
from .timestamps import wall_ns

MAX_RECORDS = 1000  # files remembered (the most recent); the count goes on


@dataclasses.dataclass(frozen=True)
class LostWrite:
    """Data written to one file that was not stored."""

    ino: int
    kept_size: int      # the file's size now: its last complete close or fsync
    written_size: int   # the size the writes had given it
    error: str          # why, e.g. "no space left in the RING ..."
    when_ns: int        # wall clock
    open_count: int     # opens told (0: nobody had it open, e.g. a flush at unmount)


class LostWrites:
    """The lost writes of one volume. Thread-safe (``lock`` is the filesystem's)."""

    def __init__(self, handles: HandleTable, lock: threading.RLock, clock: Clock) -> None:
        self._handles = handles
        self._lock = lock
        self._clock = clock
        self._records: dict[int, LostWrite] = {}
        self.total = 0
        self.listeners: list[Callable[[LostWrite], None]] = []

    def record(self, ino: int, kept_size: int, written_size: int, error: FsError) -> None:
        """The data path lost writes of ``ino``: mark its opens, keep the record, tell."""
        with self._lock:
            opens = self._handles.opens_of(ino)
            for h in opens:
                if h.write_error is None:
                    h.write_error = error
            lost = LostWrite(ino, kept_size, written_size, str(error), wall_ns(self._clock),
                             len(opens))
            self._records.pop(ino, None)
            self._records[ino] = lost
            while len(self._records) > MAX_RECORDS:
                del self._records[next(iter(self._records))]
            self.total += 1
            listeners = list(self.listeners)
        for listener in listeners:
            listener(lost)

    def records(self) -> list[LostWrite]:
        """The files that lost writes, oldest first (at most :data:`MAX_RECORDS`)."""
        with self._lock:
            return list(self._records.values())

    def raise_unreported(self, h: OpenFile) -> None:
        """Raise the error of writes lost since this open last reported one (once)."""
        with self._lock:
            error, h.write_error = h.write_error, None
        if error is not None:
            raise type(error)(str(error))

    def reported(self, h: OpenFile) -> None:
        """The open ``h`` just failed with an error of its own: that is its report."""
        with self._lock:
            h.write_error = None
