"""Records a disk reports about itself: usage and compaction results.

They cross the wire (chunkstore.net) and reach the ring clients and the CLI, so they live apart
from the disk engine (no rocksdict here).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DiskStats:
    """Usage of one disk. ``dead_bytes`` are container bytes no live piece uses."""

    used_bytes: int
    live_pieces: int
    live_bytes: int
    dead_bytes: int
    containers: int
    fs_total_bytes: int
    fs_free_bytes: int
    fs_dev: int
    checksum_errors: int = 0  # pieces that failed verification on this disk, ever


@dataclass(frozen=True)
class CompactReport:
    containers_removed: int
    records_moved: int
    bytes_reclaimed: int
    pieces_dropped: int  # live records that failed verification and were unindexed
