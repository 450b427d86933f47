"""fallocate(2) in the SOFS layer: which modes it takes, the space an allocation needs, and
which blocks a punched hole touches.

Blocks of zeros are holes (:mod:`sofs.chunkio`): nothing is stored for them, so there is nothing
to reserve either. The modes :meth:`sofs.fs.Filesystem.fallocate` takes:

* ``0``: the range will be written, so the RING must have room for it (:func:`check_space`,
  else NoSpace); past the end of file the size grows and the new bytes read as zeros;
* ``FALLOC_FL_KEEP_SIZE``: the same check, the size stays;
* ``FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE``: the range (within the size) reads as zeros:
  whole blocks become holes and their chunks are released to the collector, the blocks at its
  edges are rewritten (:class:`HolePlan`, :meth:`sofs.fileio.DataPath.fallocate`); the size
  stays.

Every one changes mtime and ctime, as Linux does (ext4 leaves a punch that starts past the end
of file alone), and is committed with sync: once it returns it survives a crash. Other modes
(COLLAPSE_RANGE, ZERO_RANGE, INSERT_RANGE, UNSHARE_RANGE, a punch without KEEP_SIZE) are
NotSupported (EOPNOTSUPP), as an application that falls back to writing zeros expects.

The checks come in the order of the kernel's ``vfs_fallocate`` (which makes them all first on a
FUSE mount): the range, the mode, the handle's access mode, the file's type. A file that is
neither regular nor a directory is InvalidArgument here, as for truncate (the kernel answers
ESPIPE for a FIFO and ENODEV for a device before the mount is asked).
"""

from __future__ import annotations

import dataclasses
import math
import os

from chunkstore.api import Capacity
from chunkstore.protection.policy import Protection

from .errors import BadFileHandle, InvalidArgument, IsADirectory, NoSpace, NotSupported
from .filedata import FileBuffers
from .inode import Inode

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
SUPPORTED_MODES = frozenset({0, FALLOC_FL_KEEP_SIZE,
                             FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE})
MAX_FILE_SIZE = 2**63 - 1  # an off_t


def parse_request(mode: int, offset: int, length: int, node: Inode,
                  flags: int) -> tuple[bool, bool]:
    """(punch, grow) for fallocate(2) of ``node`` through a handle opened with ``flags``; the
    file layer's error for a call it refuses."""
    if offset < 0 or length <= 0:
        raise InvalidArgument("fallocate needs offset >= 0 and length > 0")
    if mode not in SUPPORTED_MODES:
        raise NotSupported(f"fallocate mode {mode:#x}")
    if flags & os.O_ACCMODE == os.O_RDONLY:
        raise BadFileHandle("fallocate of a file not open for writing")
    if node.is_dir:
        raise IsADirectory("fallocate of a directory")
    if not node.is_reg:
        raise InvalidArgument("fallocate of a file that is not a regular file")
    if offset + length > MAX_FILE_SIZE:
        raise InvalidArgument("fallocate past the largest file size")
    return bool(mode & FALLOC_FL_PUNCH_HOLE), not mode & FALLOC_FL_KEEP_SIZE


def raw_space_needed(protection: Protection, block_size: int, offset: int, length: int) -> int:
    """Raw bytes the RING needs to store [offset, offset + length) once it is written: each
    block of the range as a chunk of the bytes it gets, incompressible, under the policy for
    that size (copies below the small-object threshold, else the large policy)."""

    def cost(n: int) -> int:
        return math.ceil(n * protection.for_size(n).overhead)

    bs = block_size
    first, last = offset // bs, (offset + length - 1) // bs
    if first == last:
        return cost(length)
    head, tail = (first + 1) * bs - offset, offset + length - last * bs
    return cost(head) + (last - first - 1) * cost(bs) + cost(tail)


def check_space(capacity: Capacity, protection: Protection, block_size: int, offset: int,
                length: int) -> None:
    """NoSpace unless the RING's free bytes hold :func:`raw_space_needed` of the range."""
    need = raw_space_needed(protection, block_size, offset, length)
    if need > capacity.free_bytes:
        raise NoSpace(f"fallocate of {length} bytes needs {need} raw bytes, "
                      f"{capacity.free_bytes} are free")


@dataclasses.dataclass(frozen=True)
class HolePlan:
    """The blocks that zeroing [offset, end) touches in a file of some size (computed by
    :meth:`of`, which clips the range to the size): the whole blocks [first_whole, end_whole)
    become holes (the last block of the file counts as whole when the range reaches the end of
    file); the ``edges`` (at most two) keep their bytes outside the range."""

    offset: int
    end: int
    first_whole: int
    end_whole: int
    edges: tuple[int, ...]
    block_size: int

    @classmethod
    def of(cls, offset: int, end: int, size: int, block_size: int) -> "HolePlan":
        bs = block_size
        end = min(end, size)
        if offset >= end:
            return cls(offset, offset, 0, 0, (), bs)
        first_whole = -(-offset // bs)
        end_whole = -(-size // bs) if end >= size else end // bs
        edges = sorted({i for i in (offset // bs, (end - 1) // bs)
                        if not first_whole <= i < end_whole})
        return cls(offset, end, first_whole, end_whole, tuple(edges), bs)

    def zero(self, fb: FileBuffers) -> int:
        """Zero the range in the dirty blocks of ``fb`` (caller holds the filesystem's lock):
        those of whole blocks are dropped (the caller unmaps their stored versions), the edges
        are cleared in place. Returns the dirty bytes dropped."""
        bs = self.block_size
        dropped = 0
        for index in [i for i in fb.dirty if i * bs < self.end and (i + 1) * bs > self.offset]:
            if self.first_whole <= index < self.end_whole:
                buf = fb.dirty.pop(index)
                fb.dirty_bytes -= len(buf)
                dropped += len(buf)
                continue
            buf = fb.dirty[index]
            lo = max(self.offset - index * bs, 0)
            hi = min(self.end - index * bs, len(buf))
            if lo < hi:
                buf[lo:hi] = bytes(hi - lo)
        return dropped
