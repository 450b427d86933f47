"""Volume root records: the one small, mutable, versioned record per volume in the RING.

Chunks are immutable and content-addressed, so the RING has no place for a pointer that
changes. A root record is that pointer: ``(volume_id, seq, body)``, where the layer above puts
"the newest checkpoint of this volume is manifest X" in ``body`` and raises ``seq`` with each
new checkpoint. It survives the loss of the client host and is found knowing only the
cluster.

Rules (the same on every store: DiskStore, RemoteDisk, RingStore, MemoryChunkStore):

* a record with a higher ``seq`` replaces the one held; a lower one is ignored; the same seq
  with the same body is an idempotent no-op, with another body a KeyConflict;
* ``volume_id`` is 16 bytes (a UUID's bytes), ``seq`` 1..2**63-1, ``body`` at most
  ROOT_MAX_BODY bytes; anything else is a FormatError.

Placement: the record of a volume is written to the owners of :func:`root_key` (a 20-byte
ring key, like a chunk key) with width ``min(ROOT_WIDTH, placing disks)``; an owner that fails
is replaced by the next disks of the key's walk (as for hinted handoff); the put succeeds once
a majority of that width holds exactly its seq. Reads ask every available disk and take the
highest seq, so a record is found after rebalances and disk replacements (the repair sweep
does not move records: the next put rewrites the owners). A put that failed (NotEnoughDisks)
may still have left its record on some disks, and a later read may return it: the caller
treats a failed put as "unknown" and retries it (same seq and body: idempotent) or moves on
to a higher seq.

On a disk, one file per volume: ``<disk dir>/roots/<volume_id hex>``, replaced atomically
(temp file, fsync, rename, fsync of the directory). Its encoding (all integers big-endian)::

    offset 0    magic     8 B   b"SOFSROOT"
    offset 8    version   u8    1
    offset 9    volume_id 16 B
    offset 25   seq       u64   1..2**63-1
    offset 33   body_len  u32   0..ROOT_MAX_BODY
    offset 37   body      body_len bytes
    then        checksum  16 B  blake3-128 of every byte before it

A record that does not decode (short, bad magic or version, bad checksum, fields out of range)
raises ChunkCorrupt; a DiskStore ``put_root`` replaces such a file with the new record.
"""

from __future__ import annotations

import hmac
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import blake3

from chunkstore.errors import ChunkCorrupt, FormatError

ROOT_MAX_BODY = 64 * 1024
ROOT_WIDTH = 5  # disks a root record is written to (fewer if the ring has fewer)
VOLUME_ID_SIZE = 16
MAX_SEQ = 2**63 - 1
ROOT_MAGIC = b"SOFSROOT"
ROOT_FORMAT_VERSION = 1
_KEY_CONTEXT = b"sofs-volume-root\0"
_HEAD = struct.Struct(">8sB16sQI")
_CHECKSUM_SIZE = 16
#: the largest encoded record (what a reader of a record file needs to read at most)
MAX_RECORD_SIZE = _HEAD.size + ROOT_MAX_BODY + _CHECKSUM_SIZE


def check_volume_id(volume_id: bytes) -> bytes:
    """``volume_id`` as bytes if it is 16 bytes long, else FormatError."""
    if not isinstance(volume_id, (bytes, bytearray, memoryview)) or len(volume_id) != VOLUME_ID_SIZE:
        raise FormatError(f"a volume id is exactly {VOLUME_ID_SIZE} bytes (a UUID's bytes), got {volume_id!r}")
    return bytes(volume_id)


def check_seq(seq: int) -> int:
    """``seq`` if it is an int in 1..2**63-1, else FormatError."""
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise FormatError(f"a root record sequence number is 1..{MAX_SEQ}, got {seq!r}")
    return seq


def is_log_record(volume_id: bytes) -> bool:
    """Whether ``volume_id`` names a *log record* rather than a volume: ids whose UUID version
    nibble and variant bits are zero (never a volume's: volumes have UUID4s) are the slots of
    a volume's metadata journal (:mod:`sofs.journal`). Their writer never needs a slot's
    previous version back once it writes a new one (it was trimmed), so a disk writes them in
    place with one data sync instead of an atomic replace; a write torn by a crash reads as
    corrupt and is skipped (it was never acknowledged: a majority did not answer)."""
    return (isinstance(volume_id, (bytes, bytearray)) and len(volume_id) == VOLUME_ID_SIZE
            and volume_id[6] >> 4 == 0 and volume_id[8] >> 6 == 0)


