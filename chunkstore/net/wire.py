"""The node wire protocol, version 1: frames, their validation, the handshake, and thin I/O shells.

Everything above the I/O helpers at the bottom is pure (bytes in, values out); the decoder
raises :class:`WireError` – and nothing else – for any input that is not a valid frame.
All integers are big-endian and unsigned unless marked ``i64``.

Frame
=====

Every frame, in both directions, is a 12-byte header followed by ``body_len`` bytes::

    offset 0   version   u8    1 (WIRE_VERSION); anything else is refused
    offset 1   kind      u8    1 REQUEST, 2 RESPONSE, 3 ITEM (one element of a stream),
                               4 END (end of a stream), 5 ERROR
    offset 2   op        u8    operation (table below); an ERROR frame may carry op 0 when the
                               request it answers could not be parsed
    offset 3   flags     u8    reserved, must be 0
    offset 4   req_id    u32   chosen by the client; every answer frame repeats it
    offset 8   body_len  u32   bytes after the header

Hard limits, checked on the header alone (before any body byte is read): a whole frame is at
most MAX_FRAME (80 MiB); each (kind, op) has a minimum and maximum body length (tables below),
so a frame whose length cannot be right is refused without reading it; piece data is at most
MAX_DATA (65 MiB: the largest piece is a replica of a 64 MiB block plus its header). The
body must then parse to exactly ``body_len`` bytes.

A client may pipeline: send several requests on one connection without waiting; the node may
answer them in any order, each answer names its request by ``req_id``. One request, one
answer (RESPONSE or ERROR) – except PIECES, answered by zero or more ITEM frames then one END
frame (or an ERROR frame, which also ends the stream).

Common fields::

    disk      u8 length n (1..64) + n bytes, ASCII letters, digits and ``. _ : -`` (disk id)
    node      same rules as disk (node id)
    key       20 B chunk key
    frag      u8 fragment index: 0..15 (EC fragment) or 255 (whole replica)
    policy    4 B policy code (chunkstore.protection.policy.PolicyCode, validated)
    checksum  16 B blake3-128 of the data that follows it (end-to-end check)
    piece     61 B: key 20 B, frag u8, container u32, offset u64, length u32,
              checksum 16 B, policy 4 B, chunk_size u32   (chunkstore.disk.index.PieceInfo)

Operations (op: request body -> response body)::

     1 HELLO    magic "SOFS" 4 B + client nonce 32 B  ->  node nonce 32 B + node proof 32 B
     2 AUTH     client proof 32 B                     ->  node
     3 PING     epoch u64 (sender's cluster-map epoch) -> epoch u64 (node's) + node
     4 MAP_GET  (empty)                               ->  the node's cluster map, JSON
                                                          (chunkstore.placement.clustermap), 0..1 MiB;
                                                          empty if it has none
     5 MAP_PUT  cluster map JSON, 1 B..1 MiB          ->  epoch u64 (node's, after: a newer
                                                          valid map of its cluster is kept)
    16 PUT      disk, key, frag, policy, chunk_size u32, checksum, data (rest of the body)
                                                      ->  (empty)
    17 GET      disk, key, frag, flags u8 (bit 0 = verify on disk; other bits 0)
                                                      ->  checksum, data (rest of the body)
    18 DELETE   disk, key, frag                       ->  (empty)
    19 HAS      disk, key, frag                       ->  u8 0 | 1
    20 PIECE    disk, key, frag                       ->  u8 0 (none) | u8 1 + piece
    21 PIECES   disk                                  ->  ITEM*: count u16 (1..1024) + count
                                                          pieces; then END: total u64
    22 STATS    disk                                  ->  8 x i64: used_bytes, live_pieces,
                                                          live_bytes, dead_bytes, containers,
                                                          fs_total_bytes, fs_free_bytes, fs_dev
    23 COMPACT  disk, min_dead_ratio f64 (0..1)       ->  4 x u64: containers_removed,
                                                          records_moved, bytes_reclaimed,
                                                          pieces_dropped
    24 CHECK    disk                                  ->  (empty)   (DiskStore.check_alive)
    25 ROOT_PUT disk, volume_id 16 B, seq u64 (1..2**63-1), body (rest, 0..64 KiB)
                                                      ->  seq u64: the seq the disk holds
                                                          after (higher than ours: stale)
    26 ROOT_GET disk, volume_id 16 B                  ->  u8 0 (none) | u8 1 + seq u64 + body
                                                          (rest, 0..64 KiB)
    27 ROOT_LIST disk                                 ->  count u32 (0..65536) + count x
                                                          (volume_id 16 B, seq u64)

Volume root records (chunkstore.roots): ROOT_PUT / ROOT_GET / ROOT_LIST call the disk's
DiskStore.put_root / get_root / list_roots. A disk holding more than MAX_ROOTS (65,536)
records answers ROOT_LIST with ERROR FormatError.

Cluster-map epochs: a PING records the sender's epoch on the connection. Once a node holds a
map (epoch E > 0), a disk request on a connection whose recorded epoch is below E is answered
ERROR StaleMap: the client fetches the newer map, recomputes placement and retries.

A PUT whose policy is replication must use frag 255, an EC PUT a frag below k+m. The
receiver of PUT data and of GET data recomputes blake3-128 and refuses a mismatch
(WireError): such bytes are never stored or returned.

ERROR body: code u16 + message length u16 (0..1024) + UTF-8 message. Codes map 1:1 to
exception classes (ERROR_CODES): 1 WireError, 2 AuthError, 3 ChunkNotFound, 4 ChunkCorrupt,
5 KeyConflict, 6 DiskFull, 7 DiskUnavailable, 8 FormatError, 9 ChecksumMismatch,
10 PolicyError, 11 NotEnoughDisks, 12 ClusterInUse, 13 ClusterMismatch, 14 ClusterNotFound,
15 StaleMap, 16 StaleRoot, 255 ChunkStoreError (anything else). Never renumber.

Handshake (mutual HMAC-SHA256 challenge-response over a cluster secret)
======================================================================

The first frames on a connection must be, in order (req_id free)::

    client -> node   REQUEST  HELLO  "SOFS" + Nc            (Nc, Nn: 32 random bytes each)
    node -> client   RESPONSE HELLO  Nn + HMAC(secret, "sofs-wire-1\\0node\\0" + Nc + Nn)
    client -> node   REQUEST  AUTH   HMAC(secret, "sofs-wire-1\\0client\\0" + Nc + Nn)
    node -> client   RESPONSE AUTH   node id

The client checks the node's proof before sending its own (so it never talks to an impostor),
the node checks the client's; the role label makes one side's proof useless as the other's,
the two nonces make every proof single-use. Before AUTH succeeds the node accepts nothing
else (any other frame, or a body longer than the handshake's, is answered with ERROR
AuthError and the connection is closed); a failed proof is answered the same way.

Malformed input on a connection: if the header is bad (framing is lost) the node answers
ERROR WireError with op 0 and closes; if only the body is bad it answers ERROR WireError for
that req_id and carries on.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import socket
import stat
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Sequence, Union

import blake3

from chunkstore.disk.index import PieceInfo
from chunkstore.disk.records import CompactReport, DiskStats
from chunkstore.errors import (
    AuthError,
    ChecksumMismatch,
    ChunkCorrupt,
    ChunkNotFound,
    ChunkStoreError,
    ClusterInUse,
    ClusterMismatch,
    ClusterNotFound,
    DiskFull,
    DiskUnavailable,
    FormatError,
    KeyConflict,
    NotEnoughDisks,
    PolicyError,
    StaleMap,
    StaleRoot,
    WireError,
)
from chunkstore.protection.policy import KIND_REPLICATION, MAX_EC_WIDTH, REPLICA_INDEX, PolicyCode
from chunkstore.roots import MAX_SEQ, ROOT_MAX_BODY, VOLUME_ID_SIZE, RootRecord

WIRE_VERSION = 1
MiB = 1024 * 1024
MAX_FRAME = 80 * MiB
MAX_DATA = 65 * MiB  # a whole piece in one frame: blocks are at most 64 MiB
HEADER_SIZE = 12
KEY_SIZE = 20
CHECKSUM_SIZE = 16
NONCE_SIZE = 32
PROOF_SIZE = 32
MAX_ID_LEN = 64
MAX_MESSAGE = 1024
MAX_ITEMS = 1024
MAX_MAP = 1 << 20
MAX_ROOTS = 65536  # entries of a ROOT_LIST answer
HELLO_MAGIC = b"SOFS"
PROOF_CONTEXT = b"sofs-wire-1"
MIN_SECRET_LEN = 16

_HEADER = struct.Struct(">BBBBII")
_PIECE = struct.Struct(">20sBIQI16s4sI")
PIECE_SIZE = _PIECE.size  # 61
_STATS = struct.Struct(">8q")
_COMPACT = struct.Struct(">4Q")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")
_ERR = struct.Struct(">HH")
_PUT_FIXED = struct.Struct(">20sB4sI16s")
_KEYFRAG = struct.Struct(">20sB")
_ROOT_ENTRY = struct.Struct(">16sQ")
_ID_RE = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


class Kind(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    ITEM = 3
    END = 4
    ERROR = 5


class Op(IntEnum):
    NONE = 0  # only in ERROR frames answering an unparseable frame
    HELLO = 1
    AUTH = 2
    PING = 3
    MAP_GET = 4
    MAP_PUT = 5
    PUT = 16
    GET = 17
    DELETE = 18
    HAS = 19
    PIECE = 20
    PIECES = 21
    STATS = 22
    COMPACT = 23
    CHECK = 24
    ROOT_PUT = 25
    ROOT_GET = 26
    ROOT_LIST = 27


_KINDS = frozenset(int(k) for k in Kind)
_OPS = frozenset(int(o) for o in Op)
_DISK = (2, 1 + MAX_ID_LEN)  # min, max size of a disk/node id field
_KF = KEY_SIZE + 1
_VS = VOLUME_ID_SIZE + 8  # volume id + seq

# (kind, op) -> (min body, max body); a pair not listed here is refused.
_BODY_BOUNDS: dict[tuple[int, int], tuple[int, int]] = {
    (Kind.REQUEST, Op.HELLO): (4 + NONCE_SIZE, 4 + NONCE_SIZE),
    (Kind.REQUEST, Op.AUTH): (PROOF_SIZE, PROOF_SIZE),
    (Kind.REQUEST, Op.PING): (8, 8),
    (Kind.REQUEST, Op.MAP_GET): (0, 0),
    (Kind.REQUEST, Op.MAP_PUT): (1, MAX_MAP),
    (Kind.REQUEST, Op.PUT): (_DISK[0] + _PUT_FIXED.size, _DISK[1] + _PUT_FIXED.size + MAX_DATA),
    (Kind.REQUEST, Op.GET): (_DISK[0] + _KF + 1, _DISK[1] + _KF + 1),
    (Kind.REQUEST, Op.DELETE): (_DISK[0] + _KF, _DISK[1] + _KF),
    (Kind.REQUEST, Op.HAS): (_DISK[0] + _KF, _DISK[1] + _KF),
    (Kind.REQUEST, Op.PIECE): (_DISK[0] + _KF, _DISK[1] + _KF),
    (Kind.REQUEST, Op.PIECES): _DISK,
    (Kind.REQUEST, Op.STATS): _DISK,
    (Kind.REQUEST, Op.COMPACT): (_DISK[0] + 8, _DISK[1] + 8),
    (Kind.REQUEST, Op.CHECK): _DISK,
    (Kind.REQUEST, Op.ROOT_PUT): (_DISK[0] + _VS, _DISK[1] + _VS + ROOT_MAX_BODY),
    (Kind.REQUEST, Op.ROOT_GET): (_DISK[0] + VOLUME_ID_SIZE, _DISK[1] + VOLUME_ID_SIZE),
    (Kind.REQUEST, Op.ROOT_LIST): _DISK,
    (Kind.RESPONSE, Op.HELLO): (NONCE_SIZE + PROOF_SIZE, NONCE_SIZE + PROOF_SIZE),
    (Kind.RESPONSE, Op.AUTH): _DISK,
    (Kind.RESPONSE, Op.PING): (8 + _DISK[0], 8 + _DISK[1]),
    (Kind.RESPONSE, Op.MAP_GET): (0, MAX_MAP),
    (Kind.RESPONSE, Op.MAP_PUT): (8, 8),
    (Kind.RESPONSE, Op.PUT): (0, 0),
    (Kind.RESPONSE, Op.GET): (CHECKSUM_SIZE, CHECKSUM_SIZE + MAX_DATA),
    (Kind.RESPONSE, Op.DELETE): (0, 0),
    (Kind.RESPONSE, Op.HAS): (1, 1),
    (Kind.RESPONSE, Op.PIECE): (1, 1 + PIECE_SIZE),
    (Kind.RESPONSE, Op.STATS): (_STATS.size, _STATS.size),
    (Kind.RESPONSE, Op.COMPACT): (_COMPACT.size, _COMPACT.size),
    (Kind.RESPONSE, Op.CHECK): (0, 0),
    (Kind.RESPONSE, Op.ROOT_PUT): (8, 8),
    (Kind.RESPONSE, Op.ROOT_GET): (1, 1 + 8 + ROOT_MAX_BODY),
    (Kind.RESPONSE, Op.ROOT_LIST): (4, 4 + _VS * MAX_ROOTS),
    (Kind.ITEM, Op.PIECES): (2 + PIECE_SIZE, 2 + PIECE_SIZE * MAX_ITEMS),
    (Kind.END, Op.PIECES): (8, 8),
}
for _op in Op:
    _BODY_BOUNDS[(Kind.ERROR, _op)] = (_ERR.size, _ERR.size + MAX_MESSAGE)
#: the largest body the node reads before the handshake succeeded
PREAUTH_MAX_BODY = 4 + NONCE_SIZE


# -- error codes --------------------------------------------------------------------------

#: error code -> exception class. Never renumber.
ERROR_CODES: dict[int, type[ChunkStoreError]] = {
    1: WireError,
    2: AuthError,
    3: ChunkNotFound,
    4: ChunkCorrupt,
    5: KeyConflict,
    6: DiskFull,
    7: DiskUnavailable,
    8: FormatError,
    9: ChecksumMismatch,
    10: PolicyError,
    11: NotEnoughDisks,
    12: ClusterInUse,
    13: ClusterMismatch,
    14: ClusterNotFound,
    15: StaleMap,
    16: StaleRoot,
    255: ChunkStoreError,
}
_CODE_OF: dict[type, int] = {cls: code for code, cls in ERROR_CODES.items()}


def error_code(exc: BaseException) -> int:
    """The code of the most specific mapped class ``exc`` is an instance of (255 if none)."""
    for cls in type(exc).__mro__:
        code = _CODE_OF.get(cls)
        if code is not None:
            return code
    return 255


# -- values carried by frames -------------------------------------------------------------


def checksum(data: bytes | bytearray | memoryview) -> bytes:
    """blake3-128 of ``data``: the end-to-end checksum of PUT and GET data."""
    return blake3.blake3(data).digest(CHECKSUM_SIZE)


@dataclass(frozen=True)
class Header:
    version: int
    kind: int
    op: int
    flags: int
    req_id: int
    body_len: int

    @property
    def frame_len(self) -> int:
        return HEADER_SIZE + self.body_len


@dataclass(frozen=True)
class Hello:
    nonce: bytes
    op = Op.HELLO


@dataclass(frozen=True)
class HelloReply:
    nonce: bytes
    proof: bytes


@dataclass(frozen=True)
class Auth:
    proof: bytes
    op = Op.AUTH


@dataclass(frozen=True)
class AuthOk:
    node_id: str


@dataclass(frozen=True)
class Ping:
    epoch: int
    op = Op.PING


@dataclass(frozen=True)
class Pong:
    epoch: int
    node_id: str


@dataclass(frozen=True)
class MapGet:
    op = Op.MAP_GET


@dataclass(frozen=True)
class MapPut:
    doc: bytes
    op = Op.MAP_PUT


@dataclass(frozen=True)
class MapDoc:
    """MAP_GET answer: the node's map (b"" when it has none)."""

    doc: bytes


