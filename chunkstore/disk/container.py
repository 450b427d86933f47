"""On-disk container format: append-only files of piece records. Functions only, no state.

A disk keeps its pieces (whole replicas or EC fragments) in append-only container files
``containers/NNNNNNNN.ctr`` (NNNNNNNN = container id, 8 decimal digits). Stored bytes are never
overwritten: a put appends a *put* record, a delete appends a *tombstone* record, and
compaction copies live records into a newer container before the old file is removed.
All integers are big-endian.

File header, 32 bytes, at offset 0 of every container file::

    offset  0  u16   format version (1)          <- version first, always at offset 0
    offset  2  6 B   magic b"SOFCTR"
    offset  8  u64   container id (matches the file name)
    offset 16  12 B  reserved, zero
    offset 28  u32   crc32 of bytes 0..27

Records follow back to back from offset 32 (no padding). Record header, 64 bytes::

    offset  0  4 B   record magic b"SREC"
    offset  4  u8    record version (1)
    offset  5  u8    type: 1 = put, 2 = tombstone
    offset  6  u8    fragment index: 0..k+m-1 for an EC fragment, 0xFF for a whole replica
    offset  7  u8    reserved, zero
    offset  8  20 B  chunk key (blake3-160 of the whole chunk payload)
    offset 28  4 B   policy code (kind, a, b, backend) – see chunkstore.protection.policy
    offset 32  u32   whole-chunk size (payload length of the chunk)
    offset 36  u32   data length (0 for a tombstone)
    offset 40  16 B  blake3-128 checksum of the data (blake3(data).digest(16))
    offset 56  u32   reserved, zero
    offset 60  u32   crc32 of header bytes 0..59
    offset 64  data  (data length bytes)

A record is valid when its header parses (magic, version, type, reserved zero, crc32) and
its data matches the checksum. Scanning (:func:`scan`) resynchronises on the next record
magic after a damaged region, so one damaged record never hides later valid ones; the offset
just past the last valid record is where a torn tail starts.

:func:`create_container` starts a file, :func:`pwritev_all` writes a header or a record at an
offset (the store appends with it), :func:`scan` reads the valid records back.
The test helpers at the bottom name these offsets (:func:`data_offset` etc.) so corruption
tests flip bytes at documented places.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Iterator

import blake3

from chunkstore.atomicfile import fsync_dir
from chunkstore.errors import ChecksumMismatch, FormatError
from chunkstore.protection.policy import PolicyCode

FORMAT_VERSION = 1
FILE_MAGIC = b"SOFCTR"
FILE_HEADER = struct.Struct(">H6sQ12sI")
FILE_HEADER_SIZE = FILE_HEADER.size  # 32

RECORD_MAGIC = b"SREC"
RECORD_VERSION = 1
TYPE_PUT = 1
TYPE_TOMBSTONE = 2
_REC_BODY = struct.Struct(">4sBBBB20s4sII16sI")  # bytes 0..59
RECORD_HEADER_SIZE = _REC_BODY.size + 4  # 64
CHECKSUM_SIZE = 16

# Offsets inside a record header (documented above; used by tests and tools).
OFF_MAGIC = 0
OFF_VERSION = 4
OFF_TYPE = 5
OFF_FRAG = 6
OFF_KEY = 8
OFF_POLICY = 28
OFF_CHUNK_SIZE = 32
OFF_DATA_LEN = 36
OFF_CHECKSUM = 40
OFF_HEADER_CRC = 60

MAX_DATA_LEN = 2**32 - 1


def data_checksum(data: bytes | bytearray | memoryview) -> bytes:
    """blake3-128 of a record's data."""
    return blake3.blake3(data).digest(CHECKSUM_SIZE)


def container_name(cid: int) -> str:
    """File name of container ``cid``: ``NNNNNNNN.ctr``."""
    return f"{cid:08d}.ctr"


def parse_container_name(name: str) -> int | None:
    """Container id from a file name, or None if it is not a container file."""
    if len(name) == 12 and name.endswith(".ctr") and name[:8].isdigit():
        return int(name[:8])
    return None


def container_path(cdir: str, cid: int) -> str:
    """Path of container ``cid`` in directory ``cdir``."""
    return os.path.join(cdir, container_name(cid))


def container_ids(cdir: str) -> list[int]:
    """Ids of the container files in directory ``cdir``, oldest (lowest) first."""
    ids = (parse_container_name(n) for n in os.listdir(cdir))
    return sorted(i for i in ids if i is not None)


def create_container(cdir: str, cid: int) -> None:
    """Create container file ``cid`` in ``cdir`` holding just its file header, durably (file
    and directory synced); FileExistsError if it exists. A failed create leaves no file."""
    path = container_path(cdir, cid)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    try:
        pwritev_all(fd, [encode_file_header(cid)], 0)
        os.fdatasync(fd)
    except OSError:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    fsync_dir(cdir)


