"""The volume write lease of a networked mount (issue 13), with real etcd, real nodes and real
FUSE mounts on two client hosts (data directories): the second mount is refused while the
first holds the lease; a first mount paused past its lease is overtaken, turns read-only when
it wakes up, and the nodes refuse whatever it still tries to store."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import time

import pytest

from tests.etcdnet import etcd_cluster
from tests.netcluster import sofsctl

from .conftest import needs_fuse

pytestmark = [pytest.mark.integration, needs_fuse,
              pytest.mark.skipif(shutil.which("etcd") is None,
                                 reason="etcd not installed (scripts/install)")]

TTL = 3


def _pid(client) -> int:
    return json.loads((client / "run" / "mounts" / "pacs.json").read_text())["pid"]


def test_one_writer_per_volume_and_a_paused_one_is_fenced(tmp_path):
    mounts, pids = [], []
    with etcd_cluster(tmp_path, nodes=3, disks=1) as (_, client, net):
        try:
            a, b = net.client_dir("a"), net.client_dir("b")
            mnt_a, mnt_b = tmp_path / "mnt-a", tmp_path / "mnt-b"
            for m in (mnt_a, mnt_b):
                m.mkdir()
            sofsctl(a, "volume", "create", "pacs", "--cos", "2")
            sofsctl(a, "mount", "pacs", str(mnt_a), "--lease-ttl", str(TTL),
                    "--checkpoint-interval", "3600")
            mounts.append(mnt_a)
            pids.append(_pid(a))
            (mnt_a / "study1.dcm").write_bytes(b"acknowledged on host a" * 100)
            sofsctl(a, "volume", "checkpoint", "pacs")
            uuid = json.loads((a / "volumes" / "pacs" / "volume.json").read_text())["uuid"]
            sofsctl(b, "volume", "restore", "pacs", "--uuid", uuid)

            res = sofsctl(b, "mount", "pacs", str(mnt_b), "--lease-ttl", str(TTL),
                          check=False)
            assert res.returncode == 1 and "is held by" in res.stdout + res.stderr, res
            assert not os.path.ismount(mnt_b)

            # host a pauses (SIGSTOP) past its lease; host b mounts the volume
            os.kill(pids[0], signal.SIGSTOP)
            deadline = time.monotonic() + 30
            while True:
                res = sofsctl(b, "mount", "pacs", str(mnt_b), "--lease-ttl", str(TTL),
                              "--checkpoint-interval", "3600", check=False)
                if res.returncode == 0:
                    break
                assert "is held by" in res.stdout + res.stderr, res
                assert time.monotonic() < deadline, "the paused mount's lease never ran out"
                time.sleep(1)
            mounts.append(mnt_b)
            pids.append(_pid(b))
            assert (mnt_b / "study1.dcm").read_bytes() == b"acknowledged on host a" * 100
            (mnt_b / "study2.dcm").write_bytes(b"host b owns the volume now")

            # host a wakes up: read-only at its next renewal; reads go on
            os.kill(pids[0], signal.SIGCONT)
            deadline = time.monotonic() + 30
            while "read-only" not in (seen := sofsctl(a, "status", check=False)).stdout:
                assert time.monotonic() < deadline, f"host a did not notice: {seen.stdout}"
                time.sleep(0.5)
            assert "write lease" in seen.stdout and seen.returncode == 1
            with pytest.raises(OSError) as ei:
                (mnt_a / "late.dcm").write_bytes(b"a late write of host a")
            assert ei.value.errno == errno.EROFS
            assert (mnt_a / "study1.dcm").read_bytes() == b"acknowledged on host a" * 100
            assert not (mnt_b / "late.dcm").exists()
            assert "write lease" in (a / "log" / "mount-pacs.log").read_text()
            sofsctl(b, "umount", str(mnt_b))
            mounts.remove(mnt_b)
        finally:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for m in mounts:
                os.system(f"fusermount3 -u -z {m} 2>/dev/null")