@dataclass(frozen=True)
class MapEpoch:
    """MAP_PUT answer: the node's map epoch after the request."""

    epoch: int


@dataclass(frozen=True)
class Put:
    """PUT request. Build with :meth:`make` (computes the checksum)."""

    disk: str
    key: bytes
    frag_idx: int
    policy: PolicyCode
    chunk_size: int
    checksum: bytes
    data: bytes | bytearray | memoryview
    op = Op.PUT

    @classmethod
    def make(cls, disk: str, key: bytes, frag_idx: int, policy: PolicyCode, chunk_size: int, data) -> "Put":
        return cls(disk, bytes(key), frag_idx, policy, chunk_size, checksum(data), data)

    def verify(self) -> None:
        """WireError unless the data matches its checksum."""
        if not hmac.compare_digest(checksum(self.data), self.checksum):
            raise WireError(f"PUT data of piece {self.key.hex()}/{self.frag_idx} does not match its checksum")


@dataclass(frozen=True)
class Get:
    disk: str
    key: bytes
    frag_idx: int
    verify: bool = True
    op = Op.GET


@dataclass(frozen=True)
class Blob:
    """GET response: data and its checksum. Build with :meth:`of`."""

    checksum: bytes
    data: bytes | bytearray | memoryview

    @classmethod
    def of(cls, data) -> "Blob":
        return cls(checksum(data), data)

    def verify(self) -> None:
        if not hmac.compare_digest(checksum(self.data), self.checksum):
            raise WireError("GET data does not match its checksum")


