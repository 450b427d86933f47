"""The node wire protocol: round trips, every validation rule, decoder fuzzing, the handshake."""

import math
import os
import socket
import struct
import threading

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chunkstore.disk.index import PieceInfo
from chunkstore.disk.records import CompactReport, DiskStats
from chunkstore.errors import (
    ChecksumMismatch,
    ChunkCorrupt,
    ChunkNotFound,
    ChunkStoreError,
    DiskFull,
    DiskUnavailable,
    FormatError,
    KeyConflict,
    NodeFailure,
)
from chunkstore.net import wire
from chunkstore.net.wire import Kind, Op, WireError
from chunkstore.protection.policy import REPLICA_INDEX, PolicyCode
from chunkstore.roots import MAX_SEQ, ROOT_MAX_BODY, RootRecord

KEY = bytes(range(20))
REP = PolicyCode(1, 3, 0, 0)
EC = PolicyCode(2, 4, 2, 1)
INFO = PieceInfo(KEY, 3, 7, 123456789, 4096, b"c" * 16, EC, 16384)
STATS = DiskStats(1, 2, 3, -4, 5, 6, 7, 8, 9)
REPORT = CompactReport(1, 2, 3, 4)
VOL = bytes(range(100, 116))


def _requests():
    return [
        wire.Hello(b"n" * 32),
        wire.Auth(b"p" * 32),
        wire.Ping(2**64 - 1),
        wire.Put.make("d0", KEY, REPLICA_INDEX, REP, 5, b"hello"),
        wire.Put.make("disk-1.a:b_c", KEY, 5, EC, 1 << 20, b""),
        wire.Get("d0", KEY, 0, True),
        wire.Get("d0", KEY, REPLICA_INDEX, False),
        wire.Delete("d0", KEY, 15),
        wire.Has("d" * 64, KEY, 1),
        wire.Piece("d0", KEY, 2),
        wire.Pieces("d0"),
        wire.Stats("d0"),
        wire.Compact("d0", 0.25),
        wire.Compact("d0", 1.0),
        wire.Check("d0"),
        wire.RootPut("d0", VOL, 1, b""),
        wire.RootPut("d0", VOL, MAX_SEQ, b"r" * ROOT_MAX_BODY),
        wire.RootGet("d0", VOL),
        wire.RootList("d0"),
    ]


def _responses():
    return [
        (Op.HELLO, wire.HelloReply(b"a" * 32, b"b" * 32)),
        (Op.AUTH, wire.AuthOk("node-1")),
        (Op.PING, wire.Pong(42, "n1")),
        (Op.PUT, None),
        (Op.DELETE, None),
        (Op.CHECK, None),
        (Op.GET, wire.Blob.of(b"payload")),
        (Op.GET, wire.Blob.of(b"")),
        (Op.HAS, True),
        (Op.HAS, False),
        (Op.PIECE, INFO),
        (Op.PIECE, None),
        (Op.STATS, STATS),
        (Op.COMPACT, REPORT),
        (Op.ROOT_PUT, wire.RootHeld(MAX_SEQ)),
        (Op.ROOT_GET, None),
        (Op.ROOT_GET, wire.RootFound(7, b"manifest")),
        (Op.ROOT_GET, wire.RootFound(1, b"")),
        (Op.ROOT_LIST, wire.RootSeqs(())),
        (Op.ROOT_LIST, wire.RootSeqs(((VOL, 3), (bytes(16), MAX_SEQ)))),
    ]


def _plain(v):
    """Comparable form of a decoded value (data fields are memoryviews)."""
    if isinstance(v, (wire.Put, wire.Blob)):
        return (type(v), v.checksum, bytes(v.data), getattr(v, "key", None), getattr(v, "policy", None))
    return v


def _valid_frames():
    frames = [wire.join(wire.encode_request(i, r)) for i, r in enumerate(_requests())]
    frames += [wire.join(wire.encode_response(7, op, v)) for op, v in _responses()]
    frames.append(wire.join(wire.encode_items(9, [INFO, INFO])))
    frames.append(wire.join(wire.encode_end(9, 2)))
    frames.append(wire.join(wire.encode_error(3, Op.GET, 3, "not found: ü")))
    return frames


