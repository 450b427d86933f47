"""Encoding: request and answer values (:mod:`.messages`) to the frame bytes of :mod:`.frames`.

Pure functions, no I/O. A frame comes back as :data:`~.frames.Parts` (header, then the body's
buffers; data is not copied): send them in order or :func:`join` them. The encoder refuses
(WireError) every value the decoder (:mod:`.decode`) would refuse, so nothing invalid is sent.
"""

from __future__ import annotations

import math
import struct
from typing import Sequence

from chunkstore.disk.index import PieceInfo
from chunkstore.disk.records import CompactReport, DiskStats
from chunkstore.errors import FormatError, WireError
from chunkstore.net.wire.frames import (
    BODY_BOUNDS,
    CHECKSUM_SIZE,
    COMPACT_STRUCT,
    ERR_STRUCT,
    ERROR_CODES,
    F64,
    HEADER_SIZE,
    HEADER_STRUCT,
    HELLO_MAGIC,
    ID_RE,
    KEY_SIZE,
    KEYFRAG_STRUCT,
    MAX_DATA,
    MAX_FRAME,
    MAX_ITEMS,
    MAX_MAP,
    MAX_MESSAGE,
    MAX_ROOTS,
    NONCE_SIZE,
    OPS,
    PIECE_STRUCT,
    PROOF_SIZE,
    PUT_FIXED_STRUCT,
    ROOT_ENTRY_STRUCT,
    STATS_STRUCT,
    U64,
    WIRE_VERSION,
    Kind,
    Op,
    Parts,
    check_policy_frag,
    check_seq,
    error_code,
)
from chunkstore.net.wire.messages import (
    DISK_REQUESTS,
    Auth,
    AuthOk,
    Blob,
    Compact,
    Delete,
    Fence,
    FenceHeld,
    Get,
    Has,
    Hello,
    HelloReply,
    MapDoc,
    MapEpoch,
    MapGet,
    MapPut,
    Piece,
    Ping,
    Pong,
    Put,
    Request,
    Response,
    RootFound,
    RootGet,
    RootHeld,
    RootPut,
    RootSeqs,
)
from chunkstore.protection.policy import MAX_EC_WIDTH, REPLICA_INDEX
from chunkstore.roots import ROOT_MAX_BODY, VOLUME_ID_SIZE, RootRecord


def _id_field(value: str, what: str) -> bytes:
    raw = value.encode("ascii") if isinstance(value, str) and value.isascii() else b""
    if not ID_RE.fullmatch(raw):
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


def _check_root_fields(volume_id: bytes, seq: int | None = None) -> None:
    if not isinstance(volume_id, (bytes, bytearray)) or len(volume_id) != VOLUME_ID_SIZE:
        raise WireError(f"a volume id is exactly {VOLUME_ID_SIZE} bytes")
    if seq is not None:
        check_seq(seq)


def _frame(kind: int, op: int, req_id: int, *body: bytes | bytearray | memoryview) -> Parts:
    n = sum(len(b) for b in body)
    lo, hi = BODY_BOUNDS[(kind, op)]
    if not lo <= n <= hi or HEADER_SIZE + n > MAX_FRAME:
        raise WireError(f"body of {n} bytes out of bounds for {Kind(kind).name} {Op(op).name}")
    if not 0 <= req_id <= 0xFFFFFFFF:
        raise WireError(f"request id {req_id} out of range")
    return [HEADER_STRUCT.pack(WIRE_VERSION, kind, op, 0, req_id, n), *[b for b in body if len(b)]]


