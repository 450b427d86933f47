"""The superblock of a volume's metadata (``S`` keys, :mod:`sofs.schema`): the format version,
the mount count (which gives each mount its inode generation), and the counters that hand out
inode numbers and readdir cookies from reserved ranges."""

from __future__ import annotations

import dataclasses
import stat

from . import schema
from .errors import FsError
from .inode import ROOT_INO, Inode
from .metadata import Batch, MetaStore

FIRST_COOKIE = 3   # 1 and 2 are "." and ".."
ID_RESERVE = 4096


class ReservedCounter:
    """Numbers (inodes, readdir cookies) handed out from reserved ranges: the range's ceiling
    is persisted (in the batch of the operation that first needs it) before a number of it is
    used, so a crash skips numbers but never reuses one. The caller holds the filesystem lock."""

    def __init__(self, key: bytes, first: int) -> None:
        self.key = key
        self.next = self.ceiling = first

    def take(self, b: Batch) -> int:
        if self.next >= self.ceiling:
            self.ceiling = self.next + ID_RESERVE
            b.put(self.key, schema.le_u64(self.ceiling))
        n = self.next
        self.next += 1
        return n


@dataclasses.dataclass(frozen=True)
class Superblock:
    """What a mount reads from the superblock."""

    generation: int          # this mount's number, low 32 bits: new inodes carry it
    inos: ReservedCounter
    cookies: ReservedCounter


def mount_superblock(meta: MetaStore, now_ns: int, *, read_only: bool = False) -> Superblock:
    """Count one more mount, creating the superblock and the root directory (dated
    ``now_ns``) of a new volume; FsError for a metadata format this code does not know.
    ``read_only``: read the superblock, write nothing (a snapshot's view)."""
    b = meta.batch()
    fmt = meta.get(schema.SUPER_FORMAT)
    if fmt is None:
        root = Inode(ROOT_INO, stat.S_IFDIR | 0o755, 0, 0, 2, 0, now_ns, now_ns, now_ns)
        b.put(schema.inode_key(ROOT_INO), root.pack())
        b.put(schema.SUPER_FORMAT, schema.le_u64(schema.SCHEMA_VERSION))
        b.put(schema.SUPER_NEXT_INO, schema.le_u64(ROOT_INO + 1))
        b.put(schema.SUPER_NEXT_COOKIE, schema.le_u64(FIRST_COOKIE))
        b.put(schema.SUPER_MOUNTS, schema.le_u64(0))
    else:
        version = schema.parse_le_u64(fmt)
        if version != schema.SCHEMA_VERSION:
            raise FsError(f"metadata schema version {version} is not supported")
    mounts = _counter(b, schema.SUPER_MOUNTS) + 1
    b.put(schema.SUPER_MOUNTS, schema.le_u64(mounts))
    sb = Superblock(mounts & 0xFFFFFFFF,
                    ReservedCounter(schema.SUPER_NEXT_INO, _counter(b, schema.SUPER_NEXT_INO)),
                    ReservedCounter(schema.SUPER_NEXT_COOKIE,
                                    _counter(b, schema.SUPER_NEXT_COOKIE)))
    if not read_only:
        meta.commit(b, sync=True)
    return sb


def _counter(b: Batch, key: bytes) -> int:
    value = b.get(key)
    if value is None:
        raise FsError(f"the superblock lacks {key!r}: run sofsctl fsck --repair")
    return schema.parse_le_u64(value)
