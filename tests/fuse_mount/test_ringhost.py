"""Several volumes of one embedded data directory mounted at the same time, served by the
data directory's ring host (fuse_mount.ringhost): real mounts, a real host process."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from chunkstore.errors import ClusterInUse
from chunkstore.ring.hosted import running_host
from chunkstore.ring.local import LocalRing

from .conftest import Archive, needs_fuse, sofsctl, stop_pid, wait_dead

pytestmark = [pytest.mark.integration, needs_fuse]

MiB = 1 << 20


class Volumes:
    """An archive with volumes ``pacs`` (made by Archive), ``reports`` and ``research``,
    each with its own mount point."""

    def __init__(self, root: Path) -> None:
        self.archive = Archive(root, volume="pacs")
        self.data = self.archive.data
        self.mnts = {"pacs": self.archive.mnt}
        for name in ("reports", "research"):
            sofsctl(self.data, "volume", "create", name)
            self.mnts[name] = root / f"mnt-{name}"
            self.mnts[name].mkdir()
        self.pids: dict[str, int] = {}

    def mount(self, name: str, *extra: str) -> int:
        sofsctl(self.data, "mount", name, str(self.mnts[name]), *extra, timeout=120)
        pid = json.loads((self.data / "run" / "mounts" / f"{name}.json").read_text())["pid"]
        self.pids[name] = pid
        self.archive.pids.add(pid)
        return pid

    def umount(self, name: str) -> str:
        return sofsctl(self.data, "umount", str(self.mnts[name]), timeout=300).stdout

    def cleanup(self) -> None:
        for name, mnt in self.mnts.items():
            if name != "pacs" and os.path.ismount(mnt):
                os.system(f"fusermount3 -u {mnt} 2>/dev/null || umount -l {mnt}")
        self.archive.cleanup()


@pytest.fixture
def volumes(tmp_path):
    v = Volumes(tmp_path)
    try:
        yield v
    finally:
        v.cleanup()


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def test_three_volumes_are_mounted_at_once_and_one_killed_leaves_the_others_serving(volumes):
    v = volumes
    contents = {name: os.urandom(6 * MiB) + name.encode() for name in v.mnts}
    for name in v.mnts:
        v.mount(name)
    host = running_host(v.data)
    assert host is not None, "the first mount starts the ring host"
    for name, mnt in v.mnts.items():
        _write(mnt / f"{name}.bin", contents[name])
    for name, mnt in v.mnts.items():
        assert (mnt / f"{name}.bin").read_bytes() == contents[name]
        assert sorted(p.name for p in mnt.iterdir() if p.name != "lost+found") == [f"{name}.bin"]

    status = json.loads(sofsctl(v.data, "status", "--json").stdout)
    assert {vol["name"]: vol["state"] for vol in status["volumes"]} == dict.fromkeys(v.mnts, "mounted")
    assert status["ring_host"]["pid"] == host.pid
    assert status["health"]["status"] == "HEALTH_OK", status["health"]

    # a mount killed -9: the other two go on, the host stays, the volume comes back whole
    os.kill(v.pids["reports"], signal.SIGKILL)
    assert wait_dead(v.pids["reports"])
    more = os.urandom(3 * MiB)
    _write(v.mnts["pacs"] / "more.bin", more)
    assert (v.mnts["research"] / "research.bin").read_bytes() == contents["research"]
    assert running_host(v.data) is not None and running_host(v.data).pid == host.pid
    v.umount("reports")  # clears the dead mount
    v.mount("reports")
    assert (v.mnts["reports"] / "reports.bin").read_bytes() == contents["reports"]
    assert (v.mnts["pacs"] / "more.bin").read_bytes() == more

    # only the last unmount stops the host, and then the ring is free at once
    v.umount("pacs")
    v.umount("research")
    assert running_host(v.data) is not None
    out = v.umount("reports")
    assert "the ring host stopped" in out
    assert wait_dead(host.pid)
    ring = LocalRing.open(v.data)
    ring.close()
    for name in ("pacs", "research", "reports"):
        sofsctl(v.data, "fsck", name)


def test_a_ring_host_that_dies_is_started_again_and_the_mounts_go_on(volumes):
    v = volumes
    v.mount("pacs")
    v.mount("reports")
    first = running_host(v.data)
    assert first is not None
    before = os.urandom(2 * MiB)
    _write(v.mnts["pacs"] / "before.bin", before)
    os.kill(first.pid, signal.SIGKILL)
    assert wait_dead(first.pid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        again = running_host(v.data)
        if again is not None and again.pid != first.pid:
            break
        time.sleep(0.2)
    else:
        pytest.fail("no mount started the ring host again:\n" + v.archive.log())
    assert again.port == first.port, "the host listens on its previous port again"
    # the clients take their disks back at their next revive round
    after = os.urandom(2 * MiB)
    deadline = time.monotonic() + 30
    while True:
        try:
            _write(v.mnts["reports"] / "after.bin", after)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert (v.mnts["pacs"] / "before.bin").read_bytes() == before
    assert (v.mnts["reports"] / "after.bin").read_bytes() == after
    v.umount("pacs")
    v.umount("reports")
    assert wait_dead(again.pid)


def test_disk_add_while_two_volumes_are_mounted_reaches_both(volumes):
    v = volumes
    v.mount("pacs")
    v.mount("reports")
    old = {name: os.urandom(5 * MiB) for name in ("pacs", "reports")}
    for name, data in old.items():
        _write(v.mnts[name] / "old.bin", data)
    res = sofsctl(v.data, "disk", "add")
    assert f"disk d6 added: {v.data / 'disks' / 'd6'}" in res.stdout, res.stdout
    # both clients write by the grown ring: pieces of new data land on d6 from each (6
    # chunks of EC 4+2 over 7 disks: all six miss d6 with a chance of 7**-6)
    for name in ("pacs", "reports"):
        before = _pieces_on(v.data, "d6")
        _write(v.mnts[name] / "new.bin", os.urandom(24 * MiB))
        assert _pieces_on(v.data, "d6") > before, f"{name}'s mount did not place on d6"
    for name, data in old.items():
        assert (v.mnts[name] / "old.bin").read_bytes() == data
    status = json.loads(sofsctl(v.data, "status", "--json").stdout)
    assert status["health"]["status"] == "HEALTH_OK", status["health"]


def _pieces_on(data_dir: Path, disk_id: str) -> int:
    rows = json.loads(sofsctl(data_dir, "df", "--json").stdout)["disks"]
    return next(r["live_pieces"] for r in rows if r["id"] == disk_id)


def test_an_exclusive_ring_mount_keeps_the_ring_and_says_why_another_cannot_mount(volumes):
    v = volumes
    pid = v.mount("pacs", "--exclusive-ring")
    assert running_host(v.data) is None
    with pytest.raises(ClusterInUse):
        LocalRing.open(v.data).close()
    res = sofsctl(v.data, "mount", "reports", str(v.mnts["reports"]), check=False)
    assert res.returncode == 1
    assert "--exclusive-ring" in res.stderr and "sofsctl umount" in res.stderr, res.stderr
    # its own admin socket answers the ring's operations, as the host's would
    assert "all chunks fully protected" in sofsctl(v.data, "repair").stdout
    v.umount("pacs")
    stop_pid(pid, sig=None)
