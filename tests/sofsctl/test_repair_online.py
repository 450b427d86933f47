"""``sofsctl repair --init-disk`` while a volume is mounted: the mount process holds the
embedded ring and runs the sweep, and it must honour --init-disk too (it ignored it: the disk
stayed left out and the command exited 5)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.fuse_mount.conftest import Archive, needs_fuse, sofsctl

pytestmark = [pytest.mark.integration, needs_fuse]


@pytest.fixture
def archive(tmp_path):
    a = Archive(tmp_path)
    a.mount()
    try:
        yield a
    finally:
        a.cleanup()


def test_init_disk_is_honoured_by_the_mount_process(archive, tmp_path):
    a = archive
    payload = os.urandom(9 << 20)
    (a.mnt / "study.dcm").write_bytes(payload)
    os.sync()
    shutil.move(str(a.data / "disks" / "d1"), str(tmp_path / "d1-failed"))  # the drive died
    res = sofsctl(a.data, "repair", check=False)
    assert res.returncode == 5, res.stdout + res.stderr
    assert "--init-disk d1" in res.stderr
    res = sofsctl(a.data, "repair", "--init-disk", "d1", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "disks back in use: d1" in res.stdout and "all chunks fully protected" in res.stdout
    assert any((a.data / "disks" / "d1" / "containers").iterdir())
    st = sofsctl(a.data, "status", check=False)
    assert st.stdout.startswith("HEALTH_OK"), st.stdout
    assert (a.mnt / "study.dcm").read_bytes() == payload
    # the events, in plain words in the log of the ring host that heals the ring (no
    # tracebacks, no Python reprs)
    log = a.host_log()
    assert "disk d1 is unavailable" in log
    assert "scrub for map epoch 0 started" in log and "scrub for map epoch 0 finished in" in log
    assert "pieces rebuilt" in log and "Traceback" not in log and "SweepSummary(" not in log


def test_status_shows_a_running_repair_which_ctrl_c_leaves_running_and_cancel_stops(archive):
    import signal
    import subprocess
    import sys
    import time
    a = archive
    (a.mnt / "big.dcm").write_bytes(os.urandom(24 << 20))
    os.sync()
    cmd = [sys.executable, "-m", "sofsctl", "--data-dir", str(a.data), "repair", "--rate", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        for _ in range(300):  # the sweep shows in status while it runs (polled, not timed)
            st = sofsctl(a.data, "status", check=False)
            line = next((ln for ln in st.stdout.splitlines() if ln.startswith("repair: ")), "")
            if line and not line.startswith("repair: 0/"):
                break
            time.sleep(0.1)
        assert "chunks" in line and "(cap 1.0 MiB/s)" in line, st.stdout
        assert "sofsctl repair --cancel" in line
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the job goes on where the ring is held
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, out + err
        assert "the repair goes on in the process that holds the ring" in err
        assert "sofsctl repair --attach" in err
        st = sofsctl(a.data, "status", check=False)
        assert any(ln.startswith("repair: ") for ln in st.stdout.splitlines()), st.stdout
        res = sofsctl(a.data, "repair", "--cancel")
        assert "the running sweep stops" in res.stdout
        for _ in range(300):
            st = sofsctl(a.data, "status", check=False)
            if not any(ln.startswith("repair: ") for ln in st.stdout.splitlines()):
                break
            time.sleep(0.1)
        assert not any(ln.startswith("repair: ") for ln in st.stdout.splitlines()), st.stdout
        res = sofsctl(a.data, "repair", "--attach")
        assert "no sweep is running; the last:" in res.stdout and "(cancelled)" in res.stdout
        res = sofsctl(a.data, "repair", "--rate", "0")  # uncapped: a full sweep to the end
        assert "repair rate: no cap" in res.stdout and "all chunks fully protected" in res.stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_maintenance_and_scrub_switches(archive):
    a = archive
    res = sofsctl(a.data, "maintenance", "on", "--reason", "swapping d3")
    assert "maintenance mode on since" in res.stdout
    st = sofsctl(a.data, "status", check=False)
    assert st.returncode == 1
    first = st.stdout.splitlines()[0]
    assert "maintenance mode since" in first and "(swapping d3)" in first
    assert "swapping d3" in sofsctl(a.data, "maintenance", "status").stdout
    res = sofsctl(a.data, "scrub", "status")
    assert res.stdout.startswith("scrub: ") and "every 7.0 days" in res.stdout
    assert "paused" in sofsctl(a.data, "scrub", "pause").stdout
    import json
    assert json.loads(sofsctl(a.data, "scrub", "status", "--json").stdout)["paused"] is True
    assert "resumed" in sofsctl(a.data, "scrub", "resume").stdout
    assert "maintenance mode off" in sofsctl(a.data, "maintenance", "off").stdout
    assert sofsctl(a.data, "status", check=False).stdout.startswith("HEALTH_OK")
    res = sofsctl(a.data, "scrub", "start")  # a full verifying sweep now
    assert "all chunks fully protected" in res.stdout
