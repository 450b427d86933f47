"""The node's request handling, served in this process (no subprocess, so not "integration").

A :class:`~chunkstore.net.server.Node` runs in its own thread under ``trio.run`` on 127.0.0.1
over one real DiskStore; the test talks to it with RemoteDisk / BlockingConnection. Being in
one process lets the tests count what the node does per request: data hashes, worker-thread
hops, index lookups, and the byte budget at the moment the disk reads.
"""

import os
import threading
import time

import blake3
import pytest
import trio

import chunkstore.net.server as node_mod
from chunkstore.clock import FakeClock
from chunkstore.disk import container as ctr
from chunkstore.disk.store import DiskStore
from chunkstore.errors import ChunkCorrupt, ChunkStoreError, WireError
from chunkstore.net import wire
from chunkstore.net.client import RemoteDisk
from chunkstore.net.nodeconfig import NodeConfig
from chunkstore.net.server import Node
from chunkstore.placement.keys import chunk_key
from chunkstore.protection.policy import REPLICA_INDEX, PolicyCode

REP = PolicyCode(1, 3, 0, 0)
SECRET = b"in-process-cluster-secret-0123456789"


class InProcessNode:
    """A Node serving disk d0 of ``root`` from a background thread."""

    def __init__(self, root, limits=None):
        DiskStore.initialise(root / "d0", "cluster-t", "d0")
        self.store = DiskStore(root / "d0", cluster_id="cluster-t", disk_id="d0")
        doc = {"node_id": "n1", "port": 0, "cluster_id": "cluster-t", "secret_file": "secret",
               "disks": [{"id": "d0", "path": "d0"}], "limits": limits or {}}
        self.node = Node(NodeConfig.from_dict(doc, base=str(root)), SECRET, {"d0": self.store})
        self._ready = threading.Event()
        self._error = []
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self):
        async def serve():
            self.token = trio.lowlevel.current_trio_token()
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                await nursery.start(self.node.serve, listeners)
                self._ready.set()

        try:
            trio.run(serve)
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self._error.append(e)
            self._ready.set()

    def start(self):
        self._thread.start()
        assert self._ready.wait(10) and not self._error, self._error
        return self

    def remote(self, **kw):
        return RemoteDisk("127.0.0.1", self.port, "d0", SECRET, **kw)

    def connect(self):
        conn = wire.BlockingConnection.connect("127.0.0.1", self.port, 10)
        wire.client_handshake(conn, SECRET)
        return conn

    def stop(self):
        trio.from_thread.run_sync(self.node.request_stop, trio_token=self.token)
        self._thread.join(20)
        self.store.close()
        assert not self._error, self._error


@pytest.fixture
def node(tmp_path):
    n = InProcessNode(tmp_path).start()
    yield n
    n.stop()


class _CountingIndex:
    """Stands in for a DiskStore's rocksdict: counts lookups of piece ids (21-byte keys)."""

    def __init__(self, db):
        self._db = db
        self.lookups = 0

    def get(self, key, *args):
        if len(key) == 21:
            self.lookups += 1
        return self._db.get(key, *args)

    def __getattr__(self, name):
        return getattr(self._db, name)


def _count_hashes_of(monkeypatch, size):
    """Count blake3 hashers made over ``size`` bytes from now on, by any module."""
    made = []
    real = blake3.blake3

    def counting(data=b"", *args, **kw):
        if len(data) == size:
            made.append(size)
        return real(data, *args, **kw)

    monkeypatch.setattr(blake3, "blake3", counting)
    return made


def _count_thread_hops(monkeypatch):
    hops = []
    real = trio.to_thread.run_sync

    async def counting(fn, *args, **kw):
        hops.append(fn)
        return await real(fn, *args, **kw)

    monkeypatch.setattr(trio.to_thread, "run_sync", counting)
    return hops


