"""The network-namespace lab (tests/netlab.py): hosts reach each other and the test process,
link_down cuts a host off, kill() empties a namespace, nothing is left behind, a lab left by a
killed process is removed by the next lab, and sofs-node daemons run inside hosts."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from tests.netlab import STATE_DIR, NetLab, unavailable_reason

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PORT = 7700

ECHO_SERVER = textwrap.dedent(
    """
    import socketserver, sys
    class H(socketserver.BaseRequestHandler):
        def handle(self):
            while True:
                b = self.request.recv(65536)
                if not b:
                    return
                self.request.sendall(b)
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    socketserver.ThreadingTCPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
    """
)

ECHO_CLIENT = textwrap.dedent(
    """
    import socket, sys
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
        s.sendall(b"from inside")
        print(s.recv(100).decode())
    """
)


@pytest.fixture(autouse=True)
def _need_netns():
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"netlab: {reason}")


def echo(ip, port=PORT, data=b"hello", timeout=3.0):
    with socket.create_connection((ip, port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    return got


def lab_leftovers(namespaces, links):
    ns_list = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    link_list = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in link_list.splitlines()}
    return [ns for ns in namespaces if ns in ns_list] + [ln for ln in links if ln in names]


def test_three_hosts_reach_cut_kill_and_cleanup():
    with NetLab() as lab:
        h1, h2, h3 = (lab.add_host(n) for n in ("h1", "h2", "h3"))
        assert [h.ip for h in (h1, h2, h3)] == [str(lab.subnet.network_address + i) for i in (2, 3, 4)]
        assert all(len(ln) <= 15 for ln in lab.links())
        namespaces, links, state = lab.namespaces(), lab.links(), lab.state_file
        assert state.exists() and not lab_leftovers([], []) and len(lab_leftovers(namespaces, links)) == 7

        servers = {h.name: h.popen([sys.executable, "-c", ECHO_SERVER, h.ip, str(PORT)]) for h in (h1, h2)}
        for h in (h1, h2):
            h.wait_port(PORT, timeout=20, proc=servers[h.name])
            assert echo(h.ip, data=b"to " + h.name.encode()) == b"to " + h.name.encode()
        # The server listens on the host's own address, in its own namespace: not on ours.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", PORT), timeout=1).close()

        # host to host over the bridge
        r = h3.run([sys.executable, "-c", ECHO_CLIENT, h1.ip, str(PORT)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "from inside"

        # link_down: h2 is unreachable, its server keeps running
        h2.link_down()
        t0 = time.monotonic()
        with pytest.raises(OSError):
            echo(h2.ip, timeout=3)
        assert time.monotonic() - t0 < 3.5
        assert servers["h2"].poll() is None

        h2.link_up()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert echo(h2.ip, data=b"back") == b"back"
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

        # kill: h1's namespace is emptied, its server is gone
        assert servers["h1"].pid in h1.pids()
        h1.kill()
        assert servers["h1"].returncode == -signal.SIGKILL
        assert h1.pids() == []
        t0 = time.monotonic()
        with pytest.raises(OSError):
            echo(h1.ip, timeout=3)
        assert time.monotonic() - t0 < 3.5
        assert echo(h2.ip) == b"hello"  # the others are untouched

        h2_server = servers["h2"]
    # Everything is gone: processes, namespaces, veths, bridge, state file.
    assert h2_server.returncode == -signal.SIGKILL
    assert lab_leftovers(namespaces, links) == []
    assert not state.exists()
    lab.close()  # idempotent


def test_cleanup_on_exception():
    with pytest.raises(KeyboardInterrupt):
        with NetLab() as lab:
            h = lab.add_host("a")
            p = h.popen(["sleep", "600"])
            namespaces, links = lab.namespaces(), lab.links()
            raise KeyboardInterrupt
    assert p.returncode == -signal.SIGKILL
    assert lab_leftovers(namespaces, links) == []
    assert not lab.state_file.exists()


def test_lab_of_a_killed_process_is_removed_by_the_next_lab():
    script = textwrap.dedent(
        """
        import json, sys, time
        sys.path.insert(0, sys.argv[1])
        from tests.netlab import NetLab
        lab = NetLab().__enter__()
        hosts = [lab.add_host(n) for n in ("a", "b")]
        orphan = hosts[0].popen(["sleep", "600"])
        print(json.dumps({"ns": lab.namespaces(), "links": lab.links(), "state": str(lab.state_file),
                          "orphan": orphan.pid}), flush=True)
        time.sleep(600)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script, ROOT], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(child.stdout.readline())
    finally:
        child.kill()
        child.wait(10)
        child.stdout.close()
    state = info["state"]
    assert os.path.exists(state)
    assert sorted(lab_leftovers(info["ns"], info["links"])) == sorted(info["ns"] + info["links"])
    assert os.path.exists(f"/proc/{info['orphan']}")  # sleep outlived its parent, in the namespace

    with NetLab() as lab:
        assert lab_leftovers(info["ns"], info["links"]) == []
        assert not os.path.exists(state)
        stat = ""
        try:
            with open(f"/proc/{info['orphan']}/stat") as f:
                stat = f.read()
        except OSError:
            pass
        assert not stat or stat[stat.rfind(")") + 2] == "Z"  # gone, or a zombie awaiting its reaper
        assert lab.state_file.exists()
    assert not [p for p in STATE_DIR.glob("*.json") if p.name == os.path.basename(state)]


