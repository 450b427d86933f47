"""What the checker hands back: the problem kinds, one :class:`Problem` per inconsistency and
the :class:`FsckReport` of a run (records only; nothing here reads the metadata)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

SUPERBLOCK = "superblock"
BAD_RECORD = "bad-record"
MISSING_INODE = "missing-inode"
DANGLING_ENTRY = "dangling-entry"
ENTRY_WITHOUT_COOKIE = "entry-without-cookie"
COOKIE_WITHOUT_ENTRY = "cookie-without-entry"
DIRECTORY_HARD_LINK = "directory-hard-link"
WRONG_PARENT = "wrong-parent"
ORPHAN_INODE = "orphan-inode"
WRONG_NLINK = "wrong-nlink"
STALE_KEY = "stale-key"
BLOCK_BEYOND_EOF = "block-beyond-eof"
REFCOUNT_MISMATCH = "refcount-mismatch"
REFCOUNT_MISSING = "refcount-missing"
ZERO_REFCOUNT_NOT_QUEUED = "zero-refcount-not-queued"
MISSING_CHUNK = "missing-chunk"
UNREFERENCED_CHUNK = "unreferenced-chunk"

KINDS = (SUPERBLOCK, BAD_RECORD, MISSING_INODE, DANGLING_ENTRY, ENTRY_WITHOUT_COOKIE,
         COOKIE_WITHOUT_ENTRY, DIRECTORY_HARD_LINK, WRONG_PARENT, ORPHAN_INODE, WRONG_NLINK,
         STALE_KEY, BLOCK_BEYOND_EOF, REFCOUNT_MISMATCH, REFCOUNT_MISSING,
         ZERO_REFCOUNT_NOT_QUEUED, MISSING_CHUNK, UNREFERENCED_CHUNK)

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total_or_0)``; the phases are listed in :mod:`sofs.fsck`."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """One inconsistency: its kind (see :mod:`sofs.fsck`), the inode concerned (None for a
    chunk or the superblock), a human-readable detail, and whether this run repaired it."""

    kind: str
    ino: int | None
    detail: str
    repaired: bool


@dataclasses.dataclass(frozen=True)
class FsckReport:
    """What :func:`sofs.fsck.check` counted and found. Counts are of what was read (before
    any repair)."""

    inodes: int
    directories: int
    files: int
    symlinks: int
    blocks: int
    chunks: int            # distinct chunks referenced by blocks
    bytes: int             # total size of the regular files
    problems: tuple[Problem, ...]
    repaired: int
    open_orphans: tuple[int, ...] = ()  # inodes unlinked while open (O): freed at next mount
    # the volume's chunks on the RING that nothing references (``unreferenced-chunk``);
    # None: not looked for (no RING given, or a check of a mounted volume's checkpoint)
    unreferenced: int | None = None
    unreferenced_bytes: int = 0

    @property
    def clean(self) -> bool:
        """No problem, apart from the open-unlinked orphans that the next mount frees and the
        unreferenced chunks (space to reclaim, which a crash may leave: not an inconsistency)."""
        pending = set(self.open_orphans)
        return all((p.kind == ORPHAN_INODE and p.ino in pending and not p.repaired)
                   or p.kind == UNREFERENCED_CHUNK for p in self.problems)

    def count(self, kind: str) -> int:
        return sum(1 for p in self.problems if p.kind == kind)
