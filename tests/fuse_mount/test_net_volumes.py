"""Several volumes of one networked data directory mounted at once (loopback nodes): each
mount has its own client state and admin socket, one healer acts for the directory, and the
admin commands reach the right mount."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from fuse_mount import control
from tests.netcluster import NetCluster, sofsctl

from .conftest import needs_fuse

pytestmark = [pytest.mark.integration, needs_fuse]


def test_two_volumes_mounted_from_one_networked_data_directory(tmp_path):
    cluster = NetCluster(tmp_path, nodes=6, disks=1)
    client = cluster.client_dir()
    mounts = {}
    try:
        for vol in ("ct", "mr"):
            sofsctl(client, "volume", "create", vol, "--ec", "4+2")
            mnt = tmp_path / f"mnt-{vol}"
            mnt.mkdir()
            sofsctl(client, "mount", vol, str(mnt))
            mounts[vol] = mnt
        again = sofsctl(client, "mount", "ct", str(tmp_path), check=False)
        assert again.returncode == 1 and "already mounted" in again.stderr
        data = {vol: os.urandom(3_000_000) for vol in mounts}
        for vol, mnt in mounts.items():
            (mnt / f"{vol}.dcm").write_bytes(data[vol])
        for vol, mnt in mounts.items():
            assert (mnt / f"{vol}.dcm").read_bytes() == data[vol]
            assert not (mnt / f"{'mr' if vol == 'ct' else 'ct'}.dcm").exists()  # separate
            res = sofsctl(client, "fsck", vol)
            assert res.stdout.strip().endswith("clean") and "1 files" in res.stdout
        deadline = time.monotonic() + 20  # healers look every 2 s
        while True:
            states = sorted(control.call(client, "cluster", volume=v)["rebuild"]["state"]
                            for v in mounts)
            if states == ["idle", "standby"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert states == ["idle", "standby"]  # one healer acts for the data directory
        status = sofsctl(client, "status").stdout
        assert "volume ct" in status and "volume mr" in status and "0 degraded" in status
        rep = sofsctl(client, "repair")  # runs in sofsctl itself, beside the mounts
        assert "all chunks fully protected" in rep.stdout
    finally:
        for mnt in mounts.values():
            subprocess.run([sys.executable, "-m", "sofsctl", "--data-dir", str(client),
                            "umount", str(mnt)], capture_output=True, timeout=300)
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        cluster.cleanup()
