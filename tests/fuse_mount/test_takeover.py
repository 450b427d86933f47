"""Taking a volume over from the RING (issue 13), with real etcd, real nodes and real FUSE
mounts on three client hosts (data directories): host a is killed (-9) right after its
acknowledged changes, which exist only in its journal (no checkpoint after them); host b
takes the volume over with ``sofsctl volume takeover`` and finds every one; host c waits as a
standby (``mount --standby``) and takes over by itself once host b is paused past its lease;
host b, woken up, is fenced: each of its late changes is refused and none reaches host c."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import time

import pytest

from tests.etcdnet import etcd_cluster, kill_and_unmount, mount_pid, wait_until, write_synced
from tests.netcluster import sofsctl

from .conftest import needs_fuse

pytestmark = [pytest.mark.integration, needs_fuse,
              pytest.mark.skipif(shutil.which("etcd") is None,
                                 reason="etcd not installed (scripts/install)")]

TTL = 3




def _stats(client) -> dict:
    res = sofsctl(client, "status", "--json", check=False)
    return json.loads(res.stdout)


def test_takeover_and_standby_bring_back_every_acknowledged_change(tmp_path):
    mounts, pids = [], []
    with etcd_cluster(tmp_path, nodes=3, disks=1) as (_, _client, net):
        try:
            a, b, c = net.client_dir("a"), net.client_dir("b"), net.client_dir("c")
            mnt = {h: tmp_path / f"mnt-{h}" for h in "abc"}
            for m in mnt.values():
                m.mkdir()
            sofsctl(a, "volume", "create", "pacs", "--cos", "2")
            sofsctl(a, "mount", "pacs", str(mnt["a"]), "--lease-ttl", str(TTL),
                    "--checkpoint-interval", "3600")
            mounts.append(mnt["a"])
            pids.append(mount_pid(a))
            # acknowledged on host a after its mount's checkpoint: only its journal has them
            acked = {f"study{i}.dcm": os.urandom(20_000 + i * 997) for i in range(12)}
            for name, data in acked.items():
                write_synced(mnt["a"] / name, data)
            os.mkdir(mnt["a"] / "series")
            os.rename(mnt["a"] / "study0.dcm", mnt["a"] / "series" / "moved.dcm")
            acked["series/moved.dcm"] = acked.pop("study0.dcm")
            os.unlink(mnt["a"] / "study1.dcm")
            del acked["study1.dcm"]
            os.chmod(mnt["a"] / "study2.dcm", 0o600)
            os.kill(pids[0], signal.SIGKILL)  # host a is gone: nothing more leaves it
            os.system(f"fusermount3 -u -z {mnt['a']} 2>/dev/null")
            mounts.remove(mnt["a"])

            res = sofsctl(b, "volume", "takeover", "pacs", str(mnt["b"]), "--wait", "30",
                          "--lease-ttl", str(TTL))
            assert "taken over" in res.stdout, res
            mounts.append(mnt["b"])
            pids.append(mount_pid(b))
            for name, data in acked.items():
                assert (mnt["b"] / name).read_bytes() == data, name
            assert not (mnt["b"] / "study1.dcm").exists()
            assert not (mnt["b"] / "study0.dcm").exists()
            assert (mnt["b"] / "study2.dcm").stat().st_mode & 0o777 == 0o600
            assert "journal groups" in (b / "log" / "mount-pacs.log").read_text()

            # host c stands by; host b goes on writing, then hangs past its lease
            res = sofsctl(c, "mount", "pacs", str(mnt["c"]), "--standby", "--lease-ttl",
                          str(TTL))
            assert "standby" in res.stdout and not os.path.ismount(mnt["c"]), res
            for i in range(5):
                name = f"late{i}.dcm"
                acked[name] = os.urandom(5000 + i)
                write_synced(mnt["b"] / name, acked[name])
            os.kill(pids[1], signal.SIGSTOP)
            wait_until(lambda: os.path.ismount(mnt["c"]), "the standby to mount", timeout=60)
            mounts.append(mnt["c"])
            pids.append(mount_pid(c))
            for name, data in acked.items():
                assert (mnt["c"] / name).read_bytes() == data, name
            (mnt["c"] / "c.dcm").write_bytes(b"host c owns the volume now")

            # host b wakes up: every change it still tries is refused; none reaches host c
            os.kill(pids[1], signal.SIGCONT)
            refused = 0
            tries = [lambda: write_synced(mnt["b"] / "zombie.dcm", b"late"),
                     lambda: os.unlink(mnt["b"] / "study3.dcm"),
                     lambda: os.rename(mnt["b"] / "study4.dcm", mnt["b"] / "renamed.dcm"),
                     lambda: os.mkdir(mnt["b"] / "zombie-dir")]
            for attempt in tries:
                try:
                    attempt()
                except OSError as e:
                    assert e.errno in (errno.EROFS, errno.EIO), e
                    refused += 1
            assert refused == len(tries)
            for name, data in acked.items():
                assert (mnt["c"] / name).read_bytes() == data, name
            assert not (mnt["c"] / "zombie.dcm").exists()
            assert not (mnt["c"] / "renamed.dcm").exists()
            assert not (mnt["c"] / "zombie-dir").exists()
            volumes = {v["name"]: v for v in _stats(c)["volumes"]}
            journal = volumes["pacs"]["journal"]
            assert journal["token"] > 0 and journal["groups"] >= 1, journal
            sofsctl(c, "umount", str(mnt["c"]))
            mounts.remove(mnt["c"])
        finally:
            kill_and_unmount(pids, mounts)
            time.sleep(0.2)