def test_put_hashes_the_data_once(node, monkeypatch):
    """The wire's end-to-end check and the disk record use the same blake3-128: the node
    verifies it once and the disk stores that checksum (before: hashed twice)."""
    data = os.urandom(100_000)
    key = chunk_key(data)
    frame = wire.encode_request(1, wire.Put.make("d0", key, REPLICA_INDEX, REP, len(data), data))  # client side hash
    conn = node.connect()
    hashes = _count_hashes_of(monkeypatch, len(data))
    conn.send(frame)
    answer = conn.receive_frame()
    monkeypatch.undo()
    conn.close()
    assert answer.kind == wire.Kind.RESPONSE, answer
    assert hashes == [len(data)]
    info = node.store.piece(key, REPLICA_INDEX)
    assert info.checksum == wire.checksum(data)
    assert node.store.get(key, REPLICA_INDEX) == data  # verified against the stored checksum


def test_put_with_a_bad_checksum_stores_nothing(node):
    data = b"x" * 1000
    key = chunk_key(data)
    good = wire.Put.make("d0", key, REPLICA_INDEX, REP, len(data), data)
    bad = wire.Put("d0", key, REPLICA_INDEX, REP, len(data), bytes(16), data)
    conn = node.connect()
    conn.send(wire.encode_request(1, bad))
    f = conn.receive_frame()
    assert f.kind == wire.Kind.ERROR and "checksum" in f.body.message
    assert not node.store.has(key, REPLICA_INDEX)
    conn.send(wire.encode_request(2, good))
    assert conn.receive_frame().kind == wire.Kind.RESPONSE
    conn.close()


@pytest.mark.parametrize("verify", [True, False])
def test_get_is_one_thread_hop_and_one_index_lookup(node, monkeypatch, verify):
    """A GET is one DiskStore call: one worker thread hop, one index lookup (before: two of
    each), and the answer carries the checksum stored with the piece."""
    data = os.urandom(300_000)
    rd = node.remote()
    key = chunk_key(data)
    rd.put(key, REPLICA_INDEX, REP, len(data), data)
    index = _CountingIndex(node.store._db)
    monkeypatch.setattr(node.store, "_db", index)
    hops = _count_thread_hops(monkeypatch)
    conn = node.connect()
    conn.send(wire.encode_request(7, wire.Get("d0", key, REPLICA_INDEX, verify)))
    f = conn.receive_frame()
    conn.close()
    monkeypatch.undo()
    rd.close()
    assert f.kind == wire.Kind.RESPONSE and bytes(f.body.data) == data
    assert f.body.checksum == node.store.piece(key, REPLICA_INDEX).checksum
    assert (len(hops), index.lookups) == (1, 1)


def test_get_hashes_only_to_verify(node, monkeypatch):
    """GET data is hashed by the disk only when the request asks it to verify (the answer
    carries the stored checksum; before: the node hashed it again to build the answer)."""
    data = os.urandom(200_000)
    rd = node.remote()
    key = chunk_key(data)
    rd.put(key, REPLICA_INDEX, REP, len(data), data)
    conn = node.connect()
    for verify, expected in ((False, 0), (True, 1)):
        hashes = _count_hashes_of(monkeypatch, len(data))
        conn.send(wire.encode_request(1, wire.Get("d0", key, REPLICA_INDEX, verify)))
        f = conn.receive_frame(verify=False)  # the client's own check is not counted
        monkeypatch.undo()
        assert f.kind == wire.Kind.RESPONSE
        assert len(hashes) == expected, verify
    conn.close()
    rd.close()


def test_get_reserves_the_budget_before_the_disk_reads(node, monkeypatch):
    """While the disk reads a piece into memory, the node's byte budget already holds its
    length (the reservation happens in the worker thread, between lookup and read)."""
    data = os.urandom(1_000_000)
    rd = node.remote()
    key = chunk_key(data)
    rd.put(key, REPLICA_INDEX, REP, len(data), data)
    seen = []
    real = os.pread

    def pread(fd, n, off):
        if n == ctr.RECORD_HEADER_SIZE + len(data):
            seen.append(node.node.statistics().inflight_bytes)
        return real(fd, n, off)

    monkeypatch.setattr(os, "pread", pread)
    got = rd.get(key, REPLICA_INDEX, False)
    monkeypatch.undo()
    assert got == data
    assert seen and seen[0] >= len(data), seen
    # given back once the answer is sent, which may be just after the client has it
    deadline = time.monotonic() + 10
    while node.node.statistics().inflight_bytes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert node.node.statistics().inflight_bytes == 0
    rd.close()


