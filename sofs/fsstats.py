"""What a mounted volume reports about itself: its capacity (statfs) and in-memory state.

Returned by :meth:`sofs.fs.Filesystem.statfs` and :meth:`sofs.fs.Filesystem.statistics`.
"""

from __future__ import annotations

import dataclasses

from .dirents import NAME_MAX


@dataclasses.dataclass(frozen=True)
class StatFs:
    block_size: int
    blocks: int
    blocks_free: int
    files: int
    files_free: int
    name_max: int = NAME_MAX


@dataclasses.dataclass(frozen=True)
class Statistics:
    """A snapshot of a mounted volume's in-memory state (:meth:`Filesystem.statistics`)."""

    open_files: int       # open file handles
    dirty_bytes: int      # written, not yet stored
    cached_inodes: int
    cache_hits: int       # block cache, since the mount
    cache_misses: int

    def as_dict(self) -> dict[str, int]:
        """The fields by name (the control socket's ``stats`` JSON)."""
        return dataclasses.asdict(self)