# -- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("req", _requests(), ids=lambda r: type(r).__name__)
def test_request_round_trip(req):
    buf = wire.join(wire.encode_request(0xFFFFFFFF, req))
    assert buf[0] == wire.WIRE_VERSION
    f = wire.decode_frame(buf)
    assert (f.kind, f.op, f.req_id) == (Kind.REQUEST, req.op, 0xFFFFFFFF)
    assert _plain(f.body) == _plain(req)


@pytest.mark.parametrize("op,value", _responses(), ids=lambda x: repr(x)[:20])
def test_response_round_trip(op, value):
    f = wire.decode_frame(wire.join(wire.encode_response(7, op, value)))
    assert (f.kind, f.op, f.req_id) == (Kind.RESPONSE, op, 7)
    assert _plain(f.body) == _plain(value)


def test_stats_from_a_node_before_checksum_errors_decode_with_none_counted():
    frame = bytearray(wire.join(wire.encode_response(7, Op.STATS, STATS)))
    old = frame[:-8]  # the same answer without its last field, as the previous release sends
    struct.pack_into(">I", old, 8, len(old) - struct.calcsize(">BBBBII"))
    f = wire.decode_frame(bytes(old))
    assert f.body == DiskStats(1, 2, 3, -4, 5, 6, 7, 8, 0)


def test_stream_and_error_round_trip():
    f = wire.decode_frame(wire.join(wire.encode_items(9, [INFO] * wire.MAX_ITEMS)))
    assert (f.kind, f.op, f.body) == (Kind.ITEM, Op.PIECES, (INFO,) * wire.MAX_ITEMS)
    f = wire.decode_frame(wire.join(wire.encode_end(9, 1025)))
    assert (f.kind, f.body) == (Kind.END, wire.StreamEnd(1025))
    for code, cls in wire.ERROR_CODES.items():
        f = wire.decode_frame(wire.join(wire.encode_exception(5, Op.PUT, cls("boom"))))
        assert (f.kind, f.op, f.body) == (Kind.ERROR, Op.PUT, wire.ErrorReply(code, "boom"))
        exc = f.body.to_exception()
        assert type(exc) is cls and str(exc) == "boom"
    f = wire.decode_frame(wire.join(wire.encode_error(0, Op.NONE, 1, "x" * 5000)))
    assert len(f.body.message) == wire.MAX_MESSAGE
    f = wire.decode_frame(wire.join(wire.encode_error(0, Op.NONE, 1, "é" * 1000)))  # cut on a character
    assert f.body.message == "é" * 512


def test_error_codes_are_one_to_one():
    assert len(set(wire.ERROR_CODES.values())) == len(wire.ERROR_CODES)
    for cls in (ChunkNotFound, ChunkCorrupt, KeyConflict, DiskFull, DiskUnavailable, FormatError, ChecksumMismatch, WireError):
        assert wire.ERROR_CODES[wire.error_code(cls("x"))] is cls
    assert wire.error_code(wire.AuthError("x")) == 2  # not DiskUnavailable's code
    assert wire.error_code(ValueError("x")) == 255
    assert issubclass(WireError, FormatError) and issubclass(wire.AuthError, DiskUnavailable)


def test_an_unclassified_node_error_arrives_as_node_failure_not_the_root_class():
    exc = wire.ErrorReply.of(RuntimeError("index on fire")).to_exception()
    assert type(exc) is NodeFailure and "index on fire" in str(exc)
    assert isinstance(exc, ChunkStoreError)  # callers catching the layer still catch it


# -- validation ---------------------------------------------------------------------------


def _hdr(version=1, kind=1, op=Op.HAS, flags=0, req_id=1, body_len=None, body=b""):
    n = len(body) if body_len is None else body_len
    return struct.pack(">BBBBII", version, kind, op, flags, req_id, n) + body


def _has_body(disk=b"d0", key=KEY, frag=1):
    return bytes((len(disk),)) + disk + key + bytes((frag,))


def _err(buf, match=None, **kw):
    with pytest.raises(WireError, match=match):
        wire.decode_frame(buf, **kw)


