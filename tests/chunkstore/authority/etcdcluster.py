"""Real etcd members on 127.0.0.1 for the authority tests, started with the product's own
command line (chunkstore.authority.etcdmember) and certificates (chunkstore.authority.pki)."""

from __future__ import annotations

import socket
import subprocess
import time

from chunkstore.authority import pki
from chunkstore.authority.etcd import EtcdClient
from chunkstore.authority.etcdmember import MemberSpec, etcd_argv, prepare_member_dir
from chunkstore.errors import EtcdUnavailable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Real etcd members on 127.0.0.1 (each its own process), stopped by pid at the end."""

    def __init__(self, data, n: int, host=None) -> None:
        """``host``: a tests.netlab Host to run every member in (its address), else
        127.0.0.1."""
        self.data = data
        self.host = host
        pki.ensure_ca(data, "test")
        ip = host.ip if host is not None else "127.0.0.1"
        self.members = [MemberSpec(f"e{i}", ip, free_port(), free_port()) for i in range(n)]
        self.procs: dict[str, subprocess.Popen] = {}
        self.client_tls = pki.issue(data, data / "pki", "client", "admin")

    def start(self, m: MemberSpec) -> None:
        tls = pki.issue(self.data, self.data / "pki", m.name, "etcd", [m.host], server=True)
        prepare_member_dir(self.data, m.name)
        log = open(self.data / f"{m.name}.log", "ab")
        argv = etcd_argv(self.data, m, self.members, tls, "sofs-test")
        kw = dict(stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.procs[m.name] = self.host.popen(argv, **kw) if self.host is not None else \
            subprocess.Popen(argv, **kw)
        log.close()

    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def client(self, **kw) -> EtcdClient:
        return EtcdClient(self.endpoints(), self.client_tls, **kw)

    def wait_ready(self, client: EtcdClient) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.get(b"/ready")
                return
            except EtcdUnavailable:
                for name, p in self.procs.items():
                    if p.poll() is not None:
                        raise AssertionError(f"etcd {name} exited {p.returncode}: "
                                             + (self.data / f"{name}.log").read_text()[-2000:]
                                             ) from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # polling for the member to come up, not a timed assertion

    def stop(self, name: str) -> None:
        p = self.procs.pop(name)
        p.kill()
        p.wait(30)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