def test_sofs_node_in_three_hosts(netlab, tmp_path):
    from chunkstore.disk.store import DiskStore
    from chunkstore.errors import DiskUnavailable
    from chunkstore.net.client import RemoteDisk
    from chunkstore.placement.keys import chunk_key
    from chunkstore.protection.policy import REPLICA_INDEX, PolicyCode

    secret = b"netlab-cluster-secret-0123456789abcdef"
    secret_file = tmp_path / "cluster.secret"
    secret_file.write_bytes(secret + b"\n")
    os.chmod(secret_file, 0o600)
    env = dict(os.environ, PYTHONPATH=ROOT)
    nodes = []
    for name in ("n1", "n2", "n3"):
        host = netlab.add_host(name)
        d = tmp_path / name
        d.mkdir()
        DiskStore.initialise(d / "d0", "cluster-netlab", "d0")
        (d / "node.json").write_text(
            json.dumps(
                {
                    "node_id": name,
                    "host": host.ip,
                    "port": PORT,
                    "cluster_id": "cluster-netlab",
                    "secret_file": str(secret_file),
                    "disks": [{"id": "d0", "path": "d0"}],
                    "limits": {"handshake_timeout": 3, "shutdown_grace": 3},
                }
            )
        )
        log = open(d / "node.log", "wb")
        proc = host.popen(
            [sys.executable, "-m", "chunkstore.net.node", "--config", str(d / "node.json"),
             "--state-file", str(d / "state.json")],
            stdout=log,
            stderr=log,
            cwd=ROOT,
            env=env,
        )
        log.close()
        nodes.append((host, proc, d))
    rep = PolicyCode(1, 3, 0, 0)
    remotes = []
    try:
        for host, proc, d in nodes:
            try:
                host.wait_port(PORT, timeout=30, proc=proc)
            except Exception:
                pytest.fail(f"{host.name}: node did not start:\n{(d / 'node.log').read_text(errors='replace')}")
            rd = RemoteDisk(host.ip, PORT, "d0", secret, timeout=10)
            remotes.append(rd)
            assert rd.ping(0).node_id == host.name
            assert rd.stats() is not None
            data = f"piece on {host.name}".encode() * 100
            key = chunk_key(data)
            rd.put(key, REPLICA_INDEX, rep, len(data), data)
            assert rd.get(key, REPLICA_INDEX) == data
        # Each node only has its own piece.
        keys = [chunk_key(f"piece on {h.name}".encode() * 100) for h, _, _ in nodes]
        for i, rd in enumerate(remotes):
            assert [rd.has(k, REPLICA_INDEX) for k in keys] == [i == j for j in range(3)]
        # A node cut off the network: its client fails, the others still serve.
        nodes[0][0].link_down()
        with pytest.raises(DiskUnavailable):
            RemoteDisk(nodes[0][0].ip, PORT, "d0", secret, timeout=2).stats()
        assert remotes[1].get(keys[1], REPLICA_INDEX)
        nodes[0][0].link_up()
        # SIGTERM inside the namespace: a clean stop.
        host, proc, d = nodes[2]
        host.kill(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        for rd in remotes:
            rd.close()