def test_header_rules():
    good = _hdr(body=_has_body())
    assert wire.decode_frame(good).body == wire.Has("d0", KEY, 1)
    _err(good[:11], "shorter")
    _err(_hdr(version=2, body=_has_body()), "version")
    _err(_hdr(version=0, body=_has_body()), "version")
    _err(_hdr(kind=0, body=_has_body()), "kind")
    _err(_hdr(kind=6, body=_has_body()), "kind")
    _err(_hdr(op=99, body=_has_body()), "op code")
    _err(_hdr(op=0, body=_has_body()), "not valid")  # op 0 only in ERROR frames
    _err(_hdr(kind=Kind.ITEM, op=Op.GET, body=_has_body()), "not valid")
    _err(_hdr(flags=1, body=_has_body()), "flags")
    _err(_hdr(body_len=2**30) + b"x" * 100, "exceeds")  # 1 GiB claim: refused on the header
    _err(_hdr(body_len=2**32 - 1), "exceeds")
    _err(_hdr(op=Op.PUT, body_len=wire.MAX_FRAME - 20), "body of")  # beyond PUT's maximum
    _err(_hdr(body_len=1000) + b"x" * 1000, "body of")  # HAS is never that long
    _err(good + b"x", "header says")
    _err(good[:-1], "header says")
    with pytest.raises(WireError):
        wire.parse_header(good[:13])


def test_field_rules():
    _err(_hdr(body=_has_body(disk=b"")), "body")
    _err(_hdr(body=_has_body(disk=b"d/0")), "disk id")
    _err(_hdr(body=_has_body(disk=b"d0\n")), "disk id")
    _err(_hdr(body=_has_body(disk=b"\xff\xfe")), "disk id")
    _err(_hdr(body=_has_body(frag=16)), "fragment index")
    _err(_hdr(body=_has_body(frag=254)), "fragment index")
    short_key = _has_body(key=KEY[:19])  # the disk-id length then points past the body
    _err(_hdr(body=short_key), None)
    _err(_hdr(body=bytes((40,)) + b"d0" + KEY + b"\x01"), "too short")
    _err(_hdr(body=_has_body() + b"\0"), "unexpected bytes")
    _err(_hdr(op=Op.GET, body=_has_body() + b"\x02"), "GET flags")
    hello = wire.join(wire.encode_request(1, wire.Hello(b"n" * 32)))
    _err(hello[:12] + b"XXXX" + hello[16:], "magic")
    for ratio in (math.nan, math.inf, -0.1, 1.5):
        _err(_hdr(op=Op.COMPACT, body=b"\x02d0" + struct.pack(">d", ratio)), "min_dead_ratio")
    # answers
    _err(_hdr(kind=Kind.RESPONSE, body=b"\x02"), "0 or 1")
    _err(_hdr(kind=Kind.RESPONSE, op=Op.PIECE, body=b"\x02"), "0 or 1")
    _err(_hdr(kind=Kind.RESPONSE, op=Op.PIECE, body=b"\x01" + b"\0" * 60), "body")
    items = wire.join(wire.encode_items(1, [INFO]))
    _err(items[:12] + b"\x00\x00" + items[14:], "ITEM count")
    _err(items[:12] + b"\x00\x02" + items[14:], "too short")
    _err(_hdr(kind=Kind.ERROR, body=b"\x00\x63\x00\x00"), "error code")
    _err(_hdr(kind=Kind.ERROR, body=b"\x00\x01\x00\x02\xff\xfe"), "UTF-8")
    _err(_hdr(kind=Kind.ERROR, body=b"\x00\x01\x00\x05abc"), "too short")
    _err(_hdr(kind=Kind.ERROR, body=b"\x00\x01\x00\x01abc"), "unexpected bytes")