def encode_file_header(cid: int) -> bytes:
    """The 32-byte header that starts container ``cid``."""
    body = FILE_HEADER.pack(FORMAT_VERSION, FILE_MAGIC, cid, bytes(12), 0)[:28]
    return body + struct.pack(">I", zlib.crc32(body))


def parse_file_header(data: bytes) -> int:
    """Verify a container file header; returns the container id. Raises FormatError."""
    if len(data) < FILE_HEADER_SIZE:
        raise FormatError("container file header truncated")
    version, magic, cid, reserved, crc = FILE_HEADER.unpack(bytes(data[:FILE_HEADER_SIZE]))
    if version != FORMAT_VERSION:
        raise FormatError(f"unknown container format version {version}")
    if magic != FILE_MAGIC:
        raise FormatError("bad container file magic")
    if zlib.crc32(bytes(data[:28])) != crc:
        raise FormatError("container file header crc mismatch")
    if reserved != bytes(12):
        raise FormatError("container file header reserved bytes not zero")
    return cid


@dataclass(frozen=True, slots=True)
class RecordHeader:
    """Decoded record header (see the module docstring for the layout)."""

    rtype: int
    key: bytes
    frag_idx: int
    policy: bytes  # raw 4-byte policy code (validated for put records)
    chunk_size: int
    data_len: int
    checksum: bytes

    @property
    def record_len(self) -> int:
        """Header plus data."""
        return RECORD_HEADER_SIZE + self.data_len

    @property
    def policy_code(self) -> PolicyCode:
        return PolicyCode.from_bytes(self.policy)


def encode_record_header(
    rtype: int,
    key: bytes,
    frag_idx: int,
    policy: PolicyCode | bytes,
    chunk_size: int,
    data_len: int,
    checksum: bytes,
) -> bytes:
    """The 64-byte header of a record (the data follows it)."""
    pcode = policy.to_bytes() if isinstance(policy, PolicyCode) else bytes(policy)
    if rtype not in (TYPE_PUT, TYPE_TOMBSTONE):
        raise FormatError(f"bad record type {rtype}")
    if len(key) != 20 or len(pcode) != 4 or len(checksum) != CHECKSUM_SIZE:
        raise FormatError("bad key, policy code or checksum length")
    if not 0 <= frag_idx <= 0xFF or not 0 <= data_len <= MAX_DATA_LEN or not 0 <= chunk_size <= MAX_DATA_LEN:
        raise FormatError("record field out of range")
    body = _REC_BODY.pack(
        RECORD_MAGIC, RECORD_VERSION, rtype, frag_idx, 0, key, pcode, chunk_size, data_len, checksum, 0
    )
    return body + struct.pack(">I", zlib.crc32(body))


def encode_record(
    key: bytes,
    frag_idx: int,
    policy: PolicyCode,
    chunk_size: int,
    data: bytes | bytearray | memoryview,
    checksum: bytes | None = None,
) -> tuple[bytes, bytes]:
    """Header and checksum of a put record for ``data`` (write header then data).

    ``checksum``: the data's blake3-128 if the caller has it already (it is trusted, not
    recomputed); None computes it."""
    if checksum is None:
        checksum = data_checksum(data)
    return encode_record_header(TYPE_PUT, key, frag_idx, policy, chunk_size, len(data), checksum), checksum


def encode_tombstone(key: bytes, frag_idx: int, policy: PolicyCode | bytes, chunk_size: int = 0) -> bytes:
    """A complete tombstone record (header only, no data)."""
    return encode_record_header(TYPE_TOMBSTONE, key, frag_idx, policy, chunk_size, 0, data_checksum(b""))


def parse_record_header(data: bytes | memoryview) -> RecordHeader:
    """Parse and verify a 64-byte record header. Raises FormatError."""
    if len(data) < RECORD_HEADER_SIZE:
        raise FormatError("record header truncated")
    raw = bytes(data[:RECORD_HEADER_SIZE])
    (magic, version, rtype, frag, reserved, key, pcode, chunk_size, data_len, checksum, reserved2) = _REC_BODY.unpack(
        raw[:60]
    )
    if magic != RECORD_MAGIC:
        raise FormatError("bad record magic")
    if zlib.crc32(raw[:60]) != struct.unpack(">I", raw[60:])[0]:
        raise FormatError("record header crc mismatch")
    if version != RECORD_VERSION:
        raise FormatError(f"unknown record version {version}")
    if rtype not in (TYPE_PUT, TYPE_TOMBSTONE) or reserved or reserved2:
        raise FormatError("bad record type or non-zero reserved field")
    if rtype == TYPE_PUT:
        PolicyCode.from_bytes(pcode)  # raises FormatError
    elif data_len:
        raise FormatError("tombstone with data")
    return RecordHeader(rtype, key, frag, pcode, chunk_size, data_len, checksum)


