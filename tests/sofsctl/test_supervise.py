"""``sofsctl supervise``, the supervisor page: the renderer (every section, escaping, embedded
and networked documents), the ring's arcs against the real placement, Basic authentication
and its password file, the ASGI routes and the facts cache (trio's MockClock: no real
waiting); then, marked ``integration``, the real server as a subprocess on a real embedded
ring: ``/status.json`` against ``sofsctl status --json``, the page in headless Chromium
against the same document (with a screenshot), a disk gone missing, and sd_notify."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import threading
import time
from pathlib import Path

import click
import pytest
import trio
import trio.testing
from click.testing import CliRunner

from chunkstore.placement.ring import KEYSPACE_BITS, Ring, RingBuilder, key_point
from chunkstore.ring.localcluster import init_local_cluster
from sofsctl.common import Failure
from sofsctl.ringarcs import load_ring_arcs, ring_arcs
from sofsctl.supervise import parse_listen, supervise
from sofsctl.webauth import (
    CHALLENGE,
    Credentials,
    PasswordFileError,
    basic_authorization,
    load_or_create,
    read_password,
)
from sofsctl.webpage import render_error_page, render_page
from sofsctl.webserver import FactsCache, SupervisorApp, in_thread
from tests.sofsctl import chromium
from tests.sofsctl.webcheck import SupervisorProcess, page_facts

from .cli import make_embedded_ring, sofsctl

NOW = 1_800_000_000.0
EVIL = '<script>alert("x")</script>&'


def embedded_doc(**changes) -> dict:
    """A ``status --json`` document of an embedded ring: 6 disks, d3 missing, names that
    need escaping."""
    disks = [{"id": f"d{i}", "path": f"/srv/sofs/disks/d{i}", "state": "up",
              "total_bytes": 100 << 30, "free_bytes": (40 - i) << 30, "problem": None}
             for i in range(6)]
    disks[3] = {**disks[3], "state": "MISSING", "total_bytes": None, "free_bytes": None,
                "problem": "missing (/srv/sofs/disks/d3)"}
    doc = {
        "format": 1, "data_dir": "/srv/sofs", "cluster_id": "c-1", "networked": False,
        "health": {"status": "HEALTH_WARN", "exit": 1, "reasons": [
            {"level": "HEALTH_WARN", "text": "disk d3 missing (/srv/sofs/disks/d3)"},
            {"level": "HEALTH_WARN", "text": f"NFS export of volume {EVIL} failed: boom"}]},
        "chunks": {"total": 12, "protected": 0, "degraded": 10, "unrecoverable": 2,
                   "pieces": 50, "unrecoverable_keys": ["ab" * 32, "cd" * 32]},
        "disks": disks, "disks_unavailable": [], "nodes": [], "rebuild": None,
        "volumes": [
            {"name": "pacs", "uuid": "u1", "large_policy": "ec4+2:isa_l_rs_vand",
             "small_policy": "cos2", "state": "mounted", "mountpoint": "/mnt/pacs", "pid": 42,
             "checkpoint": {"seq": 7, "at": NOW - 300, "interval_s": 600, "error": None,
                            "gc_stopped": False}},
            {"name": EVIL, "uuid": "u2", "large_policy": "cos2", "small_policy": "cos2",
             "state": "not mounted", "mountpoint": None, "pid": None, "checkpoint": None}],
        "exports": [{"volume": EVIL, "kind": "nfs", "state": "failed", "bind": "0.0.0.0",
                     "port": 2049, "clients": "10.0.0.0/24:rw", "restarts": 3,
                     "message": "ganesha <exited>", "probe_ok": False}],
    }
    doc.update(changes)
    return doc


def networked_doc() -> dict:
    nodes = [{"id": f"n{i}", "address": f"10.0.0.1{i}:7700", "site": "site0", "state": "up",
              "answers": True, "epoch": 9, "error": None,
              "disks": [{"id": f"n{i}.d{j}", "state": "up"} for j in range(2)]}
             for i in range(1, 4)]
    nodes[2] = {**nodes[2], "state": "down", "answers": False, "epoch": None,
                "error": "connection refused"}
    return embedded_doc(
        networked=True, disks=[], nodes=nodes, disks_unavailable=["n3.d0", "n3.d1"],
        health={"status": "HEALTH_ERR", "exit": 2, "reasons": [
            {"level": "HEALTH_ERR", "text": "2 chunks unrecoverable"}]},
        rebuild={"state": "rebuilding", "epoch": 9, "chunks_done": 250, "chunks_total": 1000,
                 "rate_chunks_s": 50.0, "eta_s": 15.0, "last_report": None, "finished": 0.0},
        exports=[])


def networked_ring() -> dict:
    b = RingBuilder(6)
    for i in range(1, 4):
        for j in range(2):
            b.add_device(f"n{i}.d{j}", host=f"n{i}")
    return ring_arcs(b.build(), frozenset({"n3.d0", "n3.d1"}), networked=True)


def embedded_ring() -> dict:
    b = RingBuilder(6)
    for i in range(6):
        b.add_device(f"d{i}", host="local")
    return ring_arcs(b.build())


# --- the ring's arcs ----------------------------------------------------------------------------

def test_arcs_cover_the_ring_once_and_say_who_takes_each_key():
    b = RingBuilder(6)
    for i in range(6):
        b.add_device(f"d{i}", host=f"h{i % 3}")
    data = b.build()
    doc = ring_arcs(data)
    assert [d["id"] for d in doc["disks"]] == [f"d{i}" for i in range(6)]
    assert all(len(d["arcs"]) == 6 for d in doc["disks"])
    assert sum(d["share"] for d in doc["disks"]) == pytest.approx(1.0, abs=1e-4)
    ring = Ring(data)
    for n in range(300):  # the first owner of a key is the disk of the arc its point is on
        key = os.urandom(32) if n else bytes(32)
        point = key_point(key) / (1 << KEYSPACE_BITS)
        on = [d["id"] for d in doc["disks"] for start, length in d["arcs"]
              if (point - start) % 1.0 <= length]
        assert ring.owners(key, 1)[0] in on, (key.hex(), on)


def test_one_vnode_alone_owns_the_whole_ring():
    b = RingBuilder(1)
    b.add_device("d0", host="h")
    doc = ring_arcs(b.build())
    assert doc["disks"][0]["arcs"][0][1] == 1.0 and doc["disks"][0]["share"] == 1.0
    assert render_page(embedded_doc(), doc, now=NOW).count("<circle") >= 2


def test_load_ring_arcs_reads_the_embedded_ring(tmp_path):
    init_local_cluster(tmp_path, disks=3, vnodes=4)
    doc = load_ring_arcs(tmp_path)
    assert doc["networked"] is False and [d["id"] for d in doc["disks"]] == ["d0", "d1", "d2"]
    assert all(len(d["arcs"]) == 4 and not d["standby"] for d in doc["disks"])


# --- the page ------------------------------------------------------------------------------------

def test_embedded_page_shows_every_section_in_plain_words():
    doc = embedded_doc()
    page = render_page(doc, embedded_ring(), now=NOW, taken_at=NOW - 2, refresh_s=30)
    f = page_facts(page)
    assert f.sections == ["health", "ring", "capacity", "chunks", "rebuild", "volumes", "exports"]
    assert f.verdict == "HEALTH_WARN" and 'class="verdict warn"' in page
    assert len(f.reasons) == 2 and f.reasons[0] == "warning disk d3 missing (/srv/sofs/disks/d3)"
    assert set(f.disks) == {f"d{i}" for i in range(6)}
    assert "MISSING" in f.disks["d3"] and "missing (/srv/sofs/disks/d3)" in f.disks["d3"]
    assert "100.0 GiB" in f.disks["d0"] and "40.0 GiB" in f.disks["d0"]
    assert f.arcs == 36  # 6 disks x 6 vnodes, each in its colour
    assert page.count('class="mark"') == 6  # d3's arcs marked
    # never "fully protected" while a disk is missing: the words of sofsctl status
    assert f.chunk_line.startswith("12 chunks (protection unknown while disk d3 is missing")
    assert "ab" * 32 in page and "sofsctl chunk which KEY" in page
    assert "mounted" in f.volumes["pacs"] and "/mnt/pacs" in f.volumes["pacs"]
    assert re.search(r"number 7, taken 5 min ago \(every 10 min\)", f.volumes["pacs"])
    assert "facts gathered at" in f.text and "refreshes every 30 s" in f.text
    assert '<meta http-equiv="refresh" content="30">' in page
    assert "<script" not in page and "{'" not in page and "None" not in f.text


def test_everything_from_the_archive_is_escaped():
    page = render_page(embedded_doc(), embedded_ring(), now=NOW)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    assert "ganesha &lt;exited&gt;" in page
    f = page_facts(page)
    assert EVIL in f.volumes  # the name survives, as text
    assert f"NFS export of volume {EVIL} failed: boom" in f.reasons[1]
    err = render_error_page(f"no cluster at {EVIL}", now=NOW)
    assert "<script>" not in err and page_facts(err).verdict == "NO STATUS"


def test_healthy_page_says_nothing_needs_attention():
    doc = embedded_doc(health={"status": "HEALTH_OK", "exit": 0, "reasons": []},
                       chunks={"total": 3, "protected": 3, "degraded": 0, "unrecoverable": 0,
                               "pieces": 18, "unrecoverable_keys": []},
                       disks=[{**d, "state": "up", "problem": None, "total_bytes": 1 << 30,
                               "free_bytes": 1 << 29} for d in embedded_doc()["disks"]],
                       exports=[], volumes=[])
    page = render_page(doc, embedded_ring(), now=NOW, refresh_s=None)
    f = page_facts(page)
    assert f.verdict == "HEALTH_OK" and 'class="verdict ok"' in page and f.reasons == []
    assert "Nothing needs attention" in f.text
    assert f.chunk_line == "3 chunks (3 fully protected, 0 degraded, 0 unrecoverable); 18 pieces in all"
    assert 'class="mark"' not in page and "http-equiv" not in page
    assert "No volumes yet" in f.text and "No NFS or SMB exports" in f.text


def test_networked_page_shows_nodes_reachability_and_the_rebuild():
    page = render_page(networked_doc(), networked_ring(), now=NOW)
    f = page_facts(page)
    assert f.verdict == "HEALTH_ERR" and 'class="verdict err"' in page
    assert f.sections == ["health", "ring", "capacity", "chunks", "rebuild", "volumes", "exports"]
    assert page.count('data-node="') == 3 and 'data-node="n3"' in page
    row = re.search(r'<tr data-node="n3">.*?</tr>', page)
    assert row and "NO" in row[0] and "connection refused" in row[0] and "down" in row[0]
    assert "n3.d0 (up, standby, " in row[0]
    assert "map epoch 9" in page
    assert "Unavailable to the RING now: n3.d0, n3.d1" in f.text
    assert f.arcs == 36
    assert "Rebuilding for map epoch 9: 250 of 1000 chunks checked (25%), 50 chunks/s, about 15 s left" in f.text
    assert "do not report their disks' usage" in f.text
    assert f.chunk_line.startswith("12 chunks (10 degraded, 2 unrecoverable; 0 with every piece")


def test_page_without_ring_layout_still_renders():
    f = page_facts(render_page(embedded_doc(), None, now=NOW))
    assert f.arcs == 0 and "could not be read" in f.text and len(f.disks) == 6


def test_last_rebuild_and_checkpoint_states_in_words():
    doc = networked_doc()
    doc["rebuild"] = {"state": "idle", "epoch": 8, "chunks_done": 0, "chunks_total": 0,
                      "finished": NOW - 60, "last_report": {
                          "pieces_rebuilt": 31, "bytes_rebuilt": 3 << 20, "pieces_removed": 0,
                          "unrecoverable": 0, "seconds": 12.5}}
    doc["volumes"][0]["checkpoint"] = {"seq": None, "at": None, "interval_s": 600,
                                       "error": "NoSpace: disk full", "gc_stopped": True}
    f = page_facts(render_page(doc, networked_ring(), now=NOW))
    assert "The last one (map epoch 8) rebuilt 31 pieces (3.0 MiB), removed 0, found 0 " \
           "unrecoverable, in 12.5 s" in f.text
    assert "the last one failed: NoSpace: disk full" in f.volumes["pacs"]
    assert "another host took the volume over" in f.volumes["pacs"]


# --- authentication ----------------------------------------------------------------------------

def test_basic_credentials_are_checked_whole():
    c = Credentials("admin", "s3cret:with colon")
    assert c.check(basic_authorization("admin", "s3cret:with colon").encode())
    assert c.check(b"basic " + basic_authorization("admin", "s3cret:with colon").split()[1].encode())
    for wrong in (None, b"", b"Basic", b"Basic !!!", b"Bearer abc",
                  basic_authorization("admin", "s3cret").encode(),
                  basic_authorization("root", "s3cret:with colon").encode(),
                  basic_authorization("admin", "s3cret:with colon!").encode()):
        assert not c.check(wrong), wrong
    assert "s3cret" not in repr(c)


def test_password_file_is_made_once_owner_only_and_random(tmp_path):
    path = tmp_path / "supervise.password"
    creds, created = load_or_create(path)
    assert created and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert creds.user == "admin" and len(creds.password) >= 32
    again, created = load_or_create(path)
    assert not created and again.password == creds.password
    other = tmp_path / "other.password"
    assert load_or_create(other)[0].password != creds.password


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o620])
def test_password_file_open_to_others_is_refused(tmp_path, mode):
    path = tmp_path / "pw"
    path.write_text("hunter2\n")
    path.chmod(mode)
    with pytest.raises(PasswordFileError, match="chmod 600"):
        load_or_create(path)


def test_password_file_must_hold_a_password_in_a_regular_file(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(PasswordFileError, match="empty"):
        read_password(empty)
    with pytest.raises(PasswordFileError, match="not a regular file"):
        read_password(tmp_path)
    with pytest.raises(PasswordFileError, match="cannot create"):
        load_or_create(tmp_path / "no" / "such" / "dir")
    spaced = tmp_path / "spaced"
    spaced.write_text("pass word  \r\nsecond line\n")
    spaced.chmod(0o400)
    assert read_password(spaced) == "pass word"


# --- the ASGI application and the cache (no network, MockClock) ----------------------------------

class Gatherer:
    """A gather that counts its calls and can be held (a slow gather: ``release`` is a
    trio.Event) or made to fail."""

    def __init__(self, doc: dict) -> None:
        self.doc = doc
        self.calls = 0
        self.held = False
        self.release = trio.Event()
        self.fail: Exception | None = None

    async def __call__(self) -> tuple[dict, dict | None]:
        self.calls += 1
        if self.held:
            await self.release.wait()
        await trio.sleep(0.5)  # gathering takes time
        if self.fail is not None:
            raise self.fail
        return json.loads(json.dumps(self.doc)), embedded_ring()


async def request(app, path: str, auth: str | None = "right", method: str = "GET"
                  ) -> tuple[int, dict[bytes, bytes], bytes]:
    headers = []
    if auth is not None:
        headers.append((b"authorization", basic_authorization(
            "admin", "pw" if auth == "right" else auth).encode()))
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)
    await app(scope, receive, send)
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def run_app(test, doc=None, **cache_args):
    """Run TEST(app, gatherer) with a running cache, on a MockClock that jumps ahead
    whenever every task waits (a held gather included)."""
    gatherer = Gatherer(doc or embedded_doc())

    async def main():
        cache = FactsCache(gatherer, **cache_args)
        app = SupervisorApp(cache, Credentials("admin", "pw"), refresh_s=30)
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.run)
            await test(app, gatherer)
            nursery.cancel_scope.cancel()
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return gatherer


def test_routes_and_authentication():
    async def test(app, g):
        status, headers, body = await request(app, "/healthz", auth=None)
        assert (status, body) == (200, b"ok\n")
        for path in ("/", "/status.json", "/nope", "/healthz/x"):
            for auth in (None, "wrong"):
                status, headers, _ = await request(app, path, auth=auth)
                assert status == 401, (path, auth)
                assert headers[b"www-authenticate"] == CHALLENGE.encode()
        assert g.calls == 0  # nothing gathered for strangers
        status, headers, body = await request(app, "/status.json")
        assert status == 200 and headers[b"content-type"] == b"application/json"
        assert json.loads(body) == g.doc
        status, headers, body = await request(app, "/")
        assert status == 200 and headers[b"content-type"].startswith(b"text/html")
        assert b"script-src" not in headers[b"content-security-policy"]  # default-src 'none'
        assert headers[b"cache-control"] == b"no-store"
        assert page_facts(body.decode()).verdict == "HEALTH_WARN"
        status, _, body = await request(app, "/", method="HEAD")
        assert status == 200 and body == b""
        for path, method in (("/nope", "GET"), ("/", "POST"), ("/status.json", "DELETE"),
                             ("/favicon.ico", "GET")):
            assert (await request(app, path, method=method))[0] == 404, (path, method)
    run_app(test)


def test_many_requests_share_one_gather_and_facts_are_kept_a_few_seconds():
    async def test(app, g):
        results = []

        async def one():
            results.append(await request(app, "/status.json"))
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
        assert len(results) == 20 and all(r[0] == 200 for r in results)
        assert g.calls == 1
        assert app.cache.statistics().gathers == 1
        await trio.sleep(app.cache.max_age / 2)
        await request(app, "/")
        assert g.calls == 1
        await trio.sleep(app.cache.max_age)
        await request(app, "/")
        assert g.calls == 2
    run_app(test)


def test_a_slow_gather_does_not_hold_the_page():
    async def test(app, g):
        assert (await request(app, "/status.json"))[0] == 200
        g.doc["health"]["status"] = "HEALTH_ERR"
        g.held = True  # the next gather hangs
        await trio.sleep(app.cache.max_age + 1)
        status, _, body = await request(app, "/status.json")
        assert status == 200 and json.loads(body)["health"]["status"] == "HEALTH_WARN"
        assert app.cache.statistics().gathering
        # another request meanwhile starts no second gather
        await request(app, "/")
        assert g.calls == 2
        g.release.set()
        while app.cache.statistics().gathering:
            await trio.sleep(0.1)
        status, _, body = await request(app, "/status.json")
        assert json.loads(body)["health"]["status"] == "HEALTH_ERR"
    run_app(test)


def test_the_first_request_gets_a_retry_page_if_the_first_gather_hangs():
    async def test(app, g):
        g.held = True
        status, _, body = await request(app, "/")
        assert status == 503 and "still gathering" in body.decode()
        status, _, body = await request(app, "/status.json")
        assert status == 503 and "still gathering" in json.loads(body)["error"]
        g.release.set()
    run_app(test, first_wait=30)


def test_a_failing_gather_is_shown_and_tried_again():
    async def test(app, g):
        g.fail = Failure(f"no cluster at {EVIL}")
        status, _, body = await request(app, "/")
        assert status == 503 and "<script>" not in body.decode()
        assert f"no cluster at {EVIL}" in page_facts(body.decode()).text
        status, _, body = await request(app, "/status.json")
        assert status == 503 and json.loads(body) == {"error": f"no cluster at {EVIL}"}
        g.fail = None
        await trio.sleep(app.cache.max_age + 1)
        assert (await request(app, "/status.json"))[0] == 200
        g.fail = RuntimeError("surprise")
        await trio.sleep(app.cache.max_age + 1)
        status, _, body = await request(app, "/status.json")  # as status --json: no document
        assert status == 503 and "RuntimeError: surprise" in json.loads(body)["error"]
        status, _, body = await request(app, "/")  # the page keeps the older facts, says why
        f = page_facts(body.decode())
        assert status == 200 and f.sections[0] == "problem" and f.verdict == "HEALTH_WARN"
        assert "could not be gathered again: gathering the facts failed: RuntimeError: " \
               "surprise" in f.text
    run_app(test)


def test_in_thread_runs_the_blocking_gather_off_the_event_loop():
    seen = []

    def blocking():
        seen.append(threading.get_ident())
        return {"format": 1}, None
    assert trio.run(in_thread(blocking)) == ({"format": 1}, None)
    assert seen and seen[0] != threading.get_ident()


# --- the command's refusals ----------------------------------------------------------------------

@click.group()
@click.option("--data-dir", type=click.Path(path_type=Path))
@click.pass_context
def _cli(ctx: click.Context, data_dir: Path) -> None:
    ctx.obj = data_dir


_cli.add_command(supervise)


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:7780", ("127.0.0.1", 7780)), ("[::1]:0", ("::1", 0)),
    ("0.0.0.0:80", ("0.0.0.0", 80)), ("localhost:7780", ("localhost", 7780))])
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["7780", "127.0.0.1", ":7780", "127.0.0.1:70000", "[::g]:1",
                                  "::1:7780", "host name:1", "127.0.0.1:-1"])
def test_parse_listen_refuses(text):
    with pytest.raises(click.BadParameter):
        parse_listen(text)


@pytest.fixture
def cluster(tmp_path):
    init_local_cluster(tmp_path / "data", disks=3, vnodes=2)
    return tmp_path / "data"


def test_refuses_a_password_file_others_may_read(cluster):
    pw = cluster / "supervise.password"
    pw.write_text("hunter2\n")
    pw.chmod(0o644)
    res = CliRunner().invoke(_cli, ["--data-dir", str(cluster), "supervise"])
    assert res.exit_code == 1 and "chmod 600" in res.output and "Traceback" not in res.output


def test_refuses_without_a_cluster(tmp_path):
    res = CliRunner().invoke(_cli, ["--data-dir", str(tmp_path), "supervise"])
    assert res.exit_code == 1 and f"no cluster at {tmp_path}" in res.output
    assert not (tmp_path / "supervise.password").exists()


def test_refuses_an_address_in_use_and_a_bad_one(cluster):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = CliRunner().invoke(_cli, ["--data-dir", str(cluster), "supervise", "--listen",
                                        f"127.0.0.1:{port}"])
    assert res.exit_code == 1 and "Address already in use" in res.output, res.output
    res = CliRunner().invoke(_cli, ["--data-dir", str(cluster), "supervise", "--listen", "x"])
    assert res.exit_code == 2 and "is not HOST:PORT" in res.output


# --- the real server, a real ring, a real browser ------------------------------------------------



@pytest.fixture
def data(tmp_path):
    """An embedded ring of 6 disks, a volume ec4+2/cos2, and 6 chunks of each policy."""
    return make_embedded_ring(tmp_path / "data")


@pytest.fixture
def server(data):
    proc = SupervisorProcess(data)
    try:
        yield proc
    finally:
        assert proc.stop() == 0, "SIGTERM should stop it cleanly"
        assert not _alive(proc.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def status_json(data: Path) -> dict:
    res = sofsctl(data, "status", "--json")
    assert res.returncode in (0, 1, 2), res.stderr
    return json.loads(res.stdout)


def assert_same_facts(served: dict, cli: dict) -> None:
    """The facts that cannot drift between two gathers a moment apart are equal (free space
    can: the disks share the host's file system)."""
    for key in ("format", "data_dir", "cluster_id", "networked", "health", "chunks",
                "disks_unavailable", "nodes", "rebuild", "volumes", "exports"):
        assert served[key] == cli[key], key
    def steady(disks):
        return [{k: v for k, v in d.items() if k != "free_bytes"} for d in disks]
    assert steady(served["disks"]) == steady(cli["disks"])


def assert_page_shows(facts, doc: dict) -> None:
    assert facts.verdict == doc["health"]["status"]
    assert len(facts.reasons) == len(doc["health"]["reasons"])
    for shown, r in zip(facts.reasons, doc["health"]["reasons"], strict=True):
        assert shown.endswith(r["text"])
    assert list(facts.disks) == [d["id"] for d in doc["disks"]]
    for d in doc["disks"]:
        assert d["state"] in facts.disks[d["id"]]
    assert list(facts.volumes) == [v["name"] for v in doc["volumes"]]
    assert facts.chunk_line.startswith(f"{doc['chunks']['total']} chunks")


needs_chromium = pytest.mark.skipif(not chromium.available(),
                                    reason="headless Chromium is not installed (apt install "
                                           "chromium; scripts/install does)")


@pytest.mark.integration
@needs_chromium
def test_page_and_json_match_status_json(server, data, tmp_path):
    served = server.status_json()
    assert served["health"]["status"] == "HEALTH_OK" and served["chunks"]["total"] == 12
    assert_same_facts(served, status_json(data))
    with chromium.Chromium() as browser:
        page = browser.load(server.url, "admin", server.password)
        assert page.status == 200 and page.challenges == 1
        facts = page_facts(page.html)
        assert_page_shows(facts, served)
        assert facts.arcs == 36 and facts.chunk_line.startswith("12 chunks (12 fully protected")
        shot = browser.screenshot(tmp_path / "supervisor-ok.png")
    assert shot.startswith(b"\x89PNG\r\n\x1a\n") and len(shot) > 20_000
    with chromium.Chromium() as browser:  # a fresh browser, a wrong password: no page
        page = browser.load(server.url, "admin", "not-" + server.password)
        assert page.status == 401 and "HEALTH_" not in page.html


@pytest.mark.integration
@needs_chromium
def test_page_shows_a_disk_gone_missing(server, data, tmp_path):
    assert server.status_json()["health"]["status"] == "HEALTH_OK"
    (data / "disks" / "d3").rename(tmp_path / "d3-moved-away")
    for _ in range(120):  # the cached facts expire within seconds
        served = server.status_json()
        if served["health"]["status"] != "HEALTH_OK":
            break
        time.sleep(1)
    assert served["health"]["status"] == "HEALTH_WARN"
    assert served["health"]["reasons"][0]["text"] == f"disk d3 missing ({data / 'disks' / 'd3'})"
    assert_same_facts(served, status_json(data))
    with chromium.Chromium() as browser:
        page = browser.load(server.url, "admin", server.password)
        facts = page_facts(page.html)
        assert_page_shows(facts, served)
        assert "MISSING" in facts.disks["d3"] and "fully protected" not in facts.chunk_line
        assert 'class="verdict warn"' in page.html and page.html.count('class="mark"') == 6
        browser.screenshot(tmp_path / "supervisor-warn.png")
    assert (tmp_path / "supervisor-warn.png").stat().st_size > 20_000


@pytest.mark.integration
def test_healthz_and_refusals_over_real_http(server):
    assert server.get("/healthz")[0:3:2] == (200, b"ok\n")
    status, headers, _ = server.get("/status.json")
    assert status == 401 and headers["www-authenticate"] == CHALLENGE
    assert server.get("/status.json", "wrong")[0] == 401
    assert server.get("/nope", "")[0] == 404


@pytest.mark.integration
def test_says_ready_and_stopping_to_systemd(data, tmp_path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(120)
        proc = SupervisorProcess(data, env=dict(os.environ, NOTIFY_SOCKET=str(path)))
        try:
            states = sock.recv(4096).decode().split("\n")
            assert states[0] == "READY=1" and states[1].startswith("STATUS=supervisor page on ")
            assert proc.get("/healthz")[0] == 200  # it serves once READY=1 came
            proc.proc.send_signal(signal.SIGTERM)
            assert sock.recv(4096).decode() == "STOPPING=1"
            assert proc.proc.wait(60) == 0
        finally:
            assert proc.stop() == 0


def test_metrics_carry_the_verdict_and_the_exports_of_status_json():
    from prometheus_client.parser import text_string_to_metric_families

    async def test(app, g):
        assert (await request(app, "/metrics", auth=None))[0] == 401
        status, headers, body = await request(app, "/metrics")
        assert status == 200 and headers[b"content-type"].startswith(b"text/plain")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(body.decode()) for s in f.samples}
        assert samples[("sofs_health_status", ())] == 1  # HEALTH_WARN
        assert samples[("sofs_health_reasons", (("level", "HEALTH_WARN"),))] == 2
        assert samples[("sofs_health_chunks", (("state", "unrecoverable"),))] == 2
        assert samples[("sofs_health_chunks", (("state", "degraded"),))] == 10
        assert samples[("sofs_volume_mounted", (("volume", "pacs"),))] == 1
        assert samples[("sofs_volume_mounted", (("volume", EVIL),))] == 0
        export = (("kind", "nfs"), ("volume", EVIL))
        assert samples[("sofs_export_up", export)] == 0
        assert samples[("sofs_export_probe_ok", export)] == 0
        assert samples[("sofs_export_restarts_total", export)] == 3
    run_app(test)