def test_root_rules():
    body = b"\x02d0" + VOL
    assert wire.decode_frame(_hdr(op=Op.ROOT_GET, body=body)).body == wire.RootGet("d0", VOL)
    _err(_hdr(op=Op.ROOT_GET, body=body[:-1]), "too short")
    _err(_hdr(op=Op.ROOT_GET, body=b"\x01d" + VOL[:-1]), "body of")  # checked on the header
    for seq in (0, MAX_SEQ + 1, 2**64 - 1):
        _err(_hdr(op=Op.ROOT_PUT, body=body + struct.pack(">Q", seq)), "seq")
        _err(_hdr(kind=Kind.RESPONSE, op=Op.ROOT_PUT, body=struct.pack(">Q", seq)), "seq")
        _err(_hdr(kind=Kind.RESPONSE, op=Op.ROOT_GET, body=b"\x01" + struct.pack(">Q", seq)), "seq")
        _err(_hdr(kind=Kind.RESPONSE, op=Op.ROOT_LIST, body=b"\0\0\0\x01" + VOL + struct.pack(">Q", seq)), "seq")
    _err(_hdr(op=Op.ROOT_PUT, body_len=1 + 64 + 24 + ROOT_MAX_BODY + 1), "body of")  # longest disk id
    _err(_hdr(op=Op.ROOT_PUT, body=b"\x02d0" + VOL + b"\0" * 7 + b"\x01" + b"x" * (ROOT_MAX_BODY + 1)), "too large")
    _err(_hdr(kind=Kind.RESPONSE, op=Op.ROOT_GET, body=b"\x02"), "0 or 1")
    _err(_hdr(kind=Kind.RESPONSE, op=Op.ROOT_GET, body=b"\x00\x00"), "unexpected bytes")
    _err(_hdr(kind=Kind.RESPONSE, op=Op.ROOT_GET, body=b"\x01" + b"\0" * 7), "too short")
    _err(_hdr(kind=Kind.RESPONSE, op=Op.ROOT_GET, body_len=1 + 8 + ROOT_MAX_BODY + 1), "body of")
    _err(_hdr(kind=Kind.RESPONSE, op=Op.ROOT_LIST, body=b"\0\0\0\x02" + VOL + b"\0" * 7 + b"\x01"), "too short")
    _err(_hdr(kind=Kind.RESPONSE, op=Op.ROOT_LIST, body=struct.pack(">I", wire.MAX_ROOTS + 1) + b"\0" * 24), "exceeds")
    _err(_hdr(kind=Kind.RESPONSE, op=Op.ROOT_LIST, body_len=4 + 24 * (wire.MAX_ROOTS + 1)), "body of")
    entries = tuple((i.to_bytes(16, "big"), i + 1) for i in range(wire.MAX_ROOTS))
    f = wire.decode_frame(wire.join(wire.encode_response(1, Op.ROOT_LIST, wire.RootSeqs(entries))))
    assert f.body.entries == entries
    with pytest.raises(FormatError, match="65536"):
        wire.encode_response(1, Op.ROOT_LIST, wire.RootSeqs(entries + ((bytes(16), 1),)))
    # a RootRecord is answered as RootFound (the volume id is the request's)
    rec = RootRecord(VOL, 5, b"body")
    f = wire.decode_frame(wire.join(wire.encode_response(1, Op.ROOT_GET, rec)))
    assert f.body == wire.RootFound(5, b"body")
    assert wire.ERROR_CODES[16].__name__ == "StaleRoot"


def test_put_rules():
    put = wire.join(wire.encode_request(1, wire.Put.make("d0", KEY, 255, REP, 5, b"hello")))
    body = bytearray(put[12:])
    pol = 3 + 20 + 1
    bad = bytearray(body)
    bad[pol : pol + 4] = b"\x09\x01\x00\x00"
    _err(put[:12] + bytes(bad), "policy")
    bad = bytearray(body)
    bad[pol - 1] = 0  # a replica stored under an EC fragment index
    _err(put[:12] + bytes(bad), "replica")
    ec = wire.join(wire.encode_request(1, wire.Put.make("d0", KEY, 5, EC, 5, b"hello")))
    bad = bytearray(ec)
    bad[12 + pol - 1] = 6  # 4+2 has fragments 0..5
    _err(bytes(bad), "out of range")
    corrupt = put[:-1] + b"X"
    _err(corrupt, "checksum")
    f = wire.decode_frame(corrupt, verify=False)  # the node checks later, off the event loop
    with pytest.raises(WireError, match="checksum"):
        f.body.verify()
    get = wire.join(wire.encode_response(1, Op.GET, wire.Blob.of(b"data")))
    _err(get[:-1] + b"X", "checksum")
    with pytest.raises(WireError):
        wire.decode_frame(get[:-1] + b"X", verify=False).body.verify()


