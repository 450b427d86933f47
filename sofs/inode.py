"""The inode record: one fixed-size value per file, directory or symlink (schema prefix ``I``).

Layout (little-endian, 61 bytes): version u8 (=1), mode u32, uid u32, gid u32, nlink u32, size u64,
atime_ns i64, mtime_ns i64, ctime_ns i64, rdev u32, generation u32, flags u32.

``flags``: bits 0-2 and 16-31 are WORM's (:mod:`sofs.worm.records`); bit 3 is :data:`TRASHED`
(:mod:`sofs.trash`).
"""

import dataclasses
import stat
import struct

from .errors import FsError

TRASHED = 1 << 3  # a file in the trash (sofs.trash): no name, kept until purged

_FORMAT = struct.Struct("<BIIIIQqqqIII")
_VERSION = 1

ROOT_INO = 1


@dataclasses.dataclass(slots=True)
class Inode:
    """One inode; a mutable record that the filesystem updates and writes back in a batch."""

    ino: int
    mode: int
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    size: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    rdev: int = 0
    generation: int = 0
    flags: int = 0

    def pack(self) -> bytes:
        return _FORMAT.pack(_VERSION, self.mode, self.uid, self.gid, self.nlink, self.size,
                            self.atime_ns, self.mtime_ns, self.ctime_ns, self.rdev,
                            self.generation, self.flags)

    @classmethod
    def unpack(cls, ino: int, value: bytes) -> "Inode":
        if len(value) != _FORMAT.size or value[0] != _VERSION:
            raise FsError(f"inode {ino}: unreadable record ({len(value)} bytes)")
        fields = _FORMAT.unpack(value)
        return cls(ino, *fields[1:])

    def copy(self) -> "Inode":
        return dataclasses.replace(self)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)