@dataclass(frozen=True)
class Delete:
    disk: str
    key: bytes
    frag_idx: int
    op = Op.DELETE


@dataclass(frozen=True)
class Has:
    disk: str
    key: bytes
    frag_idx: int
    op = Op.HAS


@dataclass(frozen=True)
class Piece:
    disk: str
    key: bytes
    frag_idx: int
    op = Op.PIECE


@dataclass(frozen=True)
class Pieces:
    disk: str
    op = Op.PIECES


@dataclass(frozen=True)
class Stats:
    disk: str
    op = Op.STATS


@dataclass(frozen=True)
class Compact:
    disk: str
    min_dead_ratio: float = 0.3
    op = Op.COMPACT


@dataclass(frozen=True)
class Check:
    disk: str
    op = Op.CHECK


@dataclass(frozen=True)
class RootPut:
    disk: str
    volume_id: bytes
    seq: int
    body: bytes
    op = Op.ROOT_PUT


@dataclass(frozen=True)
class RootGet:
    disk: str
    volume_id: bytes
    op = Op.ROOT_GET


@dataclass(frozen=True)
class RootList:
    disk: str
    op = Op.ROOT_LIST


@dataclass(frozen=True)
class RootHeld:
    """ROOT_PUT answer: the seq the disk holds after the request."""

    seq: int


