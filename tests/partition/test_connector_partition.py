"""A connector cut off from the cluster, its volume taken over (issue 13, scenario 1), with real
processes in network namespaces (tests/netlab.py): etcd in one, each storage node in its own,
and two connectors (FUSE mounts) in two more.

Connector a acknowledges a history of files, then its link goes down: it reaches neither the
nodes nor etcd. Every change tried on it meanwhile fails (none is acknowledged). Connector b
takes the volume over (``sofsctl volume takeover``) once a's lease has run out and reads every
acknowledged file byte-identical. The partition heals: each late write, delete and rename a
tries is refused (counted), and none of them reaches b.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys

import pytest

from tests.etcdnet import etcd_cluster, wait_until
from tests.netcluster import sofsctl

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0,
                                 reason="FUSE mounts need /dev/fuse and root"),
              pytest.mark.skipif(shutil.which("etcd") is None,
                                 reason="etcd not installed (scripts/install)")]

TTL = 3
SOFSCTL = [sys.executable, "-m", "sofsctl"]


def _in(host, data_dir, *args: str, timeout: float = 180):
    res = host.run([*SOFSCTL, "--data-dir", str(data_dir), *args], capture_output=True,
                   text=True, timeout=timeout)
    assert res.returncode == 0, f"sofsctl {' '.join(args)}: {res.stdout}{res.stderr}"
    return res


def _pid(client) -> int:
    return json.loads((client / "run" / "mounts" / "pacs.json").read_text())["pid"]


def _write(path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _refused(attempts) -> int:
    """How many of the changes fail (each must fail with EIO or EROFS, never succeed)."""
    n = 0
    for attempt in attempts:
        try:
            attempt()
        except OSError as e:
            assert e.errno in (errno.EIO, errno.EROFS), e
            n += 1
    return n


def test_a_cut_off_connector_is_taken_over_and_fenced(tmp_path, netlab):
    mounts, pids = [], []
    with etcd_cluster(tmp_path, nodes=3, disks=1, lab=netlab) as (_, _client, net):
        try:
            host_a, host_b = netlab.add_host("conn_a"), netlab.add_host("conn_b")
            a, b = net.client_dir("a"), net.client_dir("b")
            mnt_a, mnt_b = tmp_path / "mnt-a", tmp_path / "mnt-b"
            mnt_a.mkdir()
            mnt_b.mkdir()
            sofsctl(a, "volume", "create", "pacs", "--cos", "2")
            _in(host_a, a, "mount", "pacs", str(mnt_a), "--lease-ttl", str(TTL),
                "--checkpoint-interval", "3600")
            mounts.append(mnt_a)
            pids.append(_pid(a))
            acked = {}
            for i in range(10):
                name = f"study{i}.dcm"
                acked[name] = os.urandom(4000 + 1500 * i)
                _write(mnt_a / name, acked[name])
            os.rename(mnt_a / "study9.dcm", mnt_a / "final.dcm")
            acked["final.dcm"] = acked.pop("study9.dcm")

            host_a.link_down()  # a reaches neither the nodes nor etcd
            during = _refused([lambda: _write(mnt_a / "cut.dcm", b"written while cut off")])
            _in(host_b, b, "volume", "takeover", "pacs", str(mnt_b), "--wait", "60",
                "--lease-ttl", str(TTL))
            mounts.append(mnt_b)
            pids.append(_pid(b))
            for name, data in acked.items():
                assert (mnt_b / name).read_bytes() == data, name
            _write(mnt_b / "b.dcm", b"b owns the volume")

            host_a.link_up()
            after = _refused([
                lambda: _write(mnt_a / "late.dcm", b"a late write of a"),
                lambda: _write(mnt_a / "study0.dcm", b"overwritten by a"),
                lambda: os.unlink(mnt_a / "study1.dcm"),
                lambda: os.rename(mnt_a / "study2.dcm", mnt_a / "renamed.dcm"),
                lambda: os.mkdir(mnt_a / "late-dir"),
            ])
            assert (during, after) == (1, 5)
            wait_until(lambda: "read-only" in sofsctl(a, "status", check=False).stdout,
                       "connector a to report it lost the volume", timeout=30)
            for name, data in acked.items():
                assert (mnt_b / name).read_bytes() == data, name
            for name in ("cut.dcm", "late.dcm", "renamed.dcm", "late-dir"):
                assert not (mnt_b / name).exists(), name
            assert (mnt_b / "b.dcm").read_bytes() == b"b owns the volume"
            sofsctl(b, "umount", str(mnt_b))
            mounts.remove(mnt_b)
        finally:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for m in mounts:
                os.system(f"fusermount3 -u -z {m} 2>/dev/null")
