"""``sofsctl umount`` when something else holds the mount: another mount namespace with a copy
of it (named, the mount process ended, ``status`` truthful meanwhile), a process with a file
open there (named), and a volume name instead of the path."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from fuse_mount import holders

from .conftest import Archive, needs_fuse, sofsctl

pytestmark = [pytest.mark.integration, needs_fuse]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)


@pytest.fixture
def archive(tmp_path):
    a = Archive(tmp_path)
    a.mount()
    try:
        yield a
    finally:
        a.cleanup()


def _namespace_holding(a: Archive) -> subprocess.Popen:
    """A process in a new mount namespace: it gets a copy of every mount, ours included."""
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "600"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{proc.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
                break
        except OSError:
            pass
        time.sleep(0.05)
    return proc


def test_a_mount_held_by_another_namespace_is_named_and_ended(archive):
    a = archive
    (a.mnt / "kept.txt").write_bytes(b"flushed at umount")
    pid = next(iter(a.pids))
    holder = _namespace_holding(a)
    try:
        device = holders.device_of(str(a.mnt))
        assert device is not None
        found = holders.holders(device, os.path.realpath(a.mnt))
        assert [h.processes[0][0] for h in found] == [holder.pid]
        started = time.monotonic()
        res = sofsctl(a.data, "umount", a.volume, timeout=120)  # the volume's name
        took = time.monotonic() - started
        assert "1 other mount namespace(s)" in res.stdout, res.stdout
        assert f"{holder.pid} sleep" in res.stdout
        assert f"nsenter -t {holder.pid} -m umount -l {os.path.realpath(a.mnt)}" in res.stdout
        assert f"unmounted {os.path.realpath(a.mnt)} (volume {a.volume})\n" in res.stdout
        assert res.stdout.rstrip().endswith("the ring host stopped"), res.stdout
        assert not _alive(pid)
        assert took < 100  # not the 120 s timeout it used to wait out (a bound, not a speed)
        # the copy in the other namespace is disconnected, not serving stale data
        res = subprocess.run(["nsenter", "-t", str(holder.pid), "-m", "cat",
                              str(a.mnt / "kept.txt")], capture_output=True, text=True)
        assert res.returncode != 0 and ("not connected" in res.stderr or
                                        "No such" in res.stderr), res.stderr
    finally:
        _stop(holder)
    st = sofsctl(a.data, "status", check=False)
    assert f"volume {a.volume}: " in st.stdout and "not mounted" in st.stdout
    a.mount()
    assert (a.mnt / "kept.txt").read_bytes() == b"flushed at umount"


def test_status_tells_a_detached_mount_that_still_serves(archive):
    a = archive
    holder = _namespace_holding(a)
    try:
        subprocess.run(["umount", "-l", str(a.mnt)], check=True)  # detached here only
        st = sofsctl(a.data, "status", check=False)
        assert st.returncode == 1, st.stdout + st.stderr
        assert "still serves" in st.stdout.splitlines()[0]
        assert f"DETACHED from {os.path.realpath(a.mnt)}" in st.stdout
        res = sofsctl(a.data, "umount", a.volume, timeout=120)
        assert f"{holder.pid} sleep" in res.stdout
        assert not any(_alive(p) for p in a.pids)
    finally:
        _stop(holder)


def test_busy_umount_names_the_process_and_a_volume_name_is_accepted(archive):
    a = archive
    holder = subprocess.Popen(["sleep", "600"], cwd=a.mnt)
    try:
        res = sofsctl(a.data, "umount", str(a.mnt), check=False)
        assert res.returncode == 1 and "busy" in res.stderr
        assert f"{holder.pid} sleep" in res.stderr
    finally:
        _stop(holder)
    res = sofsctl(a.data, "umount", "nosuchvolume", check=False)
    assert res.returncode == 1 and "not mounted" in res.stderr
    sofsctl(a.data, "umount", a.volume)
    res = sofsctl(a.data, "umount", a.volume, check=False)
    assert res.returncode == 1 and f"volume {a.volume} is not mounted" in res.stderr


def test_mountinfo_parsing_unescapes_and_keeps_fuse_only():
    info = ("36 25 0:53 / /mnt/with\\040space rw - fuse.sofs sofs rw\n"
            "37 25 8:1 / /data rw - ext4 /dev/sda1 rw\n")
    assert holders._fuse_mounts(info) == {"0:53": "/mnt/with space"}