@dataclass(frozen=True)
class RootFound:
    """ROOT_GET answer when the disk holds a record of the volume asked for (encoded from a
    RootFound or a RootRecord; the volume id is the request's)."""

    seq: int
    body: bytes


@dataclass(frozen=True)
class RootSeqs:
    """ROOT_LIST answer: (volume_id, seq) of every root record on the disk."""

    entries: tuple[tuple[bytes, int], ...]


@dataclass(frozen=True)
class StreamEnd:
    count: int


@dataclass(frozen=True)
class ErrorReply:
    code: int
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> "ErrorReply":
        return cls(error_code(exc), str(exc))

    def to_exception(self) -> ChunkStoreError:
        return ERROR_CODES[self.code](self.message)


Request = Union[
    Hello, Auth, Ping, MapGet, MapPut, Put, Get, Delete, Has, Piece, Pieces, Stats, Compact, Check, RootPut, RootGet, RootList
]
DISK_REQUESTS = (Put, Get, Delete, Has, Piece, Pieces, Stats, Compact, Check, RootPut, RootGet, RootList)


@dataclass(frozen=True)
class Frame:
    """A decoded frame. ``body`` by kind/op: a request dataclass; for RESPONSE: HelloReply,
    AuthOk, Pong, None (PUT/DELETE/CHECK), Blob (GET), bool (HAS), PieceInfo | None (PIECE),
    DiskStats, CompactReport, RootHeld (ROOT_PUT), RootFound | None (ROOT_GET), RootSeqs
    (ROOT_LIST); ITEM: tuple of PieceInfo; END: StreamEnd; ERROR: ErrorReply."""

    kind: int
    op: int
    req_id: int
    body: object


# -- encoding -----------------------------------------------------------------------------

Parts = list  # list of bytes-like objects that concatenate to one frame


def _id_field(value: str, what: str) -> bytes:
    raw = value.encode("ascii") if isinstance(value, str) and value.isascii() else b""
    if not _ID_RE.fullmatch(raw):
        raise WireError(f"invalid {what} id {value!r}")
    return bytes((len(raw),)) + raw


def validate_id(value: str, what: str = "disk") -> str:
    """``value`` if it can travel as a disk/node id (1..64 of ``[A-Za-z0-9._:-]``), else WireError."""
    _id_field(value, what)
    return value


def _check_key_frag(key: bytes, frag_idx: int) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
        raise WireError("a chunk key is exactly 20 bytes")
    if not isinstance(frag_idx, int) or not (0 <= frag_idx < MAX_EC_WIDTH or frag_idx == REPLICA_INDEX):
        raise WireError(f"fragment index {frag_idx!r} out of range")


def _check_policy_frag(policy: PolicyCode, frag_idx: int) -> None:
    if policy.kind == KIND_REPLICATION:
        if frag_idx != REPLICA_INDEX:
            raise WireError(f"a replica must use fragment index {REPLICA_INDEX}, not {frag_idx}")
    elif frag_idx >= policy.width:
        raise WireError(f"fragment index {frag_idx} out of range for EC {policy.a}+{policy.b}")


def _seq(seq: int) -> int:
    """``seq`` if it is a root record seq (1..2**63-1), else WireError."""
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise WireError(f"root record seq {seq!r} out of 1..{MAX_SEQ}")
    return seq


def _check_root_fields(volume_id: bytes, seq: int | None = None) -> None:
    if not isinstance(volume_id, (bytes, bytearray)) or len(volume_id) != VOLUME_ID_SIZE:
        raise WireError(f"a volume id is exactly {VOLUME_ID_SIZE} bytes")
    if seq is not None:
        _seq(seq)


def _frame(kind: int, op: int, req_id: int, *body: bytes | bytearray | memoryview) -> Parts:
    n = sum(len(b) for b in body)
    lo, hi = _BODY_BOUNDS[(kind, op)]
    if not lo <= n <= hi or HEADER_SIZE + n > MAX_FRAME:
        raise WireError(f"body of {n} bytes out of bounds for {Kind(kind).name} {Op(op).name}")
    if not 0 <= req_id <= 0xFFFFFFFF:
        raise WireError(f"request id {req_id} out of range")
    return [_HEADER.pack(WIRE_VERSION, kind, op, 0, req_id, n), *[b for b in body if len(b)]]


def _piece_bytes(info: PieceInfo) -> bytes:
    _check_key_frag(info.key, info.frag_idx)
    if len(info.checksum) != CHECKSUM_SIZE:
        raise WireError("piece checksum must be 16 bytes")
    return _PIECE.pack(
        info.key, info.frag_idx, info.container, info.offset, info.length, info.checksum, info.policy.to_bytes(), info.chunk_size
    )


