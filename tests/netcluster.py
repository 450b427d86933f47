"""A networked RING of real ``sofs-node`` processes, set up the way an admin would (sofsctl).

:class:`NetCluster` creates the cluster in an admin data directory (``sofsctl cluster
create``), prepares each node (``sofsctl node init``), starts ``python -m chunkstore.net.node``
for it, and adds it to the map (``sofsctl node add``). Nodes run on 127.0.0.1 (each on its own
free port) or, given a :class:`tests.netlab.NetLab`, each in its own network namespace.
:meth:`NetCluster.cleanup` always stops every node by pid (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from chunkstore.authority import binding

ROOT = Path(__file__).resolve().parent.parent
SOFSCTL = [sys.executable, "-m", "sofsctl"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sofsctl(data_dir: Path, *args: str, check: bool = True, timeout: float = 120
            ) -> subprocess.CompletedProcess:
    res = subprocess.run([*SOFSCTL, "--data-dir", str(data_dir), *args], capture_output=True,
                         text=True, timeout=timeout, cwd=ROOT)
    if check and res.returncode != 0:
        raise AssertionError(f"sofsctl {' '.join(args)} failed ({res.returncode}):\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


class NodeHandle:
    """One storage node: its directory, address and process."""

    def __init__(self, cluster: "NetCluster", node_id: str, host=None) -> None:
        self.cluster = cluster
        self.id = node_id
        self.host = host  # a tests.netlab Host, or None for loopback
        self.ip = host.ip if host is not None else "127.0.0.1"
        self.port = 7700 if host is not None else free_port()
        self.address = f"{self.ip}:{self.port}"
        self.dir = cluster.root / "nodes" / node_id
        self.proc: subprocess.Popen | None = None

    def start(self) -> "NodeHandle":
        cmd = [sys.executable, "-m", "chunkstore.net.node", "--config", str(self.dir / "node.json"),
               "--state-file", str(self.dir / "state.json")]
        state = self.dir / "state.json"
        if state.exists():
            state.unlink()
        log = open(self.dir / "node.log", "ab")
        kw = dict(stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=ROOT)
        self.proc = self.host.popen(cmd, **kw) if self.host is not None else \
            subprocess.Popen(cmd, **kw)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.id} exited:\n{self.log()}")
            try:
                if json.loads(state.read_text())["pid"] == self.proc.pid:
                    return self
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"node {self.id} did not start:\n{self.log()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9, as a crashed server."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        try:
            return (self.dir / "node.log").read_text(errors="replace")
        except OSError:
            return ""


class NetCluster:
    """An admin data directory plus ``nodes`` storage nodes of ``disks`` disks each."""

    def __init__(self, root: Path, nodes: int = 6, disks: int = 2, lab=None,
                 sites: int = 1, etcd: str | None = None,
                 node_config: dict | None = None) -> None:
        self.root = root
        self.node_config = node_config or {}  # extra node.json keys (lease_ttl, limits...)
        self.admin = root / "admin"
        self.lab = lab
        self.nodes: dict[str, NodeHandle] = {}
        self.disks_per_node = disks
        self.sites = sites
        # etcd: its endpoints; the admin dir's pki then holds the CA and etcd-client.crt/.key
        sofsctl(self.admin, "cluster", "create", *(["--etcd", etcd] if etcd else []))
        for i in range(nodes):
            self.add_node(f"n{i + 1}")

    def add_node(self, node_id: str, *, add_to_map: bool = True) -> NodeHandle:
        host = self.lab.add_host(node_id) if self.lab is not None else None
        n = NodeHandle(self, node_id, host)
        sofsctl(self.admin, "node", "init", str(n.dir), "--node-id", node_id,
                "--listen", n.address, "--disks", str(self.disks_per_node))
        if self.node_config:
            path = n.dir / "node.json"
            path.write_text(json.dumps({**json.loads(path.read_text()), **self.node_config}))
        self.nodes[node_id] = n
        n.start()
        if add_to_map:
            site = f"site{(len(self.nodes) - 1) % self.sites}"
            sofsctl(self.admin, "node", "add", node_id, n.address, "--disks",
                    str(self.disks_per_node), "--site", site)
        return n

    def client_dir(self, name: str = "client") -> Path:
        """A client data directory holding the map and the secret (as an admin would copy)."""
        d = self.root / name
        d.mkdir(exist_ok=True)
        for f in ("clustermap.json", "cluster.secret"):
            src, dst = self.admin / f, d / f
            dst.write_bytes(src.read_bytes())
            os.chmod(dst, 0o600)
        # a cluster with etcd: its endpoints and a connector certificate of the client's own
        binding.bind(self.admin, d, f"connector-{name}", "connector")
        return d

    def cleanup(self) -> None:
        for n in self.nodes.values():
            n.stop()
