"""The wire format, version 1: frame header, op codes, body bounds, error codes, byte by byte.

This module is the protocol's reference: what each frame looks like on the wire and which
lengths are allowed before a body is read. The request and answer values are in
:mod:`~chunkstore.net.wire.messages`, their encoding and decoding in
:mod:`~chunkstore.net.wire.codec`, the handshake in :mod:`~chunkstore.net.wire.auth`.
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
    18 DELETE   disk, key, frag [, decided_ago f64]   ->  (empty)
                decided_ago (seconds >= 0 since the delete was decided, by the client's
                clock; optional: a body without it is an unconditional delete, as before the
                field existed) makes it conditional: ERROR KeyConflict, nothing deleted, if a
                put of the piece landed on the disk since then (DiskStore.delete, with
                decided_at = the node's time - decided_ago - DELETE_DELAY_MARGIN_S of
                chunkstore.net.server). A duration, not a time: the client's and the node's
                clocks need not agree. A node older than the field refuses the longer body
                (WireError), which the deleter takes as "not deleted".
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
    28 FENCE    volume_id 16 B, token u64 (1..2**63-1) -> token u64: the highest token the
                                                          node holds for the volume, after

Volume root records (chunkstore.roots): ROOT_PUT / ROOT_GET / ROOT_LIST call the disk's
DiskStore.put_root / get_root / list_roots. A disk holding more than MAX_ROOTS (65,536)
records answers ROOT_LIST with ERROR FormatError.

Fencing (chunkstore.net.fences): a connector that holds a volume's lease (its token: the
lease key's etcd revision, higher for every new holder) declares it once per connection with
FENCE. The node keeps the highest token per volume on stable storage before it answers, and
records the declaration on the connection; from then on each PUT, DELETE, ROOT_PUT and COMPACT
on that connection is answered ERROR StaleEpoch, changing nothing, whenever the node holds a
higher token for the volume (another connector took the volume over). A FENCE with a lower
token is answered with the higher one: the sender knows at once that it is fenced.

Cluster-map epochs: a PING records the sender's epoch on the connection. Once a node holds a
map (epoch E > 0), a disk request on a connection whose recorded epoch is below E is answered
ERROR StaleMap: the client fetches the newer map, recomputes placement and retries.

A PUT whose policy is replication must use frag 255, an EC PUT a frag below k+m. The
receiver of PUT data and of GET data recomputes blake3-128 and refuses a mismatch
(WireError): such bytes are never stored or returned. The checksum of a GET answer is the
one the disk stored with the piece when it was written (not one computed at read time), so
the client's check also catches data that rotted on disk when the GET did not ask the disk
to verify.

ERROR body: code u16 + message length u16 (0..1024) + UTF-8 message. Codes map 1:1 to
exception classes (ERROR_CODES): 1 WireError, 2 AuthError, 3 ChunkNotFound, 4 ChunkCorrupt,
5 KeyConflict, 6 DiskFull, 7 DiskUnavailable, 8 FormatError, 9 ChecksumMismatch,
10 PolicyError, 11 NotEnoughDisks, 12 ClusterInUse, 13 ClusterMismatch, 14 ClusterNotFound,
15 StaleMap, 16 StaleRoot, 17 StaleEpoch, 255 NodeFailure (anything else). Never renumber.

Malformed input on a connection: if the header is bad (framing is lost) the node answers
ERROR WireError with op 0 and closes; if only the body is bad it answers ERROR WireError for
that req_id and carries on.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Union

import blake3

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
    NodeFailure,
    NotEnoughDisks,
    PolicyError,
    StaleEpoch,
    StaleMap,
    StaleRoot,
    WireError,
)
from chunkstore.protection.policy import KIND_REPLICATION, REPLICA_INDEX, PolicyCode
from chunkstore.roots import MAX_SEQ, ROOT_MAX_BODY, VOLUME_ID_SIZE

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

# layouts of the fixed-size parts (used by the codec)
HEADER_STRUCT = struct.Struct(">BBBBII")
PIECE_STRUCT = struct.Struct(">20sBIQI16s4sI")
PIECE_SIZE = PIECE_STRUCT.size  # 61
STATS_STRUCT = struct.Struct(">9q")
STATS_V1_SIZE = 8 * 8  # a node of the release before checksum_errors: the other fields only
COMPACT_STRUCT = struct.Struct(">4Q")
U64 = struct.Struct(">Q")
F64 = struct.Struct(">d")
ERR_STRUCT = struct.Struct(">HH")
PUT_FIXED_STRUCT = struct.Struct(">20sB4sI16s")
KEYFRAG_STRUCT = struct.Struct(">20sB")
ROOT_ENTRY_STRUCT = struct.Struct(">16sQ")
ID_RE = re.compile(rb"[A-Za-z0-9._:-]{1,64}")  # a disk or node id

#: one frame as buffers to send in order (or join): the header, then the body's parts
Parts = list[Union[bytes, bytearray, memoryview]]


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
    FENCE = 28


KINDS = frozenset(int(k) for k in Kind)
OPS = frozenset(int(o) for o in Op)
_DISK = (2, 1 + MAX_ID_LEN)  # min, max size of a disk/node id field
_KF = KEY_SIZE + 1
_VS = VOLUME_ID_SIZE + 8  # volume id + seq

# (kind, op) -> (min body, max body); a pair not listed here is refused.
BODY_BOUNDS: dict[tuple[int, int], tuple[int, int]] = {
    (Kind.REQUEST, Op.HELLO): (4 + NONCE_SIZE, 4 + NONCE_SIZE),
    (Kind.REQUEST, Op.AUTH): (PROOF_SIZE, PROOF_SIZE),
    (Kind.REQUEST, Op.PING): (8, 8),
    (Kind.REQUEST, Op.MAP_GET): (0, 0),
    (Kind.REQUEST, Op.MAP_PUT): (1, MAX_MAP),
    (Kind.REQUEST, Op.PUT): (_DISK[0] + PUT_FIXED_STRUCT.size, _DISK[1] + PUT_FIXED_STRUCT.size + MAX_DATA),
    (Kind.REQUEST, Op.GET): (_DISK[0] + _KF + 1, _DISK[1] + _KF + 1),
    (Kind.REQUEST, Op.DELETE): (_DISK[0] + _KF, _DISK[1] + _KF + 8),  # + decided_ago f64
    (Kind.REQUEST, Op.HAS): (_DISK[0] + _KF, _DISK[1] + _KF),
    (Kind.REQUEST, Op.PIECE): (_DISK[0] + _KF, _DISK[1] + _KF),
    (Kind.REQUEST, Op.PIECES): _DISK,
    (Kind.REQUEST, Op.STATS): _DISK,
    (Kind.REQUEST, Op.COMPACT): (_DISK[0] + 8, _DISK[1] + 8),
    (Kind.REQUEST, Op.CHECK): _DISK,
    (Kind.REQUEST, Op.ROOT_PUT): (_DISK[0] + _VS, _DISK[1] + _VS + ROOT_MAX_BODY),
    (Kind.REQUEST, Op.ROOT_GET): (_DISK[0] + VOLUME_ID_SIZE, _DISK[1] + VOLUME_ID_SIZE),
    (Kind.REQUEST, Op.ROOT_LIST): _DISK,
    (Kind.REQUEST, Op.FENCE): (_VS, _VS),
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
    (Kind.RESPONSE, Op.STATS): (STATS_V1_SIZE, STATS_STRUCT.size),
    (Kind.RESPONSE, Op.COMPACT): (COMPACT_STRUCT.size, COMPACT_STRUCT.size),
    (Kind.RESPONSE, Op.CHECK): (0, 0),
    (Kind.RESPONSE, Op.ROOT_PUT): (8, 8),
    (Kind.RESPONSE, Op.ROOT_GET): (1, 1 + 8 + ROOT_MAX_BODY),
    (Kind.RESPONSE, Op.ROOT_LIST): (4, 4 + _VS * MAX_ROOTS),
    (Kind.RESPONSE, Op.FENCE): (8, 8),
    (Kind.ITEM, Op.PIECES): (2 + PIECE_SIZE, 2 + PIECE_SIZE * MAX_ITEMS),
    (Kind.END, Op.PIECES): (8, 8),
}
for _op in Op:
    BODY_BOUNDS[(Kind.ERROR, _op)] = (ERR_STRUCT.size, ERR_STRUCT.size + MAX_MESSAGE)
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
    17: StaleEpoch,
    255: NodeFailure,
}
_CODE_OF: dict[type, int] = {cls: code for code, cls in ERROR_CODES.items()}


def error_code(exc: BaseException) -> int:
    """The code of the most specific mapped class ``exc`` is an instance of (255 if none)."""
    for cls in type(exc).__mro__:
        code = _CODE_OF.get(cls)
        if code is not None:
            return code
    return 255


# -- the header and the checksum ----------------------------------------------------------


def checksum(data: bytes | bytearray | memoryview) -> bytes:
    """blake3-128 of ``data``: the end-to-end checksum of PUT and GET data."""
    return blake3.blake3(data).digest(CHECKSUM_SIZE)


@dataclass(frozen=True)
class Header:
    """A frame header that passed :func:`parse_header` (its body is not read yet)."""

    version: int
    kind: int
    op: int
    flags: int
    req_id: int
    body_len: int

    @property
    def frame_len(self) -> int:
        return HEADER_SIZE + self.body_len


def parse_header(buf: bytes | bytearray | memoryview) -> Header:
    """Parse and validate a frame header (exactly HEADER_SIZE bytes). WireError if bad."""
    if len(buf) != HEADER_SIZE:
        raise WireError(f"a frame header is {HEADER_SIZE} bytes, got {len(buf)}")
    version, kind, op, flags, req_id, body_len = HEADER_STRUCT.unpack(bytes(buf))
    if version != WIRE_VERSION:
        raise WireError(f"unsupported protocol version {version}")
    if kind not in KINDS:
        raise WireError(f"unknown frame kind {kind}")
    if op not in OPS:
        raise WireError(f"unknown op code {op}")
    if flags != 0:
        raise WireError(f"reserved flags set: {flags:#x}")
    if HEADER_SIZE + body_len > MAX_FRAME:
        raise WireError(f"frame of {HEADER_SIZE + body_len} bytes exceeds the {MAX_FRAME}-byte limit")
    bounds = BODY_BOUNDS.get((kind, op))
    if bounds is None:
        raise WireError(f"op {Op(op).name} is not valid in a {Kind(kind).name} frame")
    if not bounds[0] <= body_len <= bounds[1]:
        raise WireError(f"{Kind(kind).name} {Op(op).name}: body of {body_len} bytes, allowed {bounds[0]}..{bounds[1]}")
    return Header(version, kind, op, flags, req_id, body_len)


# -- field rules shared by the encoder and the decoder --------------------------------------


def check_policy_frag(policy: PolicyCode, frag_idx: int) -> None:
    """WireError unless ``frag_idx`` fits the policy: 255 for a replica, below k+m for EC."""
    if policy.kind == KIND_REPLICATION:
        if frag_idx != REPLICA_INDEX:
            raise WireError(f"a replica must use fragment index {REPLICA_INDEX}, not {frag_idx}")
    elif frag_idx >= policy.width:
        raise WireError(f"fragment index {frag_idx} out of range for EC {policy.a}+{policy.b}")


def check_seq(seq: int) -> int:
    """``seq`` if it is a root record seq (1..2**63-1), else WireError."""
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise WireError(f"root record seq {seq!r} out of 1..{MAX_SEQ}")
    return seq
