"""Decoding: frame bytes (:mod:`.frames`) to the values of :mod:`.messages`.

Pure functions, no I/O. The decoder raises :class:`~chunkstore.errors.WireError` – and
nothing else – for any input that is not a valid frame; a body must parse to exactly its
length. PUT and GET data come back as memoryviews into the body, checked against their
end-to-end checksum unless the caller defers that (``verify=False``).
"""

from __future__ import annotations

import math
import struct

from chunkstore.disk.index import PieceInfo
from chunkstore.disk.records import CompactReport, DiskStats
from chunkstore.errors import FormatError, WireError
from chunkstore.net.wire.frames import (
    CHECKSUM_SIZE,
    COMPACT_STRUCT,
    ERR_STRUCT,
    ERROR_CODES,
    F64,
    HEADER_SIZE,
    HELLO_MAGIC,
    ID_RE,
    KEY_SIZE,
    MAX_DATA,
    MAX_ITEMS,
    MAX_MESSAGE,
    MAX_ROOTS,
    NONCE_SIZE,
    PIECE_SIZE,
    PIECE_STRUCT,
    PROOF_SIZE,
    ROOT_ENTRY_STRUCT,
    STATS_STRUCT,
    STATS_V1_SIZE,
    U64,
    Header,
    Kind,
    Op,
    check_policy_frag,
    check_seq,
    parse_header,
)
from chunkstore.net.wire.messages import (
    Auth,
    AuthOk,
    Blob,
    Body,
    Check,
    Compact,
    Delete,
    ErrorReply,
    Fence,
    FenceHeld,
    Frame,
    Get,
    Has,
    Hello,
    HelloReply,
    MapDoc,
    MapEpoch,
    MapGet,
    MapPut,
    Piece,
    Pieces,
    Ping,
    Pong,
    Put,
    Request,
    Response,
    RootFound,
    RootGet,
    RootHeld,
    RootList,
    RootPut,
    RootSeqs,
    Stats,
    StreamEnd,
)
from chunkstore.protection.policy import MAX_EC_WIDTH, REPLICA_INDEX, PolicyCode
from chunkstore.roots import ROOT_MAX_BODY, VOLUME_ID_SIZE


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
        if not ID_RE.fullmatch(raw):
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
    key, frag, cid, off, length, csum, pcode, chunk_size = PIECE_STRUCT.unpack(bytes(r.take(PIECE_SIZE)))
    if not (frag < MAX_EC_WIDTH or frag == REPLICA_INDEX):
        raise WireError(f"fragment index {frag} out of range")
    return PieceInfo(key, frag, cid, off, length, csum, _policy(memoryview(pcode)), chunk_size)


def _root_entry(r: _Reader) -> tuple[bytes, int]:
    volume_id, seq = ROOT_ENTRY_STRUCT.unpack(r.take(ROOT_ENTRY_STRUCT.size))
    return volume_id, check_seq(seq)


def _decode_request(op: int, r: _Reader, verify: bool) -> Request:
    if op == Op.HELLO:
        if bytes(r.take(4)) != HELLO_MAGIC:
            raise WireError("bad HELLO magic")
        return Hello(bytes(r.take(NONCE_SIZE)))
    if op == Op.AUTH:
        return Auth(bytes(r.take(PROOF_SIZE)))
    if op == Op.PING:
        return Ping(U64.unpack(r.take(8))[0])
    if op == Op.FENCE:
        volume_id, token = _root_entry(r)
        return Fence(volume_id, token)
    if op == Op.MAP_GET:
        return MapGet()
    if op == Op.MAP_PUT:
        return MapPut(bytes(r.rest()))
    disk = r.ident("disk")
    if op == Op.PUT:
        key, frag = r.key_frag()
        policy = _policy(r.take(4))
        check_policy_frag(policy, frag)
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
        if op == Op.DELETE:
            if len(r.buf) - r.pos == 0:
                return Delete(disk, key, frag)  # unconditional (the only form before decided_ago)
            (decided_ago,) = F64.unpack(r.take(8))
            if not math.isfinite(decided_ago) or decided_ago < 0:
                raise WireError("DELETE decided_ago is not a duration")
            return Delete(disk, key, frag, decided_ago)
        keyed: dict[int, type[Has | Piece]] = {Op.HAS: Has, Op.PIECE: Piece}
        return keyed[op](disk, key, frag)
    if op == Op.COMPACT:
        (ratio,) = F64.unpack(r.take(8))
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
    disk_only: dict[int, type[Pieces | Stats | Check | RootList]] = {
        Op.PIECES: Pieces, Op.STATS: Stats, Op.CHECK: Check, Op.ROOT_LIST: RootList
    }
    return disk_only[op](disk)


def _decode_response(op: int, r: _Reader, verify: bool) -> Response:
    if op == Op.HELLO:
        return HelloReply(bytes(r.take(NONCE_SIZE)), bytes(r.take(PROOF_SIZE)))
    if op == Op.AUTH:
        return AuthOk(r.ident("node"))
    if op == Op.PING:
        (epoch,) = U64.unpack(r.take(8))
        return Pong(epoch, r.ident("node"))
    if op == Op.FENCE:
        return FenceHeld(check_seq(U64.unpack(r.take(8))[0]))
    if op == Op.MAP_GET:
        return MapDoc(bytes(r.rest()))
    if op == Op.MAP_PUT:
        return MapEpoch(U64.unpack(r.take(8))[0])
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
        if len(r.buf) - r.pos == STATS_V1_SIZE:
            return DiskStats(*struct.unpack(">8q", r.take(STATS_V1_SIZE)))
        return DiskStats(*STATS_STRUCT.unpack(r.take(STATS_STRUCT.size)))
    if op == Op.COMPACT:
        return CompactReport(*COMPACT_STRUCT.unpack(r.take(COMPACT_STRUCT.size)))
    if op == Op.ROOT_PUT:
        return RootHeld(check_seq(U64.unpack(r.take(8))[0]))
    if op == Op.ROOT_GET:
        b = r.u8()
        if b > 1:
            raise WireError(f"ROOT_GET answer flag must be 0 or 1, got {b}")
        if not b:
            return None
        return RootFound(check_seq(U64.unpack(r.take(8))[0]), bytes(r.rest()))
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
    value: Body
    if kind == Kind.REQUEST:
        value = _decode_request(op, r, verify)
    elif kind == Kind.RESPONSE:
        value = _decode_response(op, r, verify)
    elif kind == Kind.ITEM:
        (count,) = struct.unpack(">H", r.take(2))
        if not 1 <= count <= MAX_ITEMS:
            raise WireError(f"ITEM count {count} out of 1..{MAX_ITEMS}")
        value = tuple(_piece(r) for _ in range(count))
    elif kind == Kind.END:
        value = StreamEnd(U64.unpack(r.take(8))[0])
    else:
        code, n = ERR_STRUCT.unpack(r.take(ERR_STRUCT.size))
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
