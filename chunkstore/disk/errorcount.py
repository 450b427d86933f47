"""Checksum errors a disk has seen: a count that survives restarts, for ``sofsctl df``.

A piece whose record or data does not verify on read (bit rot, a torn or overwritten
container, a missing container file) is counted here by its disk, as are the live records that
compaction drops for failing verification. The count is kept in ``DISK/errors.json`` (replaced
atomically; errors are rare, so one small write each is nothing) with the last error's time and
piece, so an admin sees a disk going bad (like SMART's counters) even after it was repaired.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict

from chunkstore.atomicfile import atomic_write

log = logging.getLogger("sofs.disk")

FILE_NAME = "errors.json"
SEEN_MAX = 10_000  # pieces remembered as counted already (a bad piece read again is not new)


class ChecksumErrors:
    """The checksum-error count of one disk directory. Thread-safe."""

    def __init__(self, disk_dir: str) -> None:
        self._path = os.path.join(disk_dir, FILE_NAME)
        self._lock = threading.Lock()
        self.count = 0
        self.last: str | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        try:
            with open(self._path) as f:
                raw = json.load(f)
            self.count = int(raw.get("checksum_errors", 0))
            self.last = raw.get("last")
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as e:
            log.warning("%s: unreadable (%s); the checksum error count starts again at 0",
                        self._path, e)

    def forget_piece(self, pid: bytes) -> None:
        """:meth:`forget` by piece id (the hex string is made only when something was seen)."""
        if self._seen:
            self.forget(pid.hex())

    def forget(self, piece: str) -> None:
        """The piece was written again: a later failure of it is a new error. (Called on
        every put: nothing to do, and no lock taken, while no bad piece was seen.)"""
        if not self._seen:
            return
        with self._lock:
            self._seen.pop(piece, None)

    def add(self, what: str, n: int = 1, piece: str | None = None) -> None:
        """Count ``n`` errors (``what``: the piece or the container, for the record); a
        ``piece`` already counted by this process is not counted again (every read of a bad
        piece until repair rewrites it would be)."""
        with self._lock:
            if piece is not None:
                if piece in self._seen:
                    return
                self._seen[piece] = None
                while len(self._seen) > SEEN_MAX:
                    self._seen.popitem(last=False)
            self.count += n
            self.last = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {what}"
            body = json.dumps({"checksum_errors": self.count, "last": self.last})
            try:
                atomic_write(self._path, body)
            except OSError as e:  # a full or failing disk: the count stays in memory
                log.warning("%s: cannot record checksum error count: %s", self._path, e)
