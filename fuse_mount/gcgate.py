"""The garbage-collection gate of a data directory: ``run/gc.lock``, a file lock.

Every mount of an embedded data directory takes it shared (without waiting) around each
garbage-collection pass, and skips the pass when it cannot; the ring host takes it exclusive
while a ``disk add`` moves pieces (a chunk deleted then would keep the pieces still on its old
owners, since deletes go to the new ones), waiting for running passes to end. The kernel
holds the lock, so a process that dies gives it back.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

GATE_FILE = "run/gc.lock"


def _open(data_dir: Path) -> int:
    path = Path(data_dir) / GATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


@contextlib.contextmanager
def pass_allowed(data_dir: Path) -> Iterator[bool]:
    """Hold the gate shared for one pass: yields False (hold nothing) while a disk add runs."""
    fd = _open(data_dir)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextlib.contextmanager
def closed(data_dir: Path) -> Iterator[None]:
    """No garbage-collection pass runs in any mount inside this block (entering waits for
    the running ones)."""
    fd = _open(data_dir)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