def record_width(volume_id: bytes, placing: int) -> int:
    """How many disks a record of this id is written to: ROOT_WIDTH for a volume's root
    record; a log record's id carries the width its writer chose in the low nibble of its
    version byte (1..15; 0: ROOT_WIDTH), so that a journal is protected like its volume's
    small objects; never more than the PLACING disks. Its write quorum is a majority."""
    width = volume_id[6] & 0x0F if is_log_record(volume_id) else 0
    return max(1, min(width or ROOT_WIDTH, placing))


def root_key(volume_id: bytes) -> bytes:
    """The 20-byte placement key of a volume's root record."""
    return blake3.blake3(_KEY_CONTEXT + check_volume_id(volume_id)).digest(20)


@dataclass(frozen=True)
class RootRecord:
    """One version of a volume's root record (fields validated: FormatError)."""

    volume_id: bytes
    seq: int
    body: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "volume_id", check_volume_id(self.volume_id))
        check_seq(self.seq)
        if not isinstance(self.body, (bytes, bytearray, memoryview)) or len(self.body) > ROOT_MAX_BODY:
            raise FormatError(f"a root record body is bytes of at most {ROOT_MAX_BODY} bytes")
        object.__setattr__(self, "body", bytes(self.body))

    def encode(self) -> bytes:
        """The on-disk encoding (see module docstring)."""
        raw = _HEAD.pack(ROOT_MAGIC, ROOT_FORMAT_VERSION, self.volume_id, self.seq, len(self.body)) + self.body
        return raw + blake3.blake3(raw).digest(_CHECKSUM_SIZE)

    @classmethod
    def decode(cls, raw: bytes) -> "RootRecord":
        """Parse and verify an encoded record; ChunkCorrupt if it does not decode."""
        raw = bytes(raw)
        if len(raw) < _HEAD.size + _CHECKSUM_SIZE:
            raise ChunkCorrupt(f"root record of {len(raw)} bytes is too short")
        magic, version, volume_id, seq, n = _HEAD.unpack_from(raw)
        if magic != ROOT_MAGIC:
            raise ChunkCorrupt("not a root record (bad magic)")
        if len(raw) != _HEAD.size + n + _CHECKSUM_SIZE:
            raise ChunkCorrupt(f"root record is {len(raw)} bytes, its header says {_HEAD.size + n + _CHECKSUM_SIZE}")
        body_end = _HEAD.size + n
        if not hmac.compare_digest(blake3.blake3(raw[:body_end]).digest(_CHECKSUM_SIZE), raw[body_end:]):
            raise ChunkCorrupt("root record does not match its checksum")
        if version != ROOT_FORMAT_VERSION:
            raise ChunkCorrupt(f"root record of unsupported format version {version}")
        try:
            return cls(volume_id, seq, raw[_HEAD.size : body_end])
        except FormatError as e:
            raise ChunkCorrupt(f"root record out of range: {e}") from None


def newest(records: Iterable[RootRecord]) -> RootRecord | None:
    """The record with the highest seq; among different bodies of that seq (two writers
    raced), the one most copies carry (the first seen on a tie). None for no records."""
    records = list(records)
    if not records:
        return None
    top = max(r.seq for r in records)
    candidates = [r for r in records if r.seq == top]
    counts = Counter(r.body for r in candidates)
    best = max(counts.values())
    return next(r for r in candidates if counts[r.body] == best)


def merge_seqs(listings: Iterable[Iterable[tuple[bytes, int]]]) -> dict[bytes, int]:
    """volume_id -> highest seq over several (volume_id, seq) listings."""
    out: dict[bytes, int] = {}
    for listing in listings:
        for volume_id, seq in listing:
            if seq > out.get(volume_id, 0):
                out[volume_id] = seq
    return out
