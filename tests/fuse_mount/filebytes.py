"""File contents for the mount tests: reproducible data without zero blocks, the expected
bytes after a hole is punched, and a file read back from the filesystem (not the page cache)."""

from __future__ import annotations

import os
from pathlib import Path

MIB = 1 << 20


def pattern(n: int, seed: int = 1) -> bytes:
    """n bytes without a zero block (os.urandom would do, but this is reproducible)."""
    unit = bytes((i * 7 + seed * 13) % 251 + 1 for i in range(4093))
    return (unit * (n // len(unit) + 1))[:n]


def zeroed(data: bytes, offset: int, length: int) -> bytes:
    """``data`` with ``length`` bytes from ``offset`` zeroed (what a punched hole reads as)."""
    out = bytearray(data)
    end = min(offset + length, len(out))
    out[offset:end] = bytes(max(end - offset, 0))
    return bytes(out)


def read_uncached(path: Path, flags: int = 0) -> bytes:
    """The file's bytes from the filesystem: its cached pages are dropped first."""
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        chunks = []
        while chunk := os.read(fd, 4 * MIB):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