def test_encoder_refuses_what_the_decoder_would():
    bad = [
        wire.Has("d0", KEY[:19], 1),
        wire.Has("d0", KEY, 16),
        wire.Has("", KEY, 1),
        wire.Has("x" * 65, KEY, 1),
        wire.Has("d 0", KEY, 1),
        wire.Has("dé", KEY, 1),
        wire.Put.make("d0", KEY, 0, REP, 1, b"x"),
        wire.Put("d0", KEY, 255, REP, 1, b"short", b"x"),
        wire.Compact("d0", 2.0),
        wire.Hello(b"short"),
        wire.Ping(-1),
        wire.RootPut("d0", VOL[:15], 1, b""),
        wire.RootPut("d0", VOL, 0, b""),
        wire.RootPut("d0", VOL, MAX_SEQ + 1, b""),
        wire.RootPut("d0", VOL, True, b""),
        wire.RootPut("d0", VOL, 1, b"x" * (ROOT_MAX_BODY + 1)),
        wire.RootGet("d0", VOL + b"x"),
        wire.RootList("d/0"),
    ]
    for req in bad:
        with pytest.raises(WireError):
            wire.encode_request(1, req)
    with pytest.raises(WireError):
        wire.encode_request(2**32, wire.Pieces("d0"))
    with pytest.raises(WireError):
        wire.encode_response(1, Op.HAS, None)
    for op, value in [(Op.ROOT_PUT, wire.RootHeld(0)), (Op.ROOT_GET, wire.RootFound(0, b"")),
                      (Op.ROOT_GET, wire.RootFound(1, b"x" * (ROOT_MAX_BODY + 1))),
                      (Op.ROOT_LIST, wire.RootSeqs(((VOL[:3], 1),))), (Op.ROOT_PUT, 5)]:
        with pytest.raises(WireError):
            wire.encode_response(1, op, value)
    with pytest.raises(WireError):
        wire.encode_items(1, [])
    with pytest.raises(WireError):
        wire.encode_error(1, Op.GET, 77, "x")


def test_max_data():
    big = memoryview(bytearray(wire.MAX_DATA + 1))
    put = wire.Put("d0", KEY, 255, REP, 1, b"\0" * 16, big)
    with pytest.raises(WireError, match="exceeds"):
        wire.encode_request(1, put)
    parts = wire.encode_request(1, wire.Put("d0", KEY, 255, REP, 1, b"\0" * 16, big[:-1]))
    assert wire.parse_header(parts[0]).frame_len <= wire.MAX_FRAME


# -- fuzzing the decoder --------------------------------------------------------------------

_VALID = _valid_frames()


def _decode_only_wire_errors(buf):
    try:
        f = wire.decode_frame(buf)
    except WireError:
        return
    # a valid frame re-encodes to the same bytes' length (it round-trips)
    assert wire.HEADER_SIZE + wire.parse_header(buf[:12]).body_len == len(buf)
    assert f.kind in set(Kind)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(buf):
    _decode_only_wire_errors(buf)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=12, max_size=12), st.binary(max_size=200))
def test_fuzz_random_headers_with_valid_shape(head, body):
    # force a plausible header so the body decoders are reached
    h = bytearray(head)
    h[0], h[3] = 1, 0
    h[1] = 1 + h[1] % 5
    h[8:12] = len(body).to_bytes(4, "big")
    _decode_only_wire_errors(bytes(h) + body)


_ROOT_OPS = (Op.ROOT_PUT, Op.ROOT_GET, Op.ROOT_LIST)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_ROOT_OPS),
    st.sampled_from([Kind.REQUEST, Kind.RESPONSE, Kind.ERROR]),
    st.sampled_from([b"", b"\x02d0", b"\x02d0" + VOL, b"\x01", b"\x00\x00\x00\x01"]),
    st.binary(max_size=120),
)
def test_fuzz_root_ops(op, kind, prefix, body):
    # root op headers with plausible prefixes, so each root body decoder is reached
    body = prefix + body
    _decode_only_wire_errors(wire.join([struct.pack(">BBBBII", 1, kind, op, 0, 5, len(body)), body]))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_VALID),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    st.one_of(st.none(), st.integers(0, 400)),
    st.binary(max_size=8),
)
def test_fuzz_mutated_valid_frames(frame, flips, cut, tail):
    buf = bytearray(frame)
    for pos, val in flips:
        buf[pos % len(buf)] = val
    if cut is not None:
        del buf[cut:]
    buf += tail
    if tail or cut is not None:  # keep the length field consistent half of the time
        if len(buf) >= 12 and (flips and flips[0][1] % 2):
            buf[8:12] = max(0, len(buf) - 12).to_bytes(4, "big")
    _decode_only_wire_errors(bytes(buf))