def _piece_bytes(info: PieceInfo) -> bytes:
    _check_key_frag(info.key, info.frag_idx)
    if len(info.checksum) != CHECKSUM_SIZE:
        raise WireError("piece checksum must be 16 bytes")
    return PIECE_STRUCT.pack(
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
        return _frame(Kind.REQUEST, Op.PING, req_id, U64.pack(req.epoch))
    if isinstance(req, Fence):
        _check_root_fields(req.volume_id, req.token)
        return _frame(Kind.REQUEST, Op.FENCE, req_id, ROOT_ENTRY_STRUCT.pack(req.volume_id, req.token))
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
        check_policy_frag(req.policy, req.frag_idx)
        if len(req.data) > MAX_DATA:
            raise WireError(f"piece of {len(req.data)} bytes exceeds {MAX_DATA}")
        if not 0 <= req.chunk_size <= 0xFFFFFFFF or len(req.checksum) != CHECKSUM_SIZE:
            raise WireError("chunk size or checksum out of range")
        fixed = PUT_FIXED_STRUCT.pack(req.key, req.frag_idx, req.policy.to_bytes(), req.chunk_size, req.checksum)
        return _frame(Kind.REQUEST, Op.PUT, req_id, disk + fixed, req.data)
    if isinstance(req, Get):
        _check_key_frag(req.key, req.frag_idx)
        flags = bytes((1 if req.verify else 0,))
        return _frame(Kind.REQUEST, Op.GET, req_id, disk + KEYFRAG_STRUCT.pack(req.key, req.frag_idx) + flags)
    if isinstance(req, (Delete, Has, Piece)):
        _check_key_frag(req.key, req.frag_idx)
        body = disk + KEYFRAG_STRUCT.pack(req.key, req.frag_idx)
        if isinstance(req, Delete) and req.decided_ago is not None:
            if not math.isfinite(req.decided_ago) or req.decided_ago < 0:
                raise WireError(f"decided_ago {req.decided_ago!r} is not a duration")
            body += F64.pack(float(req.decided_ago))
        return _frame(Kind.REQUEST, req.op, req_id, body)
    if isinstance(req, Compact):
        r = req.min_dead_ratio
        if not isinstance(r, (int, float)) or not math.isfinite(r) or not 0.0 <= r <= 1.0:
            raise WireError(f"min_dead_ratio {r!r} out of 0..1")
        return _frame(Kind.REQUEST, Op.COMPACT, req_id, disk + F64.pack(float(r)))
    if isinstance(req, RootPut):
        _check_root_fields(req.volume_id, req.seq)
        if len(req.body) > ROOT_MAX_BODY:
            raise WireError(f"root record body of {len(req.body)} bytes exceeds {ROOT_MAX_BODY}")
        return _frame(Kind.REQUEST, Op.ROOT_PUT, req_id, disk + ROOT_ENTRY_STRUCT.pack(req.volume_id, req.seq), req.body)
    if isinstance(req, RootGet):
        _check_root_fields(req.volume_id)
        return _frame(Kind.REQUEST, Op.ROOT_GET, req_id, disk + req.volume_id)
    return _frame(Kind.REQUEST, req.op, req_id, disk)  # PIECES, STATS, CHECK, ROOT_LIST


def encode_response(req_id: int, op: int, value: Response | RootRecord) -> Parts:
    """Frame parts of the RESPONSE to request ``op`` (value types: see :data:`.messages.Response`;
    a ROOT_GET may also be answered with the RootRecord itself)."""
    if op == Op.HELLO and isinstance(value, HelloReply):
        if len(value.nonce) != NONCE_SIZE or len(value.proof) != PROOF_SIZE:
            raise WireError("bad HELLO reply sizes")
        return _frame(Kind.RESPONSE, op, req_id, value.nonce + value.proof)
    if op == Op.AUTH and isinstance(value, AuthOk):
        return _frame(Kind.RESPONSE, op, req_id, _id_field(value.node_id, "node"))
    if op == Op.PING and isinstance(value, Pong):
        if not 0 <= value.epoch < 2**64:
            raise WireError("epoch out of range")
        return _frame(Kind.RESPONSE, op, req_id, U64.pack(value.epoch) + _id_field(value.node_id, "node"))
    if op == Op.FENCE and isinstance(value, FenceHeld):
        return _frame(Kind.RESPONSE, op, req_id, U64.pack(check_seq(value.token)))
    if op == Op.MAP_GET and isinstance(value, MapDoc):
        if len(value.doc) > MAX_MAP:
            raise WireError("cluster map too large")
        return _frame(Kind.RESPONSE, op, req_id, value.doc)
    if op == Op.MAP_PUT and isinstance(value, MapEpoch):
        if not 0 <= value.epoch < 2**64:
            raise WireError("epoch out of range")
        return _frame(Kind.RESPONSE, op, req_id, U64.pack(value.epoch))
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
        s = value
        fields = (s.used_bytes, s.live_pieces, s.live_bytes, s.dead_bytes, s.containers,
                  s.fs_total_bytes, s.fs_free_bytes, s.fs_dev, s.checksum_errors)
        try:
            return _frame(Kind.RESPONSE, op, req_id, STATS_STRUCT.pack(*fields))
        except struct.error as e:
            raise WireError(f"stats out of range: {e}") from None
    if op == Op.COMPACT and isinstance(value, CompactReport):
        c = value
        try:
            body = COMPACT_STRUCT.pack(c.containers_removed, c.records_moved, c.bytes_reclaimed, c.pieces_dropped)
        except struct.error as e:
            raise WireError(f"compaction report out of range: {e}") from None
        return _frame(Kind.RESPONSE, op, req_id, body)
    if op == Op.ROOT_PUT and isinstance(value, RootHeld):
        return _frame(Kind.RESPONSE, op, req_id, U64.pack(check_seq(value.seq)))
    if op == Op.ROOT_GET and (value is None or isinstance(value, (RootFound, RootRecord))):
        if value is None:
            return _frame(Kind.RESPONSE, op, req_id, b"\x00")
        return _frame(Kind.RESPONSE, op, req_id, b"\x01" + U64.pack(check_seq(value.seq)), value.body)
    if op == Op.ROOT_LIST and isinstance(value, RootSeqs):
        if len(value.entries) > MAX_ROOTS:
            raise FormatError(f"{len(value.entries)} root records, more than a ROOT_LIST answer carries ({MAX_ROOTS})")
        for volume_id, seq in value.entries:
            _check_root_fields(volume_id, seq)
        body = struct.pack(">I", len(value.entries)) + b"".join(ROOT_ENTRY_STRUCT.pack(v, s) for v, s in value.entries)
        return _frame(Kind.RESPONSE, op, req_id, body)
    raise WireError(f"cannot encode {type(value).__name__} as a {Op(op).name if op in OPS else op} response")


def encode_items(req_id: int, infos: Sequence[PieceInfo]) -> Parts:
    """One ITEM frame of a PIECES stream (1..MAX_ITEMS pieces)."""
    if not 1 <= len(infos) <= MAX_ITEMS:
        raise WireError(f"an ITEM frame carries 1..{MAX_ITEMS} pieces, not {len(infos)}")
    return _frame(Kind.ITEM, Op.PIECES, req_id, struct.pack(">H", len(infos)) + b"".join(_piece_bytes(i) for i in infos))


def encode_end(req_id: int, count: int) -> Parts:
    """The END frame of a PIECES stream: the number of pieces sent."""
    return _frame(Kind.END, Op.PIECES, req_id, U64.pack(count))


def encode_error(req_id: int, op: int, code: int, message: str) -> Parts:
    """An ERROR frame; the message is cut to MAX_MESSAGE bytes on a character boundary."""
    if code not in ERROR_CODES:
        raise WireError(f"unknown error code {code}")
    if op not in OPS:
        op = Op.NONE
    msg = message.encode("utf-8", "replace")[:MAX_MESSAGE].decode("utf-8", "ignore").encode("utf-8")
    return _frame(Kind.ERROR, op, req_id, ERR_STRUCT.pack(code, len(msg)) + msg)


def encode_exception(req_id: int, op: int, exc: BaseException) -> Parts:
    """ERROR frame for an exception (mapped by its class, see ERROR_CODES)."""
    return encode_error(req_id, op, error_code(exc), str(exc) or type(exc).__name__)


def join(parts: Parts) -> bytes:
    return b"".join(parts)