def encode_request(req_id: int, req: Request) -> Parts:
    """Frame parts of a request (data is not copied: join them or send them in order)."""
    if isinstance(req, Hello):
        if len(req.nonce) != NONCE_SIZE:
            raise WireError("nonce must be 32 bytes")
        return _frame(Kind.REQUEST, Op.HELLO, req_id, HELLO_MAGIC + req.nonce)
    if isinstance(req, Auth):
        if len(req.proof) != PROOF_SIZE:
            raise WireError("proof must be 32 bytes")
        return _frame(Kind.REQUEST, Op.AUTH, req_id, req.proof)
    if isinstance(req, Ping):
        if not 0 <= req.epoch < 2**64:
            raise WireError("epoch out of range")
        return _frame(Kind.REQUEST, Op.PING, req_id, _U64.pack(req.epoch))
    if isinstance(req, MapGet):
        return _frame(Kind.REQUEST, Op.MAP_GET, req_id)
    if isinstance(req, MapPut):
        if not 1 <= len(req.doc) <= MAX_MAP:
            raise WireError(f"a cluster map is 1..{MAX_MAP} bytes")
        return _frame(Kind.REQUEST, Op.MAP_PUT, req_id, req.doc)
    if not isinstance(req, DISK_REQUESTS):
        raise WireError(f"not a request: {req!r}")
    disk = _id_field(req.disk, "disk")
    if isinstance(req, Put):
        _check_key_frag(req.key, req.frag_idx)
        _check_policy_frag(req.policy, req.frag_idx)
        if len(req.data) > MAX_DATA:
            raise WireError(f"piece of {len(req.data)} bytes exceeds {MAX_DATA}")
        if not 0 <= req.chunk_size <= 0xFFFFFFFF or len(req.checksum) != CHECKSUM_SIZE:
            raise WireError("chunk size or checksum out of range")
        fixed = _PUT_FIXED.pack(req.key, req.frag_idx, req.policy.to_bytes(), req.chunk_size, req.checksum)
        return _frame(Kind.REQUEST, Op.PUT, req_id, disk + fixed, req.data)
    if isinstance(req, Get):
        _check_key_frag(req.key, req.frag_idx)
        return _frame(Kind.REQUEST, Op.GET, req_id, disk + _KEYFRAG.pack(req.key, req.frag_idx) + bytes((1 if req.verify else 0,)))
    if isinstance(req, (Delete, Has, Piece)):
        _check_key_frag(req.key, req.frag_idx)
        return _frame(Kind.REQUEST, req.op, req_id, disk + _KEYFRAG.pack(req.key, req.frag_idx))
    if isinstance(req, Compact):
        r = req.min_dead_ratio
        if not isinstance(r, (int, float)) or not math.isfinite(r) or not 0.0 <= r <= 1.0:
            raise WireError(f"min_dead_ratio {r!r} out of 0..1")
        return _frame(Kind.REQUEST, Op.COMPACT, req_id, disk + _F64.pack(float(r)))
    if isinstance(req, RootPut):
        _check_root_fields(req.volume_id, req.seq)
        if len(req.body) > ROOT_MAX_BODY:
            raise WireError(f"root record body of {len(req.body)} bytes exceeds {ROOT_MAX_BODY}")
        return _frame(Kind.REQUEST, Op.ROOT_PUT, req_id, disk + _ROOT_ENTRY.pack(req.volume_id, req.seq), req.body)
    if isinstance(req, RootGet):
        _check_root_fields(req.volume_id)
        return _frame(Kind.REQUEST, Op.ROOT_GET, req_id, disk + req.volume_id)
    return _frame(Kind.REQUEST, req.op, req_id, disk)  # PIECES, STATS, CHECK, ROOT_LIST


def encode_response(req_id: int, op: int, value: object) -> Parts:
    """Frame parts of the RESPONSE to request ``op`` (value types: see :class:`Frame`)."""
    if op == Op.HELLO and isinstance(value, HelloReply):
        if len(value.nonce) != NONCE_SIZE or len(value.proof) != PROOF_SIZE:
            raise WireError("bad HELLO reply sizes")
        return _frame(Kind.RESPONSE, op, req_id, value.nonce + value.proof)
    if op == Op.AUTH and isinstance(value, AuthOk):
        return _frame(Kind.RESPONSE, op, req_id, _id_field(value.node_id, "node"))
    if op == Op.PING and isinstance(value, Pong):
        if not 0 <= value.epoch < 2**64:
            raise WireError("epoch out of range")
        return _frame(Kind.RESPONSE, op, req_id, _U64.pack(value.epoch) + _id_field(value.node_id, "node"))
    if op == Op.MAP_GET and isinstance(value, MapDoc):
        if len(value.doc) > MAX_MAP:
            raise WireError("cluster map too large")
        return _frame(Kind.RESPONSE, op, req_id, value.doc)
    if op == Op.MAP_PUT and isinstance(value, MapEpoch):
        if not 0 <= value.epoch < 2**64:
            raise WireError("epoch out of range")
        return _frame(Kind.RESPONSE, op, req_id, _U64.pack(value.epoch))
    if op in (Op.PUT, Op.DELETE, Op.CHECK) and value is None:
        return _frame(Kind.RESPONSE, op, req_id)
    if op == Op.GET and isinstance(value, Blob):
        if len(value.checksum) != CHECKSUM_SIZE:
            raise WireError("checksum must be 16 bytes")
        return _frame(Kind.RESPONSE, op, req_id, value.checksum, value.data)
    if op == Op.HAS and isinstance(value, bool):
        return _frame(Kind.RESPONSE, op, req_id, b"\x01" if value else b"\x00")
    if op == Op.PIECE and (value is None or isinstance(value, PieceInfo)):
        return _frame(Kind.RESPONSE, op, req_id, b"\x00" if value is None else b"\x01" + _piece_bytes(value))
    if op == Op.STATS and isinstance(value, DiskStats):
        v = value
        fields = (v.used_bytes, v.live_pieces, v.live_bytes, v.dead_bytes, v.containers, v.fs_total_bytes, v.fs_free_bytes, v.fs_dev)
        try:
            return _frame(Kind.RESPONSE, op, req_id, _STATS.pack(*fields))
        except struct.error as e:
            raise WireError(f"stats out of range: {e}") from None
    if op == Op.COMPACT and isinstance(value, CompactReport):
        v = value
        try:
            body = _COMPACT.pack(v.containers_removed, v.records_moved, v.bytes_reclaimed, v.pieces_dropped)
        except struct.error as e:
            raise WireError(f"compaction report out of range: {e}") from None
        return _frame(Kind.RESPONSE, op, req_id, body)
    if op == Op.ROOT_PUT and isinstance(value, RootHeld):
        return _frame(Kind.RESPONSE, op, req_id, _U64.pack(_seq(value.seq)))
    if op == Op.ROOT_GET and (value is None or isinstance(value, (RootFound, RootRecord))):
        if value is None:
            return _frame(Kind.RESPONSE, op, req_id, b"\x00")
        return _frame(Kind.RESPONSE, op, req_id, b"\x01" + _U64.pack(_seq(value.seq)), value.body)
    if op == Op.ROOT_LIST and isinstance(value, RootSeqs):
        if len(value.entries) > MAX_ROOTS:
            raise FormatError(f"{len(value.entries)} root records, more than a ROOT_LIST answer carries ({MAX_ROOTS})")
        for volume_id, seq in value.entries:
            _check_root_fields(volume_id, seq)
        body = struct.pack(">I", len(value.entries)) + b"".join(_ROOT_ENTRY.pack(v, s) for v, s in value.entries)
        return _frame(Kind.RESPONSE, op, req_id, body)
    raise WireError(f"cannot encode {type(value).__name__} as a {Op(op).name if op in _OPS else op} response")