# -- handshake ----------------------------------------------------------------------------

SECRET = b"s" * 32


def test_proofs():
    nc, nn = wire.new_nonce(), wire.new_nonce()
    p_node = wire.proof(SECRET, wire.ROLE_NODE, nc, nn)
    p_client = wire.proof(SECRET, wire.ROLE_CLIENT, nc, nn)
    assert p_node != p_client  # one role's proof is useless as the other's
    assert wire.check_proof(SECRET, wire.ROLE_NODE, nc, nn, p_node)
    assert not wire.check_proof(b"t" * 32, wire.ROLE_NODE, nc, nn, p_node)
    assert not wire.check_proof(SECRET, wire.ROLE_NODE, nn, nc, p_node)  # nonces bound in order


def _fake_node(sock, secret, node_id="fake"):
    """The node side of the handshake with blocking sockets (the real one is in node.py)."""
    conn = wire.BlockingConnection(sock)
    try:
        hello = conn.receive_frame(max_body=wire.PREAUTH_MAX_BODY)
        nn = wire.new_nonce()
        node_proof = wire.proof(secret, wire.ROLE_NODE, hello.body.nonce, nn)
        conn.send(wire.encode_response(hello.req_id, Op.HELLO, wire.HelloReply(nn, node_proof)))
        auth = conn.receive_frame(max_body=wire.PREAUTH_MAX_BODY)
        if wire.check_proof(secret, wire.ROLE_CLIENT, hello.body.nonce, nn, auth.body.proof):
            conn.send(wire.encode_response(auth.req_id, Op.AUTH, wire.AuthOk(node_id)))
        else:
            conn.send(wire.encode_error(0, Op.NONE, 2, "authentication failed"))
    except (OSError, WireError):
        pass
    finally:
        conn.close()


@pytest.mark.parametrize("node_secret,client_secret,ok", [(SECRET, SECRET, True), (SECRET, b"w" * 32, False)])
def test_blocking_handshake(node_secret, client_secret, ok):
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    t = threading.Thread(target=_fake_node, args=(b, node_secret))
    t.start()
    conn = wire.BlockingConnection(a)
    try:
        if ok:
            assert wire.client_handshake(conn, client_secret) == "fake"
        else:
            with pytest.raises(wire.AuthError, match="node failed to prove"):
                wire.client_handshake(conn, client_secret)
    finally:
        conn.close()
        t.join(5)


def test_node_refuses_a_client_that_lies():
    """A client that cannot compute the proof gets ERROR AuthError."""
    a, b = socket.socketpair()
    a.settimeout(5)
    t = threading.Thread(target=_fake_node, args=(b, SECRET))
    t.start()
    conn = wire.BlockingConnection(a)
    try:
        conn.send(wire.encode_request(1, wire.Hello(wire.new_nonce())))
        conn.receive_frame()
        conn.send(wire.encode_request(2, wire.Auth(b"\0" * 32)))
        f = conn.receive_frame()
        assert f.kind == Kind.ERROR and isinstance(f.body.to_exception(), wire.AuthError)
    finally:
        conn.close()
        t.join(5)


def test_load_secret(tmp_path):
    p = tmp_path / "secret"
    p.write_bytes(b"0123456789abcdef0123\n")
    os.chmod(p, 0o644)
    with pytest.raises(wire.AuthError, match="0600"):
        wire.load_secret(p)
    os.chmod(p, 0o600)
    assert wire.load_secret(p) == b"0123456789abcdef0123"
    p.write_bytes(b"short\n")
    with pytest.raises(wire.AuthError, match="bytes"):
        wire.load_secret(p)
    with pytest.raises(wire.AuthError, match="cannot open"):
        wire.load_secret(tmp_path / "missing")


