"""sofs-node as a real process on 127.0.0.1, driven through RemoteDisk and raw sockets.

Every test starts its own node on port 0 (the port comes from the state file) over two disk
directories in tmp; the fixture always stops it (SIGTERM, then SIGKILL by pid).
"""

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from chunkstore.disk.store import DiskStore
from chunkstore.errors import ChunkNotFound, DiskUnavailable, KeyConflict
from chunkstore.net import wire
from chunkstore.net.client import RemoteDisk
from chunkstore.net.wire import Kind, Op
from chunkstore.placement.clustermap import ClusterMap
from chunkstore.placement.keys import chunk_key
from chunkstore.protection.policy import REPLICA_INDEX, PolicyCode

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
REP = PolicyCode(1, 3, 0, 0)
EC = PolicyCode(2, 4, 2, 1)
MiB = 1024 * 1024
SECRET = b"test-cluster-secret-0123456789abcdef"
RSS_BOUND_KIB = 150 * 1024  # the node's resident size must stay below this (measured: ~40 MiB after the fuzz)
TEST_LIMITS = {"max_inflight_bytes": 48 * MiB, "max_requests": 8, "handshake_timeout": 3, "idle_timeout": 20,
               "frame_timeout": 5, "shutdown_grace": 5}


class NodeProcess:
    """A ``python -m chunkstore.net.node`` subprocess over two disks in ``root``."""

    def __init__(self, root, limits=None):
        self.root = root
        self.state = root / "state.json"
        self.log_path = root / "node.log"
        self.proc = None
        self.remotes = []
        secret = root / "secret"
        if not secret.exists():
            for d in ("d0", "d1"):
                DiskStore.initialise(root / d, "cluster-t", d)
            secret.write_bytes(SECRET + b"\n")
            os.chmod(secret, 0o600)
        self.config = root / "node.json"
        self.config.write_text(
            json.dumps(
                {
                    "node_id": "n1",
                    "host": "127.0.0.1",
                    "port": 0,
                    "cluster_id": "cluster-t",
                    "secret_file": "secret",
                    "disks": [{"id": "d0", "path": "d0"}, {"id": "d1", "path": "d1"}],
                    "limits": {**TEST_LIMITS, **(limits or {})},
                }
            )
        )

    extra_args: tuple[str, ...] = ()  # more sofs-node options (a subclass's)

    def start(self):
        if self.state.exists():
            self.state.unlink()
        env = dict(os.environ, PYTHONPATH=ROOT)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chunkstore.net.node", "--config", str(self.config), "--state-file", str(self.state),
                 *self.extra_args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=ROOT,
                env=env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"node exited with {self.proc.returncode}:\n{self.log()}")
            try:
                st = json.loads(self.state.read_text())
                if st["pid"] == self.proc.pid:
                    self.port = st["port"]
                    self.started(st)
                    return self
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        pytest.fail(f"node did not start:\n{self.log()}")

    def started(self, state: dict) -> None:
        """The node's state file once it serves (a subclass reads more of it)."""

    def remote(self, disk="d0", secret=SECRET, **kw):
        kw.setdefault("timeout", 10)
        rd = RemoteDisk("127.0.0.1", self.port, disk, secret, **kw)
        self.remotes.append(rd)
        return rd

    def connect(self, auth=True, timeout=5.0):
        conn = wire.BlockingConnection.connect("127.0.0.1", self.port, timeout)
        if auth:
            wire.client_handshake(conn, SECRET)
        return conn

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self, timeout=15):
        """SIGTERM, wait; returns the exit status."""
        self.signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self):
        if self.alive():
            self.signal(signal.SIGKILL)
            self.proc.wait(10)

    def rss_kib(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(field)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def cleanup(self):
        for rd in self.remotes:
            rd.close()
        if self.alive():
            try:
                self.signal(signal.SIGCONT)
                self.stop(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


@pytest.fixture
def make_node(tmp_path):
    nodes = []

    def make(limits=None, start=True):
        n = NodeProcess(tmp_path, limits)
        nodes.append(n)
        return n.start() if start else n

    yield make
    for n in nodes:
        n.cleanup()


@pytest.fixture
def node(make_node):
    return make_node()


def _put(rd, data, frag=REPLICA_INDEX, policy=REP):
    key = chunk_key(data)
    rd.put(key, frag, policy, len(data), data)
    return key


def _ok(node):
    """The node still serves a fresh, valid client."""
    rd = node.remote("d1")
    assert rd.ping(1).node_id == "n1"
    key = _put(rd, b"still alive %f" % time.time())
    assert rd.has(key, REPLICA_INDEX)
    rd.close()


# -- the API through RemoteDisk -----------------------------------------------------------


def test_every_operation_and_size(node):
    rd = node.remote()
    other = node.remote("d1")
    keys = {}
    for size in (0, 1, MiB, 16 * MiB):
        data = os.urandom(size)
        key = _put(rd, data)
        keys[key] = data
        _put(rd, data)  # idempotent
        assert rd.get(key, REPLICA_INDEX) == data
        assert rd.get(key, REPLICA_INDEX, False) == data
        assert rd.has(key, REPLICA_INDEX) and not other.has(key, REPLICA_INDEX)
        info = rd.piece(key, REPLICA_INDEX)
        assert (info.key, info.frag_idx, info.length, info.policy, info.chunk_size) == (key, REPLICA_INDEX, size, REP, size)
    frag = os.urandom(1000)
    fkey = chunk_key(b"ec chunk")
    rd.put(fkey, 5, EC, 4000, frag)
    assert rd.get(fkey, 5) == frag and rd.piece(fkey, 5).policy == EC
    with pytest.raises(KeyConflict):
        rd.put(fkey, 5, EC, 4000, frag[::-1])
    listed = {(p.key, p.frag_idx) for p in rd.pieces()}
    assert listed == {(k, REPLICA_INDEX) for k in keys} | {(fkey, 5)}
    assert list(other.pieces()) == []
    st = rd.stats()
    assert st.live_pieces == 5 and st.live_bytes >= 17 * MiB and st.fs_total_bytes > 0
    for key in keys:
        rd.delete(key, REPLICA_INDEX)
        rd.delete(key, REPLICA_INDEX)  # idempotent
        assert not rd.has(key, REPLICA_INDEX) and rd.piece(key, REPLICA_INDEX) is None
        with pytest.raises(ChunkNotFound, match=f"127.0.0.1:{node.port}"):
            rd.get(key, REPLICA_INDEX)
    assert rd.stats().live_pieces == 1
    report = rd.compact(0.0)
    assert report.containers_removed >= 0 and rd.get(fkey, 5) == frag
    rd.check_alive()
    assert rd.ping(7) == wire.Pong(0, "n1")
    with pytest.raises(DiskUnavailable, match="serves no disk"):
        node.remote("d9").has(fkey, 5)


def test_many_pieces_stream(node):
    rd = node.remote()
    keys = set()
    for i in range(2500):  # > 2 ITEM frames; pipelined on one raw connection for speed
        keys.add(chunk_key(b"%d" % i))
    conn = node.connect()
    items = list(keys)
    for i in range(0, len(items), 100):
        batch = items[i : i + 100]
        for j, k in enumerate(batch):
            conn.send(wire.encode_request(j + 1, wire.Put.make("d0", k, REPLICA_INDEX, REP, 1, b"x")))
        for _ in batch:
            assert conn.receive_frame().kind == Kind.RESPONSE
    conn.close()
    assert {p.key for p in rd.pieces()} == keys
    it = rd.pieces()
    next(it)
    it.close()  # abandoned stream: its connection is dropped, the next call works
    assert rd.has(items[0], REPLICA_INDEX)


def test_pipelined_requests_on_one_connection(node):
    conn = node.connect()
    datas = [os.urandom(random.randint(0, 300_000)) for _ in range(16)]
    reqs = []
    for d in datas:
        reqs.append(wire.Put.make("d0", chunk_key(d), REPLICA_INDEX, REP, len(d), d))
    for d in datas:
        reqs.append(wire.Get("d0", chunk_key(d), REPLICA_INDEX))
        reqs.append(wire.Has("d0", chunk_key(d), REPLICA_INDEX))
    # all puts first (answered before the gets are even sent), then gets and has pipelined
    for i, r in enumerate(reqs[:16]):
        conn.send(wire.encode_request(i, r))
    answers = {}
    for _ in range(16):
        f = conn.receive_frame()
        answers[f.req_id] = f
    for i, r in enumerate(reqs[16:], 16):
        conn.send(wire.encode_request(i, r))
    for _ in range(len(reqs) - 16):
        f = conn.receive_frame()
        answers[f.req_id] = f
    assert sorted(answers) == list(range(len(reqs)))
    for i, r in enumerate(reqs):
        f = answers[i]
        assert f.kind == Kind.RESPONSE and f.op == r.op
        if isinstance(r, wire.Get):
            assert bytes(f.body.data) == datas[(i - 16) // 2]
        if isinstance(r, wire.Has):
            assert f.body is True
    conn.close()


def test_concurrent_threads(node):
    rd = node.remote(max_connections=4)  # 8 threads share 4 connections
    errors = []

    def worker(t):
        try:
            for i in range(25):
                data = os.urandom(random.choice([0, 10, 5000, 200_000]))
                key = chunk_key(data + bytes([t, i]))
                rd.put(key, REPLICA_INDEX, REP, len(data), data)
                assert rd.get(key, REPLICA_INDEX) == data
                assert rd.has(key, REPLICA_INDEX)
                if i % 5 == 0:
                    rd.delete(key, REPLICA_INDEX)
                    assert not rd.has(key, REPLICA_INDEX)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert rd.stats().live_pieces == 8 * 20


# -- authentication -----------------------------------------------------------------------


def test_wrong_secret_refused_node_keeps_serving(node):
    good = node.remote()
    key = _put(good, b"before")
    bad = node.remote(secret=b"not-the-cluster-secret-at-all!!")
    with pytest.raises(wire.AuthError, match="prove"):
        bad.has(key, REPLICA_INDEX)
    # a client that skips the proof, or sends a request first, is refused and disconnected
    conn = node.connect(auth=False)
    conn.send(wire.encode_request(1, wire.Hello(wire.new_nonce())))
    assert conn.receive_frame().op == Op.HELLO
    conn.send(wire.encode_request(2, wire.Auth(b"\0" * 32)))
    f = conn.receive_frame()
    assert f.kind == Kind.ERROR and isinstance(f.body.to_exception(), wire.AuthError)
    with pytest.raises(ConnectionError):
        conn.receive_frame()
    conn.close()
    conn = node.connect(auth=False)
    conn.send(wire.encode_request(1, wire.Has("d0", key, REPLICA_INDEX)))
    f = conn.receive_frame()
    assert f.kind == Kind.ERROR and f.body.code == 2
    with pytest.raises(ConnectionError):
        conn.receive_frame()
    conn.close()
    assert good.get(key, REPLICA_INDEX) == b"before"
    log = node.log()
    assert "hung up after checking our proof" in log  # the wrong-secret client gave up itself
    assert log.count("authentication failed") >= 3


def test_handshake_and_idle_timeouts(make_node):
    node = make_node({"handshake_timeout": 0.5, "idle_timeout": 1})
    t0 = time.monotonic()
    silent = node.connect(auth=False)
    with pytest.raises(ConnectionError):
        silent.receive_frame()
    assert time.monotonic() - t0 < 3
    silent.close()
    rd = node.remote()
    key = _put(rd, b"x")
    time.sleep(1.5)  # the node closes the pooled idle connection; the next call re-dials once
    assert rd.get(key, REPLICA_INDEX) == b"x"
    assert "idle for" in node.log()


# -- malformed input --------------------------------------------------------------------------


def _valid_requests():
    d = os.urandom(64)
    k = chunk_key(d)
    return [
        wire.join(wire.encode_request(1, r))
        for r in (
            wire.Put.make("d0", k, REPLICA_INDEX, REP, len(d), d),
            wire.Get("d0", k, REPLICA_INDEX),
            wire.Has("d1", k, 3),
            wire.Piece("d0", k, REPLICA_INDEX),
            wire.Delete("d1", k, REPLICA_INDEX),
            wire.Pieces("d1"),
            wire.Stats("d0"),
            wire.Check("d0"),
            wire.Ping(3),
            wire.Hello(wire.new_nonce()),
            wire.MapGet(),
            # a well-formed map of another cluster: refused, so the node keeps serving epoch 0
            wire.MapPut(ClusterMap.create("another-cluster").to_json().encode()),
        )
    ]


def _mutate(rng, frame):
    buf = bytearray(frame)
    how = rng.randrange(7)
    if how == 0:
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif how == 1:
        del buf[rng.randrange(len(buf)) :]
    elif how == 2:
        buf[8:12] = rng.choice([0, 1, 2**20, 2**26, 2**30, 2**32 - 1, rng.randrange(2**32)]).to_bytes(4, "big")
    elif how == 3:
        buf[rng.randrange(4)] = rng.randrange(256)
    elif how == 4:
        pos = rng.randrange(len(buf))
        buf[pos:pos] = os.urandom(rng.randint(1, 16))
    elif how == 5:
        buf = bytearray(os.urandom(rng.randint(1, 64)))
    else:
        pass  # valid: mixed in so a connection carries on
    return bytes(buf)


def _drain(sock, timeout=3.0):
    """Half-close and read until the node closes; the node must not hang on us."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    sock.settimeout(timeout)
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if not sock.recv(65536):
                return
        raise AssertionError("the node kept a half-closed connection open")
    except (ConnectionResetError, BrokenPipeError):
        return
    except TimeoutError:
        raise AssertionError("the node did not close a half-closed connection") from None


def test_fuzz_raw_frames(node):
    rng = random.Random(1234)
    valid = _valid_requests()
    rss0 = node.rss_kib()
    deadline = time.monotonic() + 5
    cases = 0
    while cases < 2000 and time.monotonic() < deadline:
        authed = rng.random() < 0.8
        sock = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        try:
            if authed:
                wire.client_handshake(wire.BlockingConnection(sock), SECRET)
            payload = b"".join(_mutate(rng, rng.choice(valid)) for _ in range(rng.randint(1, 4)))
            cases += 1
            try:
                sock.sendall(payload)
            except (ConnectionResetError, BrokenPipeError):
                pass
            _drain(sock)
        finally:
            sock.close()
    assert cases >= 200, cases
    assert node.alive(), node.log()[-3000:]
    _ok(node)
    rss = node.rss_kib()
    assert rss < RSS_BOUND_KIB, (rss0, rss)
    assert node.rss_kib("VmHWM") < RSS_BOUND_KIB
    assert "Traceback" not in node.log()


def _raw_header(kind, op, body_len, req_id=1):
    return struct.pack(">BBBBII", 1, kind, op, 0, req_id, body_len)


def test_huge_frames_refused_without_allocating(node):
    _ok(node)
    rss0 = node.rss_kib()
    cases = [
        (False, _raw_header(Kind.REQUEST, Op.PUT, 2**30)),  # 1 GiB claim before the handshake
        (True, _raw_header(Kind.REQUEST, Op.PUT, 2**30)),  # 1 GiB claim: above MAX_FRAME
        (True, _raw_header(Kind.REQUEST, Op.PUT, 60 * MiB)),  # valid by the protocol, above this node's 48 MiB
        (True, _raw_header(Kind.REQUEST, Op.HAS, 60 * MiB)),  # a HAS is never that big
    ]
    for authed, header in cases:
        conn = node.connect(auth=authed)
        conn.sock.sendall(header + b"\0" * 1000)  # a little of the body; the rest never comes
        f = conn.receive_frame()
        assert f.kind == Kind.ERROR and f.body.code in (1, 2), f
        with pytest.raises((ConnectionError, ConnectionResetError)):
            conn.receive_frame()
        conn.close()
    assert node.rss_kib() - rss0 < 20 * 1024  # nothing near the claimed sizes was allocated
    _ok(node)
    assert "exceeds this node's limit" in node.log()


def test_bad_body_answered_connection_survives(node):
    """A frame whose header is fine but whose body is not gets an ERROR for its request id;
    the connection carries on (answers may come in any order)."""
    conn = node.connect()
    put = wire.join(wire.encode_request(6, wire.Put.make("d0", b"k" * 20, REPLICA_INDEX, REP, 5, b"hello")))
    corrupt = put[:-1] + b"X"  # end-to-end checksum mismatch: refused, never stored
    badfrag = bytearray(wire.join(wire.encode_request(7, wire.Has("d0", b"k" * 20, 1))))
    badfrag[-1] = 77
    conn.sock.sendall(corrupt + bytes(badfrag) + wire.join(wire.encode_request(8, wire.Ping(1))))
    answers = {f.req_id: f for f in (conn.receive_frame() for _ in range(3))}
    assert answers[6].kind == Kind.ERROR and answers[6].body.code == 1 and "checksum" in answers[6].body.message
    assert answers[7].kind == Kind.ERROR and answers[7].body.code == 1 and "fragment index" in answers[7].body.message
    assert answers[8].body == wire.Pong(0, "n1")
    conn.close()
    assert not node.remote().has(b"k" * 20, REPLICA_INDEX)


def test_back_pressure_bounds_memory(make_node):
    """A client that pipelines GETs of 8 MiB pieces and reads nothing: the node holds at most
    its byte budget (48 MiB) of answers in memory, not 30 x 8 MiB (measured without the
    budget: +240 MiB); all are answered later."""
    node = make_node({"max_requests": 32})
    rd = node.remote()
    data = os.urandom(8 * MiB)
    key = _put(rd, data)
    rss0 = node.rss_kib()
    conn = node.connect(timeout=20)
    n = 30
    for i in range(n):
        conn.send(wire.encode_request(i, wire.Get("d0", key, REPLICA_INDEX, False)))
    time.sleep(1.5)
    peak = node.rss_kib()
    got = 0
    while got < n:
        f = conn.receive_frame()
        assert f.kind == Kind.RESPONSE and len(f.body.data) == len(data), f
        got += 1
        peak = max(peak, node.rss_kib())
    conn.close()
    assert peak - rss0 < (48 + 32) * 1024, (rss0, peak)  # budget + slack, far below 240 MiB


# -- failures and lifecycle ---------------------------------------------------------------


def test_kill9_then_restart(make_node):
    node = make_node()
    rd = node.remote(timeout=5)
    data = {}
    for i in range(20):
        d = os.urandom(i * 1000)
        data[_put(rd, d)] = d
    node.kill()
    for call in (lambda: rd.has(next(iter(data)), REPLICA_INDEX), rd.stats, rd.check_alive):
        t0 = time.monotonic()
        with pytest.raises(DiskUnavailable, match=f"127.0.0.1:{node.port}"):
            call()
        assert time.monotonic() - t0 < 2
    node.start()
    rd2 = node.remote()
    for k, d in data.items():
        assert rd2.get(k, REPLICA_INDEX) == d
    assert rd2.stats().live_pieces == 20


def test_stalled_node_times_out(node):
    rd = node.remote(timeout=1)
    key = _put(rd, b"y")
    node.signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(DiskUnavailable, match="no answer within"):
            rd.get(key, REPLICA_INDEX)
        assert time.monotonic() - t0 < 3
    finally:
        node.signal(signal.SIGCONT)
    assert node.remote().get(key, REPLICA_INDEX) == b"y"


def test_sigterm_finishes_in_flight_and_exits_0(make_node):
    node = make_node()
    rd = node.remote(timeout=5)
    acked = []
    stop = threading.Event()

    def writer(t):
        i = 0
        while not stop.is_set():
            d = os.urandom(random.randint(1, 2 * MiB)) + bytes([t])
            try:
                acked.append((_put(rd, d), d))
            except DiskUnavailable:
                return
            i += 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.7)
    assert node.stop() == 0
    stop.set()
    for t in threads:
        t.join(10)
    log = node.log()
    assert "received SIGTERM" in log and "node n1 stopped" in log
    assert not node.state.exists()
    assert len(acked) > 0
    node.start()
    rd2 = node.remote()
    for k, d in acked:  # every acknowledged put is there
        assert rd2.get(k, REPLICA_INDEX) == d


def test_refuses_to_start_with_an_open_secret(make_node):
    node = make_node(start=False)
    os.chmod(node.root / "secret", 0o644)
    r = subprocess.run(
        [sys.executable, "-m", "chunkstore.net.node", "--config", str(node.config)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        timeout=30,
    )
    assert r.returncode == 2 and b"0600" in r.stderr
    os.chmod(node.root / "secret", 0o600)
    cfg = json.loads(node.config.read_text())
    cfg["bogus"] = 1
    node.config.write_text(json.dumps(cfg))
    r = subprocess.run(
        [sys.executable, "-m", "chunkstore.net.node", "--config", str(node.config)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        timeout=30,
    )
    assert r.returncode == 2 and b"unknown config keys: bogus" in r.stderr