def encode_items(req_id: int, infos: Sequence[PieceInfo]) -> Parts:
    """One ITEM frame of a PIECES stream (1..MAX_ITEMS pieces)."""
    if not 1 <= len(infos) <= MAX_ITEMS:
        raise WireError(f"an ITEM frame carries 1..{MAX_ITEMS} pieces, not {len(infos)}")
    return _frame(Kind.ITEM, Op.PIECES, req_id, struct.pack(">H", len(infos)) + b"".join(_piece_bytes(i) for i in infos))


def encode_end(req_id: int, count: int) -> Parts:
    """The END frame of a PIECES stream: the number of pieces sent."""
    return _frame(Kind.END, Op.PIECES, req_id, _U64.pack(count))


def encode_error(req_id: int, op: int, code: int, message: str) -> Parts:
    """An ERROR frame; the message is cut to MAX_MESSAGE bytes on a character boundary."""
    if code not in ERROR_CODES:
        raise WireError(f"unknown error code {code}")
    if op not in _OPS:
        op = Op.NONE
    msg = message.encode("utf-8", "replace")[:MAX_MESSAGE].decode("utf-8", "ignore").encode("utf-8")
    return _frame(Kind.ERROR, op, req_id, _ERR.pack(code, len(msg)) + msg)


def encode_exception(req_id: int, op: int, exc: BaseException) -> Parts:
    """ERROR frame for an exception (mapped by its class, see ERROR_CODES)."""
    return encode_error(req_id, op, error_code(exc), str(exc) or type(exc).__name__)


def join(parts: Parts) -> bytes:
    return b"".join(parts)


# -- decoding -----------------------------------------------------------------------------


def parse_header(buf: bytes | bytearray | memoryview) -> Header:
    """Parse and validate a frame header (exactly HEADER_SIZE bytes). WireError if bad."""
    if len(buf) != HEADER_SIZE:
        raise WireError(f"a frame header is {HEADER_SIZE} bytes, got {len(buf)}")
    version, kind, op, flags, req_id, body_len = _HEADER.unpack(bytes(buf))
    if version != WIRE_VERSION:
        raise WireError(f"unsupported protocol version {version}")
    if kind not in _KINDS:
        raise WireError(f"unknown frame kind {kind}")
    if op not in _OPS:
        raise WireError(f"unknown op code {op}")
    if flags != 0:
        raise WireError(f"reserved flags set: {flags:#x}")
    if HEADER_SIZE + body_len > MAX_FRAME:
        raise WireError(f"frame of {HEADER_SIZE + body_len} bytes exceeds the {MAX_FRAME}-byte limit")
    bounds = _BODY_BOUNDS.get((kind, op))
    if bounds is None:
        raise WireError(f"op {Op(op).name} is not valid in a {Kind(kind).name} frame")
    if not bounds[0] <= body_len <= bounds[1]:
        raise WireError(f"{Kind(kind).name} {Op(op).name}: body of {body_len} bytes, allowed {bounds[0]}..{bounds[1]}")
    return Header(version, kind, op, flags, req_id, body_len)