# -- the trio helper ----------------------------------------------------------------------


def test_trio_connection_frames():
    """TrioConnection reads pipelined frames split at every byte boundary and large bodies."""
    a, b = socket.socketpair()
    big = os.urandom(3 * 1024 * 1024 + 7)
    frames = [wire.join(wire.encode_request(i, r)) for i, r in enumerate(_requests())]
    frames.append(wire.join(wire.encode_request(99, wire.Put.make("d0", KEY, 255, REP, len(big), big))))
    stream = b"".join(frames)

    answers = []

    def client():
        # dribble the first frames byte by byte, then the rest at once; then read the answers
        for i in range(200):
            a.sendall(stream[i : i + 1])
        a.sendall(stream[200:])
        a.shutdown(socket.SHUT_WR)
        a.settimeout(10)
        conn = wire.BlockingConnection(a)
        answers.append(conn.receive_frame().body)
        answers.append(bytes(conn.receive_frame().body.data))
        try:
            conn.receive_frame()
        except ConnectionError:
            answers.append("eof")
        conn.close()

    async def reader():
        conn = wire.TrioConnection(trio.SocketStream(trio.socket.from_stdlib_socket(b)))
        got = []
        while (f := await conn.receive_frame()) is not None:
            got.append(f)
        await conn.send(wire.encode_response(1, Op.HAS, True))
        await conn.send(wire.encode_response(2, Op.GET, wire.Blob.of(big)))
        await conn.aclose()
        return got

    t = threading.Thread(target=client)
    t.start()
    try:
        got = trio.run(reader)
    finally:
        t.join(10)
    assert [f.req_id for f in got] == list(range(len(_requests()))) + [99]
    assert bytes(got[-1].body.data) == big
    assert answers == [True, big, "eof"]


def test_trio_connection_truncated():
    async def run(data):
        a, b = trio.socket.socketpair()
        await a.send(data)
        a.close()
        conn = wire.TrioConnection(trio.SocketStream(b))
        try:
            return await conn.receive_frame()
        finally:
            await conn.aclose()

    assert trio.run(run, b"") is None  # clean EOF between frames
    frame = wire.join(wire.encode_request(1, wire.Pieces("d0")))
    with pytest.raises(ConnectionError):
        trio.run(run, frame[:5])
    with pytest.raises(ConnectionError):
        trio.run(run, frame[:-1])
    with pytest.raises(WireError):
        trio.run(run, b"\x07" + frame[1:])


def test_chunkstore_errors_stay_rooted():
    assert issubclass(WireError, ChunkStoreError)


# -- the package --------------------------------------------------------------------------


def test_frame_expect_types_the_body():
    f = wire.decode_frame(wire.join(wire.encode_response(1, Op.HAS, True)))
    assert f.expect(bool) is True
    with pytest.raises(WireError, match="expected Blob in a RESPONSE HAS frame, got bool"):
        f.expect(wire.Blob)
    f = wire.decode_frame(wire.join(wire.encode_response(1, Op.PIECE, None)))
    assert f.expect_optional(PieceInfo) is None
    f = wire.decode_frame(wire.join(wire.encode_response(1, Op.PIECE, INFO)))
    assert f.expect_optional(PieceInfo) == INFO
    f = wire.decode_frame(wire.join(wire.encode_error(2, Op.NONE, 1, "bad")))
    assert f.expect(wire.ErrorReply) == wire.ErrorReply(1, "bad")


def test_package_reexports_the_protocol():
    """Callers outside chunkstore.net use the package namespace; every name it lists is there
    and is the submodule's own object."""
    from chunkstore.net.wire import (  # noqa: F401
        BlockingConnection,
        Kind,
        Op,
        WireError,
        auth,
        decode,
        encode,
        frames,
        load_secret,
        messages,
        transport,
    )

    for name in wire.__all__:
        assert hasattr(wire, name), name
    assert wire.Put is messages.Put and wire.parse_header is frames.parse_header
    assert wire.encode_request is encode.encode_request and wire.decode_frame is decode.decode_frame
    assert wire.load_secret is auth.load_secret and wire.TrioConnection is transport.TrioConnection