def verify_data(header: RecordHeader, data: bytes | memoryview) -> None:
    """Check a record's data against its header. Raises ChecksumMismatch / FormatError."""
    if len(data) != header.data_len:
        raise FormatError(f"record data has {len(data)} bytes, header says {header.data_len}")
    if data_checksum(data) != header.checksum:
        raise ChecksumMismatch("record data checksum mismatch")


@dataclass(frozen=True, slots=True)
class ScannedRecord:
    """A valid record found by :func:`scan` at ``offset`` (data not kept)."""

    offset: int
    header: RecordHeader

    @property
    def end(self) -> int:
        return self.offset + self.header.record_len


class Scan:
    """Iterate the valid records of an open container file from ``start``.

    After iteration: ``valid_end`` is the offset just past the last valid record (where a torn
    tail begins; ``start`` if none), ``file_end`` the file size, and ``skipped`` the number of
    bytes of damaged regions that were skipped between valid records.
    """

    _READ = 1 << 20

    def __init__(self, fd: int, start: int = FILE_HEADER_SIZE) -> None:
        self.fd = fd
        self.start = start
        self.file_end = os.fstat(fd).st_size
        self.valid_end = start
        self.skipped = 0

    def _try_record(self, off: int) -> RecordHeader | None:
        if off + RECORD_HEADER_SIZE > self.file_end:
            return None
        try:
            hdr = parse_record_header(os.pread(self.fd, RECORD_HEADER_SIZE, off))
        except FormatError:
            return None
        if off + hdr.record_len > self.file_end:
            return None
        data = os.pread(self.fd, hdr.data_len, off + RECORD_HEADER_SIZE) if hdr.data_len else b""
        try:
            verify_data(hdr, data)
        except FormatError:
            return None
        return hdr

    def _next_magic(self, off: int) -> int:
        """Offset of the next record magic at or after ``off``, or file_end."""
        while off < self.file_end:
            block = os.pread(self.fd, self._READ + len(RECORD_MAGIC) - 1, off)
            i = block.find(RECORD_MAGIC)
            if i >= 0:
                return off + i
            if len(block) < len(RECORD_MAGIC):
                break
            off += self._READ
        return self.file_end

    def __iter__(self) -> Iterator[ScannedRecord]:
        off = self.start
        while off < self.file_end:
            hdr = self._try_record(off)
            if hdr is None:
                nxt = self._next_magic(off + 1)
                if nxt >= self.file_end:
                    return
                off = nxt
                continue
            if off != self.valid_end:
                self.skipped += off - self.valid_end
            rec = ScannedRecord(off, hdr)
            off = rec.end
            self.valid_end = off
            yield rec


def scan(fd: int, start: int = FILE_HEADER_SIZE) -> Scan:
    """Scan object over the valid records of ``fd`` from ``start`` (see :class:`Scan`)."""
    return Scan(fd, start)


def pwritev_all(fd: int, bufs: list[bytes | bytearray | memoryview], offset: int) -> None:
    """Write all buffers (a file header, or a record's header and data) at ``offset`` of an
    open container file, continuing after short writes; a write of nothing is ENOSPC."""
    views = [memoryview(b).cast("B") for b in bufs if len(b)]
    while views:
        n = os.pwritev(fd, views, offset)
        if n == 0:
            raise OSError(errno.ENOSPC, "short write")
        offset += n
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if n:
            views[0] = views[0][n:]


# -- corruption helpers for tests (named documented offsets) ------------------------------


def header_offset(record_offset: int, field_offset: int = 0) -> int:
    """File offset of a header field of the record that starts at ``record_offset``."""
    return record_offset + field_offset


def data_offset(record_offset: int) -> int:
    """File offset of the first data byte of the record that starts at ``record_offset``."""
    return record_offset + RECORD_HEADER_SIZE


def checksum_offset(record_offset: int) -> int:
    """File offset of the record's blake3-128 checksum."""
    return record_offset + OFF_CHECKSUM


def flip_byte(path: str | os.PathLike, offset: int, mask: int = 0xFF) -> None:
    """XOR one byte of a file in place (test helper for bit-rot)."""
    fd = os.open(path, os.O_RDWR)
    try:
        b = os.pread(fd, 1, offset)
        if len(b) != 1:
            raise ValueError(f"offset {offset} beyond end of {path}")
        os.pwrite(fd, bytes([b[0] ^ mask]), offset)
    finally:
        os.close(fd)
