"""Replacing a state file atomically and durably: the one helper every layer uses.

A state file (a cluster config, a map, a volume's config, a checkpoint's place, a healer's
state) is either its old content or its new content after a crash or power cut, never a mix
and never empty: the new bytes go to a temporary file in the same directory, which is
fsynced, renamed over the old name, and then the directory is fsynced so that the rename
itself is on stable storage.
"""

from __future__ import annotations

import os
import tempfile


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync directory ``path`` (makes renames and creations in it durable)."""
    fd = os.open(os.fspath(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` (str is written as UTF-8), with file mode ``mode``.

    The temporary file is removed if anything fails before the rename; the old file is then
    untouched. Raises OSError (for example ENOSPC) from the write, fsync or rename.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    raw = data.encode() if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        view = memoryview(raw)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)
