"""How much a volume holds and what it costs in the RING (``sofsctl df`` and ``volume show``).

Computed from one volume's metadata by a scan of its inodes (``I``), block maps (``B``),
chunk refcounts (``R``) and the collector's queue (``G``); nothing is read from the RING and
nothing is changed. The figures:

* ``logical_bytes``: the sum of the files' sizes (what ``du --apparent-size`` says);
* ``data_bytes``: the bytes of stored blocks before compression (holes and all-zero blocks
  are not stored, so this can be less than logical);
* ``referenced_bytes``: the chunk bytes the block maps name, a shared chunk once per block;
* ``stored_bytes``: the bytes of the distinct chunks the volume references (after
  compression and dedup: one copy each);
* ``raw_bytes``: ``stored_bytes`` with each chunk's protection (3 copies, or k+m fragments),
  what the disks hold for the volume;
* ``reclaimable_bytes``: chunks no file references any more, waiting for the collector's
  grace period (their raw bytes come back when it deletes them);
* compression ratio ``data / referenced``, dedup ratio ``referenced / stored``.
"""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Callable

from chunkstore import errors as cerr
from chunkstore.placement.keys import ChunkRef

from . import schema
from .inode import Inode
from .metadata import MetaStore


@dataclasses.dataclass(frozen=True)
class VolumeUsage:
    files: int
    directories: int
    other: int          # symlinks, devices, fifos, sockets
    logical_bytes: int
    data_bytes: int
    referenced_bytes: int
    stored_bytes: int
    raw_bytes: int
    chunks: int
    reclaimable_bytes: int
    reclaimable_chunks: int

    @property
    def compression_ratio(self) -> float | None:
        return self.data_bytes / self.referenced_bytes if self.referenced_bytes else None

    @property
    def dedup_ratio(self) -> float | None:
        return self.referenced_bytes / self.stored_bytes if self.stored_bytes else None

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "compression_ratio": self.compression_ratio,
                "dedup_ratio": self.dedup_ratio}


def _raw(ref: ChunkRef) -> float:
    try:
        return ref.size * ref.policy.policy().overhead
    except cerr.ChunkStoreError:
        return float(ref.size)  # a policy this build cannot decode: counted once


def volume_usage(meta: MetaStore, progress: Callable[[str], None] | None = None) -> VolumeUsage:
    """The usage figures of the volume whose metadata is ``meta`` (see the module docstring).
    ``progress(phase)`` is told which scan runs."""
    files = dirs = other = logical = 0
    if progress:
        progress("inodes")
    for key, value in meta.scan(b"I"):
        node = Inode.unpack(schema.parse_ino_key(key), value)
        if node.is_reg:
            files += 1
            logical += node.size
        elif stat.S_ISDIR(node.mode):
            dirs += 1
        else:
            other += 1
    if progress:
        progress("blocks")
    data = referenced = 0
    for _, value in meta.scan(b"B"):
        length, ref_bytes = schema.parse_block_value(value)
        data += length
        try:
            referenced += ChunkRef.from_bytes(ref_bytes).size
        except cerr.FormatError:
            continue  # fsck reports such a block; it stores nothing we can count
    if progress:
        progress("chunks")
    stored = chunks = 0
    raw = 0.0
    waiting: dict[bytes, ChunkRef] = {}
    for key, value in meta.scan(b"R"):
        count, ref_bytes = schema.parse_refcount_value(value)
        try:
            ref = ChunkRef.from_bytes(ref_bytes)
        except cerr.FormatError:
            continue
        if count > 0:
            stored += ref.size
            raw += _raw(ref)
            chunks += 1
        else:
            waiting[bytes(key[1:])] = ref
    reclaim = 0.0
    queued = {schema.parse_gc_key(k)[1] for k, _ in meta.scan(b"G")}
    for ck in queued:
        if ck in waiting:
            reclaim += _raw(waiting[ck])
    return VolumeUsage(files, dirs, other, logical, data, referenced, stored, int(raw), chunks,
                       int(reclaim), len(queued & set(waiting)))
