"""``sofs-node --metrics``: a real node process scraped over HTTP, and its collector alone.

The process tests start the node the way tests/chunkstore/net/test_node.py does (two disks in
tmp, port 0 for both the node and its metrics, the ports from the state file), drive it with
RemoteDisk, scrape ``/metrics`` with urllib and parse it with prometheus_client's parser; the
fixture always stops the node (SIGTERM, then SIGKILL by pid).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from chunkstore.disk.diskmetrics import DiskReport
from chunkstore.disk.records import DiskStats
from chunkstore.errors import ChunkCorrupt, ChunkNotFound
from chunkstore.metricsendpoint import MetricsEndpointError, new_registry, parse_address, serve_metrics
from chunkstore.net import wire
from chunkstore.net.nodemetrics import REQUEST_OPS, NodeGauges, NodeMetrics
from chunkstore.net.wire import Kind, Op
from chunkstore.placement.keys import chunk_key
from chunkstore.protection.policy import REPLICA_INDEX

from .test_node import REP, ROOT, NodeProcess

KiB = 1024


class MetricsNode(NodeProcess):
    """A NodeProcess started with ``--metrics 127.0.0.1:0``."""

    extra_args = ("--metrics", "127.0.0.1:0")

    def started(self, state: dict) -> None:
        self.metrics_port = state["metrics_port"]

    def scrape(self) -> dict[tuple[str, tuple], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            assert r.status == 200
            return samples(r.read().decode())


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, parsed with prometheus_client's parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scrape, name, **labels):
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def mnode(tmp_path):
    n = MetricsNode(tmp_path)
    try:
        yield n.start()
    finally:
        n.cleanup()


@pytest.mark.integration
def test_scrape_counts_requests_bytes_errors_and_disks(mnode):
    rd = mnode.remote("d0")
    rd.ping(1)
    before = mnode.scrape()
    blobs = [os.urandom(n) for n in (10 * KiB, 20 * KiB, 30 * KiB)]
    keys = []
    for data in blobs:
        key = chunk_key(data)
        rd.put(key, REPLICA_INDEX, REP, len(data), data)
        keys.append(key)
    for key, data in zip(keys, blobs, strict=True):
        assert rd.get(key, REPLICA_INDEX) == data
    missing = chunk_key(b"never stored")
    with pytest.raises(ChunkNotFound):
        rd.get(missing, REPLICA_INDEX)
    assert rd.has(keys[0], REPLICA_INDEX)
    disk_stats = rd.stats()
    after = mnode.scrape()

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("sofs_node_requests_total", op="put") == 3
    assert moved("sofs_node_requests_total", op="get") == 4
    assert moved("sofs_node_requests_total", op="has") == 1
    assert moved("sofs_node_requests_total", op="stats") == 1
    assert moved("sofs_node_request_seconds_count", op="put") == 3
    assert moved("sofs_node_request_seconds_count", op="get") == 4
    assert moved("sofs_node_request_seconds_sum", op="get") > 0
    assert moved("sofs_node_request_errors_total", op="get", kind="ChunkNotFound") == 1
    assert moved("sofs_node_request_errors_total", op="put", kind="ChunkNotFound") == 0
    stored = sum(len(b) for b in blobs)
    # the frames carry the data plus small headers and fields
    assert stored <= moved("sofs_node_received_bytes_total", op="put") < stored + 3 * 200
    assert stored <= moved("sofs_node_sent_bytes_total", op="get") < stored + 4 * 200
    assert moved("sofs_node_received_bytes_total", op="get") < 4 * 200

    # the disk gauges are the disk's own usage report
    assert value(after, "sofs_disk_up", disk="d0") == 1
    assert value(after, "sofs_disk_up", disk="d1") == 1
    assert value(after, "sofs_disk_pieces", disk="d0") == disk_stats.live_pieces == 3
    assert value(after, "sofs_disk_pieces", disk="d1") == 0
    assert value(after, "sofs_disk_live_bytes", disk="d0") == disk_stats.live_bytes
    assert value(after, "sofs_disk_used_bytes", disk="d0") == disk_stats.used_bytes
    assert value(after, "sofs_disk_fs_size_bytes", disk="d0") == disk_stats.fs_total_bytes
    assert 0 < value(after, "sofs_disk_fill_ratio", disk="d0") < 1
    assert value(after, "sofs_node_connections") == 1
    assert value(after, "sofs_node_info", node="n1") == 1
    assert value(after, "process_resident_memory_bytes") > 0


@pytest.mark.integration
def test_checksum_errors_and_auth_failures_are_counted(mnode):
    rd = mnode.remote("d0")
    data = b"rot me " + os.urandom(8 * KiB)
    key = chunk_key(data)
    rd.put(key, REPLICA_INDEX, REP, len(data), data)
    marker = data[100:132]
    flipped = 0
    for path in (mnode.root / "d0").rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            at = raw.find(marker)
            if at >= 0:
                with open(path, "r+b") as f:
                    f.seek(at)
                    f.write(bytes([raw[at] ^ 0xFF]))
                flipped += 1
    assert flipped == 1
    with pytest.raises(ChunkCorrupt):
        rd.get(key, REPLICA_INDEX, True)
    conn = mnode.connect(auth=False)  # a client with a wrong proof: refused (then answered)
    conn.send(wire.encode_request(1, wire.Hello(wire.new_nonce())))
    assert conn.receive_frame().op == Op.HELLO
    conn.send(wire.encode_request(2, wire.Auth(b"\0" * 32)))
    assert conn.receive_frame().kind == Kind.ERROR
    conn.close()
    scrape = mnode.scrape()
    assert value(scrape, "sofs_disk_checksum_errors_total", disk="d0") == 1
    assert value(scrape, "sofs_disk_checksum_errors_total", disk="d1") == 0
    assert value(scrape, "sofs_node_request_errors_total", op="get", kind="ChunkCorrupt") == 1
    assert value(scrape, "sofs_node_auth_failures_total") == 1


@pytest.mark.integration
def test_a_metrics_port_in_use_stops_the_node_from_starting(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        n = NodeProcess(tmp_path)
        res = subprocess.run([sys.executable, "-m", "chunkstore.net.node", "--config", str(n.config),
                              "--metrics", f"127.0.0.1:{port}"], capture_output=True, text=True,
                             cwd=ROOT, timeout=60)
    assert res.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in res.stderr


@pytest.mark.integration
def test_a_bad_metrics_address_is_a_usage_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "chunkstore.net.node", "--config", "x.json",
                          "--metrics", "7710"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 2 and "is not HOST:PORT" in res.stderr


# -- the collector and the endpoint, in process --------------------------------------------------


def _stats(**kw) -> DiskStats:
    base = dict(used_bytes=1000, live_pieces=3, live_bytes=900, dead_bytes=50, containers=1,
                fs_total_bytes=4000, fs_free_bytes=1000, fs_dev=1)
    return DiskStats(**{**base, **kw})


def _collect(metrics) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(metrics)
    out = {}
    for family in registry.collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_node_metrics_counts_and_gauges():
    m = NodeMetrics("n7")
    m.request("put", 0.002, 1000)
    m.request("put", 0.004, 3000, "DiskFull")
    m.request("hello", 0.1, 10)  # not a request op: ignored
    m.sent("put", 40)
    m.sent("put", 40)
    m.checksum_error("d1")
    m.watch(lambda: NodeGauges(connections=2, active_requests=1, inflight_bytes=4096, map_epoch=5,
                               max_seen_epoch=6,
                               disks=[DiskReport("d0", _stats()), DiskReport("d1", _stats(), "EIO"),
                                      DiskReport("d2", None, "missing")]))
    got = _collect(m)
    assert value(got, "sofs_node_requests_total", op="put") == 2
    assert value(got, "sofs_node_requests_total", op="get") == 0
    assert ("sofs_node_requests_total", (("op", "hello"),)) not in got
    assert value(got, "sofs_node_request_seconds_count", op="put") == 2
    assert value(got, "sofs_node_request_seconds_bucket", op="put", le="0.0025") == 1
    assert value(got, "sofs_node_request_seconds_bucket", op="put", le="0.005") == 2
    assert value(got, "sofs_node_request_errors_total", op="put", kind="DiskFull") == 1
    assert value(got, "sofs_node_received_bytes_total", op="put") == 4000
    assert value(got, "sofs_node_sent_bytes_total", op="put") == 80
    assert value(got, "sofs_disk_checksum_errors_total", disk="d1") == 1
    assert value(got, "sofs_node_connections") == 2
    assert value(got, "sofs_node_inflight_bytes") == 4096
    assert value(got, "sofs_node_map_epoch") == 5
    assert value(got, "sofs_disk_up", disk="d0") == 1
    assert value(got, "sofs_disk_up", disk="d1") == 0  # answers, but its last request failed
    assert value(got, "sofs_disk_up", disk="d2") == 0
    assert value(got, "sofs_disk_fill_ratio", disk="d0") == 0.75
    assert value(got, "sofs_disk_dead_bytes", disk="d1") == 50
    assert ("sofs_disk_pieces", (("disk", "d2"),)) not in got
    assert {op for (name, labels) in got if name == "sofs_node_requests_total"
            for _, op in labels} == set(REQUEST_OPS)


def test_failing_gauges_leave_the_counters_scrapable():
    m = NodeMetrics("n1")
    m.request("get", 0.001, 30)

    def broken():
        raise OSError("statvfs failed")

    m.watch(broken)
    got = _collect(m)
    assert value(got, "sofs_node_requests_total", op="get") == 1
    assert ("sofs_node_connections", ()) not in got


def test_parse_address():
    assert parse_address("127.0.0.1:9710") == ("127.0.0.1", 9710)
    assert parse_address("[::1]:0") == ("::1", 0)
    assert parse_address("node-1.example:80") == ("node-1.example", 80)
    for bad in ("9710", "127.0.0.1", "host:99999", "[zz]:1", "a b:1", ""):
        with pytest.raises(MetricsEndpointError):
            parse_address(bad)


def test_endpoint_serves_its_own_registry_and_says_why_it_cannot():
    m = NodeMetrics("n1")
    m.request("ping", 0.0001, 20)
    registry = new_registry()
    registry.register(m)
    endpoint = serve_metrics(registry, "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(endpoint.url, timeout=10) as r:
            got = samples(r.read().decode())
        assert value(got, "sofs_node_requests_total", op="ping") == 1
        with pytest.raises(MetricsEndpointError, match="already in use"):
            serve_metrics(new_registry(), "127.0.0.1", endpoint.port)
    finally:
        endpoint.close()
    with pytest.raises(MetricsEndpointError, match="not an address of this host"):
        serve_metrics(new_registry(), "192.0.2.1", 0)