def test_get_waits_for_the_budget_and_everything_is_answered(tmp_path):
    """Pipelined GETs of pieces larger than half the budget: they take turns (the budget is
    never exceeded) and all are answered."""
    n = InProcessNode(tmp_path, limits={"max_inflight_bytes": 1 << 20, "max_requests": 4}).start()
    try:
        rd = n.remote()
        datas = [os.urandom(700_000) for _ in range(3)]
        for d in datas:
            rd.put(chunk_key(d), REPLICA_INDEX, REP, len(d), d)
        peak = []
        real = os.pread

        def pread(fd, size, off):
            peak.append(n.node.statistics().inflight_bytes)
            return real(fd, size, off)

        conn = n.connect()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(os, "pread", pread)
            for i in range(12):
                d = datas[i % 3]
                conn.send(wire.encode_request(i, wire.Get("d0", chunk_key(d), REPLICA_INDEX, False)))
            answers = {}
            for _ in range(12):
                f = conn.receive_frame()
                answers[f.req_id] = bytes(f.body.data)
        conn.close()
        assert answers == {i: datas[i % 3] for i in range(12)}
        assert max(peak) <= 1 << 20
        rd.close()
    finally:
        n.stop()


def test_get_of_rotten_data_caught_end_to_end(node):
    """A piece that rotted on disk: a GET that asks the disk to verify gets ChunkCorrupt; one
    that does not still fails the client's end-to-end check, because the answer carries the
    checksum stored when the piece was written (before: one computed over the rotten data)."""
    data = os.urandom(50_000)
    rd = node.remote()
    key = chunk_key(data)
    rd.put(key, REPLICA_INDEX, REP, len(data), data)
    info = node.store.piece(key, REPLICA_INDEX)
    ctr.flip_byte(os.path.join(node.store.path, "containers", ctr.container_name(info.container)),
                  ctr.data_offset(info.offset) + 100)
    with pytest.raises(ChunkCorrupt):
        rd.get(key, REPLICA_INDEX, True)
    with pytest.raises(WireError, match="checksum"):
        rd.get(key, REPLICA_INDEX, False)
    assert rd.has(key, REPLICA_INDEX)  # the node still serves
    rd.close()


def test_internal_error_answered_with_the_unmapped_code(node, monkeypatch):
    """A bug in the node's handler is answered ERROR 255 ("anything else") naming the
    exception, and the node keeps serving."""
    real = node_mod.encode_response

    def broken(req_id, op, value):
        if op == wire.Op.HAS:
            raise RuntimeError("boom")
        return real(req_id, op, value)

    monkeypatch.setattr(node_mod, "encode_response", broken)
    conn = node.connect()
    conn.send(wire.encode_request(3, wire.Has("d0", bytes(20), REPLICA_INDEX)))
    f = conn.receive_frame()
    assert (f.kind, f.req_id, f.body.code) == (wire.Kind.ERROR, 3, 255)
    assert f.body.message == "internal error: RuntimeError: boom"
    exc = f.body.to_exception()
    assert isinstance(exc, ChunkStoreError)
    monkeypatch.undo()
    conn.send(wire.encode_request(4, wire.Ping(0)))
    assert conn.receive_frame().body == wire.Pong(0, "n1")
    conn.close()


def test_a_pooled_connection_is_reused_until_it_is_idle_for_max_idle_age_on_the_clock(node):
    clock = FakeClock()
    rd = node.remote(max_idle_age=60.0, clock=clock)
    dials = []
    real_dial = rd._dial
    rd._dial = lambda: dials.append(1) or real_dial()
    try:
        rd.stats()
        clock.advance(59)
        rd.stats()  # idle 59 s: the pooled connection is reused
        assert len(dials) == 1
        clock.advance(61)
        rd.stats()  # idle 61 s: dropped, dialled afresh
        assert len(dials) == 2
    finally:
        rd.close()
