"""fsck of a mounted volume: the checker run on a point-in-time checkpoint of its metadata.

A live filesystem cannot be scanned key by key (an operation landing between two scans would
look like damage), and rocksdict's snapshot iterators do not honour the snapshot. So the mount
process takes a rocksdb *checkpoint* of the volume's metadata (hard links to the SST files plus
a flushed memtable: cheap, and consistent because every filesystem operation is one
WriteBatch), and :func:`sofs.fsck.check` reads that copy, without repairing anything.

While the check runs the garbage collector is paused, so a chunk referenced at the checkpoint
is still in the store when the checker probes it: a ``missing-chunk`` is real. ``W`` marks of
files being written are normal on a live volume and are not reported (as offline). Repairs
need the volume unmounted (``sofsctl fsck --repair``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from chunkstore.api import ChunkStore

from .fs import Filesystem
from .fsck import FsckReport, Progress, check
from .metadata import MetaStore

CHECKPOINT_DIR = "fsck-checkpoint"


def check_mounted(fs: Filesystem, store: ChunkStore | None, *,
                  progress: Progress | None = None) -> FsckReport:
    """Check the volume ``fs`` serves, against ``store``, while it stays in use."""
    where = Path(fs.meta.path).parent / CHECKPOINT_DIR
    with fs.gc_paused():
        shutil.rmtree(where, ignore_errors=True)  # left by a check that was killed
        fs.meta.checkpoint(where)
        try:
            copy = MetaStore(where)
            try:
                return check(copy, store, block_size=fs.config.block_size, progress=progress)
            finally:
                copy.close()
        finally:
            shutil.rmtree(where, ignore_errors=True)
