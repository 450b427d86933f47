"""The rocksdict key schema of a disk's piece index – its canonical reference.

One rocksdict database per disk, in ``DISK_DIR/index/``, opened in raw mode (bytes keys and
values). Keys are told apart by length.

Piece entries – key: piece id, 21 bytes = chunk key (20 B) + fragment index (1 B, 0xFF for a
whole replica). Value, version 1, 41 bytes, big-endian::

    offset  0  u8    entry version (1)
    offset  1  u32   container id
    offset  5  u64   record offset in the container file (start of the record header)
    offset 13  u32   data length
    offset 17  16 B  blake3-128 checksum of the data
    offset 33  4 B   policy code
    offset 37  u32   whole-chunk size

Metadata keys (never 21 bytes long):

    b"meta:hwm"   high-water mark, ``>BIQ`` (version 1, container id, offset): every record of
                  the containers before this point is reflected in the index. Written in the
                  same WriteBatch as the entries it covers; recovery scans from here.
    b"meta:putfloor"  f64 (unix seconds, big-endian): since when put times are kept on this
                  disk (written at the first open that keeps them).
    b"t:" + piece id  (23 bytes) f64: when a put of the piece last landed, by the disk's clock
                  (an idempotent re-put too). Read by conditional deletes (DiskStore.delete).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable, Iterator

from chunkstore.errors import FormatError
from chunkstore.protection.policy import PolicyCode

PIECE_ID_SIZE = 21
HWM_KEY = b"meta:hwm"
_ENTRY = struct.Struct(">BIQI16s4sI")
_HWM = struct.Struct(">BIQ")
ENTRY_VERSION = 1


def piece_id(key: bytes, frag_idx: int) -> bytes:
    """Index key of a piece: chunk key + fragment index byte."""
    if len(key) != 20 or not 0 <= frag_idx <= 0xFF:
        raise FormatError("bad chunk key or fragment index")
    return key + bytes((frag_idx,))


@dataclass(frozen=True, slots=True)
class PieceInfo:
    """Where and what one stored piece is (also the piece descriptor of ``DiskStore.pieces``)."""

    key: bytes
    frag_idx: int
    container: int
    offset: int
    length: int
    checksum: bytes
    policy: PolicyCode
    chunk_size: int

    @property
    def pid(self) -> bytes:
        return self.key + bytes((self.frag_idx,))

    def encode_value(self) -> bytes:
        return _ENTRY.pack(
            ENTRY_VERSION, self.container, self.offset, self.length, self.checksum, self.policy.to_bytes(), self.chunk_size
        )

    @classmethod
    def decode(cls, pid: bytes, value: bytes) -> "PieceInfo":
        if len(pid) != PIECE_ID_SIZE or len(value) != _ENTRY.size:
            raise FormatError("bad index entry size")
        version, cid, off, length, checksum, pcode, chunk_size = _ENTRY.unpack(value)
        if version != ENTRY_VERSION:
            raise FormatError(f"unknown index entry version {version}")
        return cls(pid[:20], pid[20], cid, off, length, checksum, PolicyCode.from_bytes(pcode), chunk_size)


PUT_FLOOR_KEY = b"meta:putfloor"
_TIME = struct.Struct(">d")


def put_time_key(pid: bytes) -> bytes:
    """Index key of a piece's last put time."""
    return b"t:" + pid


def encode_put_time(t: float) -> bytes:
    return _TIME.pack(t)


def decode_put_time(value: bytes) -> float:
    if len(value) != _TIME.size:
        raise FormatError("bad put time")
    return float(_TIME.unpack(value)[0])


def encode_hwm(cid: int, offset: int) -> bytes:
    return _HWM.pack(1, cid, offset)


def decode_hwm(value: bytes) -> tuple[int, int]:
    if len(value) != _HWM.size or value[0] != 1:
        raise FormatError("bad high-water mark")
    _, cid, off = _HWM.unpack(value)
    return cid, off


def iter_pieces(items: Iterable[tuple[object, object]]) -> Iterator[PieceInfo]:
    """The piece entries among an index's (key, value) pairs (``db.items()``), decoded;
    metadata keys are skipped."""
    for pid, value in items:
        if isinstance(pid, bytes) and len(pid) == PIECE_ID_SIZE and isinstance(value, bytes):  # raw mode: always bytes
            yield PieceInfo.decode(pid, value)
