"""A volume's metadata checkpointed into the RING by its mount, and the volume restored from
the RING after its metadata (or the whole client data directory) is lost: real mounts, real
sofsctl, the embedded ring and a networked one of real nodes on loopback."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.netcluster import NetCluster
from tests.netcluster import sofsctl as net_sofsctl

from .conftest import Archive, needs_fuse, sofsctl

pytestmark = [pytest.mark.integration, needs_fuse]


def _tree(mnt: Path) -> dict[str, bytes]:
    """Every file under MNT (relative path -> content); symlinks as their target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(mnt):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath, name)
            rel = str(p.relative_to(mnt))
            out[rel] = (b"->" + os.readlink(p).encode()) if p.is_symlink() else p.read_bytes()
    return out


def _fill(mnt: Path, tag: str, n: int = 40) -> None:
    study = mnt / f"study-{tag}" / "series1"
    study.mkdir(parents=True)
    for i in range(n):
        (study / f"im{i:04d}.dcm").write_bytes(os.urandom(1000 + i * 997))
    (study / "big.dcm").write_bytes(os.urandom(9_000_000))
    os.symlink("series1/big.dcm", study.parent / "latest")
    os.setxattr(study / "im0000.dcm", "user.sofs.test", tag.encode())


def test_local_volume_restored_from_its_checkpoints(tmp_path):
    a = Archive(tmp_path)
    try:
        a.mount("--checkpoint-interval", "3600")
        _fill(a.mnt, "a")
        out = sofsctl(a.data, "volume", "checkpoint", "vol").stdout
        assert "volume vol: checkpoint 1 in the RING" in out, out
        status = sofsctl(a.data, "status").stdout
        assert "metadata checkpoint 1 taken 0 min ago" in status, status
        _fill(a.mnt, "b")  # after checkpoint 1: kept by the one taken at unmount
        expected = _tree(a.mnt)
        listed = sofsctl(a.data, "volume", "checkpoint", "vol", "--list").stdout
        assert listed.splitlines()[1].split()[0] == "1", listed
        a.umount()
        assert "metadata checkpoint 2 (unmount)" in a.log()
        # offline: another checkpoint runs in sofsctl itself and sends (almost) nothing new
        out = sofsctl(a.data, "volume", "checkpoint", "vol").stdout
        assert "checkpoint 3" in out and "pieces already stored" in out

        # the metadata is lost
        lost = tmp_path / "lost-volume"
        shutil.move(a.data / "volumes" / "vol", lost)
        res = sofsctl(a.data, "mount", "vol", str(a.mnt), check=False)
        assert res.returncode != 0
        listed = sofsctl(a.data, "volume", "restore", "--list").stdout
        assert "vol" in listed and "3" in listed, listed
        out = sofsctl(a.data, "volume", "restore", "vol").stdout
        assert "volume vol restored from checkpoint 3" in out, out
        again = sofsctl(a.data, "volume", "restore", "vol", check=False)
        assert again.returncode == 1 and "exists" in again.stderr
        assert json.loads((a.data / "volumes" / "vol" / "volume.json").read_text())["uuid"] == \
            json.loads((lost / "volume.json").read_text())["uuid"]
        assert sofsctl(a.data, "fsck", "vol").stdout.strip().endswith("clean")
        a.mount("--checkpoint-interval", "0")
        assert _tree(a.mnt) == expected
        f = a.mnt / "study-a" / "series1" / "im0000.dcm"
        assert os.getxattr(f, "user.sofs.test") == b"a"
        (a.mnt / "after-restore").write_bytes(b"the restored volume takes writes")
        a.umount()
        assert "metadata checkpoint" not in a.log().split("mounted at")[-1]  # interval 0: none

        # an older kept checkpoint, chosen explicitly, is the volume as it was then
        shutil.rmtree(a.data / "volumes" / "vol")
        out = sofsctl(a.data, "volume", "restore", "vol", "--checkpoint", "3").stdout
        assert "restored from checkpoint 1" in out, out
        a.mount("--checkpoint-interval", "0")
        assert (a.mnt / "study-a").is_dir() and not (a.mnt / "study-b").exists()
        assert _tree(a.mnt) == {k: v for k, v in expected.items() if k.startswith("study-a")}
    finally:
        a.cleanup()