class _Reader:
    """Cursor over a body; every read is bounds-checked and raises WireError."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise WireError("body too short")
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return v

    def u8(self) -> int:
        return self.take(1)[0]

    def ident(self, what: str) -> str:
        n = self.u8()
        raw = bytes(self.take(n))
        if not _ID_RE.fullmatch(raw):
            raise WireError(f"invalid {what} id")
        return raw.decode("ascii")

    def key_frag(self) -> tuple[bytes, int]:
        key = bytes(self.take(KEY_SIZE))
        frag = self.u8()
        if not (frag < MAX_EC_WIDTH or frag == REPLICA_INDEX):
            raise WireError(f"fragment index {frag} out of range")
        return key, frag

    def rest(self) -> memoryview:
        return self.take(len(self.buf) - self.pos)

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise WireError(f"{len(self.buf) - self.pos} unexpected bytes at the end of the body")


def _policy(raw: memoryview) -> PolicyCode:
    try:
        return PolicyCode.from_bytes(bytes(raw))
    except FormatError as e:
        raise WireError(f"invalid policy code: {e}") from None


def _piece(r: _Reader) -> PieceInfo:
    key, frag, cid, off, length, csum, pcode, chunk_size = _PIECE.unpack(bytes(r.take(PIECE_SIZE)))
    if not (frag < MAX_EC_WIDTH or frag == REPLICA_INDEX):
        raise WireError(f"fragment index {frag} out of range")
    return PieceInfo(key, frag, cid, off, length, csum, _policy(memoryview(pcode)), chunk_size)


def _root_entry(r: _Reader) -> tuple[bytes, int]:
    volume_id, seq = _ROOT_ENTRY.unpack(r.take(_ROOT_ENTRY.size))
    return volume_id, _seq(seq)


def _decode_request(op: int, r: _Reader, verify: bool) -> Request:
    if op == Op.HELLO:
        if bytes(r.take(4)) != HELLO_MAGIC:
            raise WireError("bad HELLO magic")
        return Hello(bytes(r.take(NONCE_SIZE)))
    if op == Op.AUTH:
        return Auth(bytes(r.take(PROOF_SIZE)))
    if op == Op.PING:
        return Ping(_U64.unpack(r.take(8))[0])
    if op == Op.MAP_GET:
        return MapGet()
    if op == Op.MAP_PUT:
        return MapPut(bytes(r.rest()))
    disk = r.ident("disk")
    if op == Op.PUT:
        key, frag = r.key_frag()
        policy = _policy(r.take(4))
        _check_policy_frag(policy, frag)
        (chunk_size,) = struct.unpack(">I", r.take(4))
        csum = bytes(r.take(CHECKSUM_SIZE))
        data = r.rest()
        if len(data) > MAX_DATA:
            raise WireError("piece data too large")
        put = Put(disk, key, frag, policy, chunk_size, csum, data)
        if verify:
            put.verify()
        return put
    if op == Op.GET:
        key, frag = r.key_frag()
        flags = r.u8()
        if flags & ~1:
            raise WireError(f"unknown GET flags {flags:#x}")
        return Get(disk, key, frag, bool(flags & 1))
    if op in (Op.DELETE, Op.HAS, Op.PIECE):
        key, frag = r.key_frag()
        return {Op.DELETE: Delete, Op.HAS: Has, Op.PIECE: Piece}[Op(op)](disk, key, frag)
    if op == Op.COMPACT:
        (ratio,) = _F64.unpack(r.take(8))
        if not math.isfinite(ratio) or not 0.0 <= ratio <= 1.0:
            raise WireError("min_dead_ratio out of 0..1")
        return Compact(disk, ratio)
    if op == Op.ROOT_PUT:
        volume_id, seq = _root_entry(r)
        body = bytes(r.rest())
        if len(body) > ROOT_MAX_BODY:
            raise WireError("root record body too large")
        return RootPut(disk, volume_id, seq, body)
    if op == Op.ROOT_GET:
        return RootGet(disk, bytes(r.take(VOLUME_ID_SIZE)))
    return {Op.PIECES: Pieces, Op.STATS: Stats, Op.CHECK: Check, Op.ROOT_LIST: RootList}[Op(op)](disk)


def _decode_response(op: int, r: _Reader, verify: bool) -> object:
    if op == Op.HELLO:
        return HelloReply(bytes(r.take(NONCE_SIZE)), bytes(r.take(PROOF_SIZE)))
    if op == Op.AUTH:
        return AuthOk(r.ident("node"))
    if op == Op.PING:
        (epoch,) = _U64.unpack(r.take(8))
        return Pong(epoch, r.ident("node"))
    if op == Op.MAP_GET:
        return MapDoc(bytes(r.rest()))
    if op == Op.MAP_PUT:
        return MapEpoch(_U64.unpack(r.take(8))[0])
    if op in (Op.PUT, Op.DELETE, Op.CHECK):
        return None
    if op == Op.GET:
        blob = Blob(bytes(r.take(CHECKSUM_SIZE)), r.rest())
        if verify:
            blob.verify()
        return blob
    if op == Op.HAS:
        b = r.u8()
        if b > 1:
            raise WireError(f"HAS answer must be 0 or 1, got {b}")
        return bool(b)
    if op == Op.PIECE:
        b = r.u8()
        if b > 1:
            raise WireError(f"PIECE answer flag must be 0 or 1, got {b}")
        return _piece(r) if b else None
    if op == Op.STATS:
        return DiskStats(*_STATS.unpack(r.take(_STATS.size)))
    if op == Op.COMPACT:
        return CompactReport(*_COMPACT.unpack(r.take(_COMPACT.size)))
    if op == Op.ROOT_PUT:
        return RootHeld(_seq(_U64.unpack(r.take(8))[0]))
    if op == Op.ROOT_GET:
        b = r.u8()
        if b > 1:
            raise WireError(f"ROOT_GET answer flag must be 0 or 1, got {b}")
        if not b:
            return None
        return RootFound(_seq(_U64.unpack(r.take(8))[0]), bytes(r.rest()))
    if op == Op.ROOT_LIST:
        (count,) = struct.unpack(">I", r.take(4))
        if count > MAX_ROOTS:
            raise WireError(f"ROOT_LIST count {count} exceeds {MAX_ROOTS}")
        return RootSeqs(tuple(_root_entry(r) for _ in range(count)))
    raise WireError(f"no RESPONSE for {Op(op).name}")  # pragma: no cover - excluded by bounds


def decode_body(header: Header, body: bytes | bytearray | memoryview, *, verify: bool = True) -> Frame:
    """Decode the body of a frame whose header passed :func:`parse_header`.

    ``verify=False`` skips the end-to-end checksum of PUT/GET data (a caller that checks it
    later, off the event loop, with ``Put.verify`` / ``Blob.verify``). Data fields are
    memoryviews into ``body``. Raises WireError only.
    """
    if len(body) != header.body_len:
        raise WireError(f"body is {len(body)} bytes, header says {header.body_len}")
    r = _Reader(memoryview(body).cast("B") if isinstance(body, memoryview) else memoryview(body))
    kind, op = header.kind, header.op
    if kind == Kind.REQUEST:
        value: object = _decode_request(op, r, verify)
    elif kind == Kind.RESPONSE:
        value = _decode_response(op, r, verify)
    elif kind == Kind.ITEM:
        (count,) = struct.unpack(">H", r.take(2))
        if not 1 <= count <= MAX_ITEMS:
            raise WireError(f"ITEM count {count} out of 1..{MAX_ITEMS}")
        value = tuple(_piece(r) for _ in range(count))
    elif kind == Kind.END:
        value = StreamEnd(_U64.unpack(r.take(8))[0])
    else:
        code, n = _ERR.unpack(r.take(_ERR.size))
        if code not in ERROR_CODES:
            raise WireError(f"unknown error code {code}")
        if n > MAX_MESSAGE:
            raise WireError("error message too long")
        try:
            msg = bytes(r.take(n)).decode("utf-8")
        except UnicodeDecodeError:
            raise WireError("error message is not UTF-8") from None
        value = ErrorReply(code, msg)
    r.end()
    return Frame(kind, op, header.req_id, value)


def decode_frame(buf: bytes | bytearray | memoryview, *, verify: bool = True) -> Frame:
    """Decode one whole frame (header + body, nothing more). Raises WireError only."""
    if len(buf) < HEADER_SIZE:
        raise WireError(f"frame shorter than its {HEADER_SIZE}-byte header")
    mv = memoryview(buf)
    header = parse_header(mv[:HEADER_SIZE])
    if len(buf) != header.frame_len:
        raise WireError(f"frame is {len(buf)} bytes, header says {header.frame_len}")
    return decode_body(header, mv[HEADER_SIZE:], verify=verify)


# -- handshake ----------------------------------------------------------------------------

ROLE_CLIENT = b"client"
ROLE_NODE = b"node"


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_SIZE)


def proof(secret: bytes, role: bytes, client_nonce: bytes, node_nonce: bytes) -> bytes:
    """HMAC-SHA256 proving knowledge of ``secret`` for one role over both nonces."""
    msg = PROOF_CONTEXT + b"\0" + role + b"\0" + client_nonce + node_nonce
    return hmac.new(secret, msg, hashlib.sha256).digest()


def check_proof(secret: bytes, role: bytes, client_nonce: bytes, node_nonce: bytes, got: bytes) -> bool:
    return hmac.compare_digest(proof(secret, role, client_nonce, node_nonce), got)


def load_secret(path: str | os.PathLike) -> bytes:
    """Read the cluster secret file: owned by us, no group/other permission bits (0600 or
    0400), at least MIN_SECRET_LEN bytes after stripping surrounding whitespace.
    Raises AuthError with the reason."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        raise AuthError(f"cannot open secret file {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AuthError(f"secret file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise AuthError(f"secret file {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600 (chmod 600 {path})")
        if st.st_uid != os.geteuid():
            raise AuthError(f"secret file {path} is not owned by this user")
        raw = os.read(fd, 4097)
    finally:
        os.close(fd)
    secret = raw.strip()
    if len(raw) > 4096 or len(secret) < MIN_SECRET_LEN:
        raise AuthError(f"secret file {path} must hold {MIN_SECRET_LEN}..4096 bytes")
    return secret


# -- blocking sockets ---------------------------------------------------------------------


class BlockingConnection:
    """Frames over a connected blocking socket (its timeout applies to every send/receive).

    Not thread-safe: one user at a time. EOF raises ConnectionError; socket.timeout and other
    OSErrors propagate; a bad frame raises WireError.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._next_id = 0

    @classmethod
    def connect(cls, host: str, port: int, timeout: float) -> "BlockingConnection":
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return cls(sock)

    def next_id(self) -> int:
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        return self._next_id

    def send(self, parts: Parts) -> None:
        if sum(len(p) for p in parts) <= 65536:
            self.sock.sendall(b"".join(parts))
        else:
            for p in parts:
                self.sock.sendall(p)

    def _recv_into(self, view: memoryview) -> None:
        while len(view):
            n = self.sock.recv_into(view)
            if n == 0:
                raise ConnectionError("connection closed by peer")
            view = view[n:]

    def receive(self, max_body: int = MAX_FRAME) -> tuple[Header, bytearray]:
        """The next frame's header and raw body (body longer than ``max_body``: WireError)."""
        hbuf = bytearray(HEADER_SIZE)
        self._recv_into(memoryview(hbuf))
        header = parse_header(hbuf)
        if header.body_len > max_body:
            raise WireError(f"frame body of {header.body_len} bytes exceeds {max_body}")
        body = bytearray(header.body_len)
        self._recv_into(memoryview(body))
        return header, body

    def receive_frame(self, *, verify: bool = True, max_body: int = MAX_FRAME) -> Frame:
        header, body = self.receive(max_body)
        return decode_body(header, body, verify=verify)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def client_handshake(conn: BlockingConnection, secret: bytes) -> str:
    """Run the client side of the handshake; returns the node id. AuthError if either side's
    proof fails (the node's is checked first), WireError / OSError on a broken exchange."""
    nc = new_nonce()
    conn.send(encode_request(conn.next_id(), Hello(nc)))
    f = conn.receive_frame(max_body=PREAUTH_MAX_BODY + PROOF_SIZE)
    if f.kind == Kind.ERROR:
        raise _handshake_error(f.body)
    if f.kind != Kind.RESPONSE or f.op != Op.HELLO:
        raise WireError("expected the node's HELLO answer")
    reply: HelloReply = f.body  # type: ignore[assignment]
    if not check_proof(secret, ROLE_NODE, nc, reply.nonce, reply.proof):
        raise AuthError("the node failed to prove it knows the cluster secret")
    conn.send(encode_request(conn.next_id(), Auth(proof(secret, ROLE_CLIENT, nc, reply.nonce))))
    f = conn.receive_frame(max_body=PREAUTH_MAX_BODY + PROOF_SIZE)
    if f.kind == Kind.ERROR:
        raise _handshake_error(f.body)
    if f.kind != Kind.RESPONSE or f.op != Op.AUTH:
        raise WireError("expected the node's AUTH answer")
    return f.body.node_id  # type: ignore[union-attr]


def _handshake_error(reply: ErrorReply) -> ChunkStoreError:
    exc = reply.to_exception()
    return exc if isinstance(exc, AuthError) else AuthError(f"handshake refused: {reply.message}")


# -- trio streams -------------------------------------------------------------------------


class TrioConnection:
    """Frames over a trio stream (SocketStream or any Stream). One reader task at a time;
    :meth:`send` may be called from several tasks (a lock keeps frames whole).

    Receiving is cancellation-safe between frames: bytes already read stay buffered.
    """

    def __init__(self, stream) -> None:
        import trio

        self.stream = stream
        self._buf = bytearray()
        self._send_lock = trio.Lock()
        self._sock = getattr(stream, "socket", None)

    async def _fill(self, n: int) -> bool:
        """Buffer at least n bytes; False on EOF (with fewer buffered)."""
        while len(self._buf) < n:
            data = await self.stream.receive_some(65536)
            if not data:
                return False
            self._buf += data
        return True

    async def receive_header(self) -> Header | None:
        """The next header (validated), or None on a clean EOF between frames.
        ConnectionError on EOF inside a header; WireError if bad."""
        if not await self._fill(HEADER_SIZE):
            if self._buf:
                raise ConnectionError("connection closed inside a frame header")
            return None
        raw = bytes(self._buf[:HEADER_SIZE])
        del self._buf[:HEADER_SIZE]
        return parse_header(raw)

    async def receive_body(self, header: Header) -> bytearray:
        """Exactly ``header.body_len`` bytes (ConnectionError on EOF). Read straight into
        one buffer of that size: the caller decides beforehand whether it may be allocated."""
        n = header.body_len
        body = bytearray(n)
        have = min(n, len(self._buf))
        body[:have] = self._buf[:have]
        del self._buf[:have]
        view = memoryview(body)[have:]
        while len(view):
            if self._sock is not None:
                got = await self._sock.recv_into(view, len(view))
            else:
                data = await self.stream.receive_some(min(len(view), 1 << 20))
                got = len(data)
                view[:got] = data
            if got == 0:
                raise ConnectionError("connection closed inside a frame body")
            view = view[got:]
        return body

    async def receive_frame(self, *, verify: bool = True, max_body: int = MAX_FRAME) -> Frame | None:
        header = await self.receive_header()
        if header is None:
            return None
        if header.body_len > max_body:
            raise WireError(f"frame body of {header.body_len} bytes exceeds {max_body}")
        return decode_body(header, await self.receive_body(header), verify=verify)

    async def send(self, parts: Parts) -> None:
        async with self._send_lock:
            if sum(len(p) for p in parts) <= 65536:
                await self.stream.send_all(b"".join(parts))
            else:
                for p in parts:
                    await self.stream.send_all(p)

    async def aclose(self) -> None:
        import trio

        await trio.aclose_forcefully(self.stream)
