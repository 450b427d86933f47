"""A networked RING made with ``cluster create --etcd``: one real etcd member and real nodes.

:func:`etcd_cluster` starts the etcd member in the admin data directory (the product's own
command line and certificates, :mod:`tests.chunkstore.authority.etcdcluster`), gives the admin
its client certificate, makes the cluster with ``--etcd`` and adds the nodes; afterwards (also
on a failure) it stops every node and the member by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from chunkstore.authority import pki
from chunkstore.authority.etcd import EtcdClient
from tests.chunkstore.authority.etcdcluster import Cluster
from tests.netcluster import NetCluster


@contextlib.contextmanager
def etcd_cluster(root: Path, nodes: int = 3, disks: int = 1, **kw
                 ) -> Iterator[tuple[Cluster, EtcdClient, NetCluster]]:
    """(the etcd member, a client of it, the NetCluster); ``kw`` goes to NetCluster."""
    admin = root / "admin"
    lab = kw.get("lab")
    # in a network lab, etcd runs in a namespace of its own (cut nodes off it separately)
    etcd = Cluster(admin, 1, lab.add_host("etcd") if lab is not None else None)
    net = None
    try:
        etcd.start(etcd.members[0])
        with etcd.client() as client:
            etcd.wait_ready(client)
            pki.issue(admin, admin / "pki", "etcd-client", "admin")
            net = NetCluster(root, nodes=0, disks=disks, etcd=",".join(etcd.endpoints()), **kw)
            for i in range(nodes):
                net.add_node(f"n{i + 1}")
            yield etcd, client, net
    finally:
        if net is not None:
            net.cleanup()
        etcd.stop_all()


def wait_until(cond, what: str, timeout: float = 30) -> None:
    """Poll ``cond`` (real time) until it holds; AssertionError naming ``what`` after
    ``timeout`` seconds. For waiting on real processes (a lease to run out), not timing."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def mount_pid(client: Path, volume: str = "pacs") -> int:
    """The pid of the mount process of VOLUME in the data directory CLIENT."""
    return json.loads((client / "run" / "mounts" / f"{volume}.json").read_text())["pid"]


def write_synced(path: Path, data: bytes) -> None:
    """Write DATA to PATH and fsync it: once this returns, the write was acknowledged."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def kill_and_unmount(pids: list[int], mounts: list[Path]) -> None:
    """A test's cleanup: every process woken (SIGCONT) and killed, every mount point cleared."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for m in mounts:
        os.system(f"fusermount3 -u -z {m} 2>/dev/null")