def test_networked_client_lost_entirely_and_a_stale_writer_refused(tmp_path):
    cluster = NetCluster(tmp_path, nodes=3, disks=2)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    pids = []
    try:
        client = cluster.client_dir("client")
        net_sofsctl(client, "volume", "create", "pacs", "--ec", "2+1")
        net_sofsctl(client, "mount", "pacs", str(mnt), "--checkpoint-interval", "3600")
        pids.append(json.loads((client / "run" / "mounts" / "pacs.json").read_text())["pid"])
        _fill(mnt, "x")
        expected = _tree(mnt)
        out = net_sofsctl(client, "volume", "checkpoint", "pacs").stdout
        assert "checkpoint 1 in the RING" in out
        pacs_uuid = json.loads((client / "volumes" / "pacs" / "volume.json").read_text())["uuid"]
        # another host has a volume of the same name (names are unique per data directory)
        other = cluster.client_dir("other")
        net_sofsctl(other, "volume", "create", "pacs", "--cos", "1")
        mnt_o = tmp_path / "mnt-other"
        mnt_o.mkdir()
        net_sofsctl(other, "mount", "pacs", str(mnt_o))
        (mnt_o / "other.txt").write_bytes(b"another host's volume")
        net_sofsctl(other, "umount", str(mnt_o))  # a checkpoint at unmount
        # the client host dies: kill -9 of its mount, its whole data directory gone
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(0.5)
        net_sofsctl(client, "umount", str(mnt))  # clears the dead mount point
        shutil.rmtree(client)

        # a new host with the secret and the admin's map finds and restores the volume
        fresh = cluster.client_dir("fresh")
        listed = net_sofsctl(fresh, "volume", "restore", "--list").stdout
        assert listed.count("pacs") == 2 and pacs_uuid in listed, listed
        res = net_sofsctl(fresh, "volume", "restore", "pacs", check=False)
        assert res.returncode == 1 and "2 volumes named 'pacs'" in res.stderr, res.stderr
        assert f"--uuid {pacs_uuid}" in res.stderr
        out = net_sofsctl(fresh, "volume", "restore", "pacs", "--uuid", pacs_uuid).stdout
        assert "restored from checkpoint 1" in out, out
        assert net_sofsctl(fresh, "fsck", "pacs").stdout.strip().endswith("clean")
        net_sofsctl(fresh, "mount", "pacs", str(mnt), "--checkpoint-interval", "3600",
                    "--gc-grace", "20", "--gc-interval", "1")
        pids.append(json.loads((fresh / "run" / "mounts" / "pacs.json").read_text())["pid"])
        assert _tree(mnt) == expected
        assert "checkpoint 2" in net_sofsctl(fresh, "volume", "checkpoint", "pacs").stdout

        # a second host restores the volume too; once the live host has moved on, the second
        # host's checkpoints are refused: two hosts never interleave them unnoticed
        stale = cluster.client_dir("stale")
        net_sofsctl(stale, "volume", "restore", "pacs", "--uuid", pacs_uuid, "--checkpoint", "2")
        assert "checkpoint 3" in net_sofsctl(fresh, "volume", "checkpoint", "pacs").stdout
        res = net_sofsctl(stale, "volume", "checkpoint", "pacs", check=False)
        assert res.returncode == 1 and "another host wrote checkpoint 3" in res.stderr, \
            res.stderr
        assert "--take-over" in res.stderr
        listed = net_sofsctl(fresh, "volume", "checkpoint", "pacs", "--list").stdout
        assert [ln.split()[0] for ln in listed.splitlines()[1:]] == ["3", "2", "1"], listed
        # ... and so is mounting it, which would fork the volume, unless it takes over
        mnt2 = tmp_path / "mnt2"
        mnt2.mkdir()
        res = net_sofsctl(stale, "mount", "pacs", str(mnt2), check=False)
        assert res.returncode == 1 and "another host wrote checkpoint 3" in res.stderr, \
            res.stderr
        assert not os.path.ismount(mnt2)
        # the live copy deletes a file: its chunks are queued for the GC (grace 20 s) ...
        big = "study-x/series1/big.dcm"
        t0 = time.monotonic()
        (mnt / big).unlink()
        # ... then the stale copy takes over, and still has that file
        net_sofsctl(stale, "mount", "pacs", str(mnt2), "--take-over",
                    "--checkpoint-interval", "3600")
        pids.append(json.loads((stale / "run" / "mounts" / "pacs.json").read_text())["pid"])
        # the overtaken copy notices within a GC interval: read-only, GC stopped
        deadline = time.monotonic() + 15
        while "garbage collection is stopped" not in (
                seen := net_sofsctl(fresh, "status", check=False)).stderr:
            assert time.monotonic() < deadline, "the overtaken mount did not notice"
            time.sleep(0.5)
        assert seen.returncode == 1 and seen.stdout.startswith("HEALTH_WARN"), seen
        assert "taken over by another host" in seen.stdout.splitlines()[0], seen
        with pytest.raises(OSError) as ei:
            (mnt / "after-takeover.dcm").write_bytes(b"refused")
        assert ei.value.errno == errno.EROFS
        res = net_sofsctl(fresh, "volume", "checkpoint", "pacs", check=False)
        assert res.returncode == 1 and "another host wrote checkpoint 4" in res.stderr, \
            res.stderr
        # past the grace period the chunks are still there for the copy that took over
        time.sleep(max(0.0, t0 + 24 - time.monotonic()))
        assert "garbage collection stopped" in (fresh / "log" / "mount-pacs.log").read_text()
        assert (mnt2 / big).read_bytes() == expected[big]
        net_sofsctl(stale, "umount", str(mnt2))
        net_sofsctl(fresh, "umount", str(mnt))
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for m in (mnt, tmp_path / "mnt2"):
            os.system(f"fusermount3 -u -z {m} 2>/dev/null")
        cluster.cleanup()
