"""``sofsctl status`` as a monitoring check runs it (``python -m sofsctl``, on an embedded ring
that is not mounted): the HEALTH_* first line with its reasons, the exit status 0 / 1 / 2, and
never "fully protected" while a disk is missing. Also the pure reasons built in
sofsctl.status (dead mounts, checkpoints, exports)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from chunkstore.healing.verdict import Level
from chunkstore.ring.open import open_ring
from sofsctl.statusfacts import checkpoint_reason, dead_mount_reason, export_reason, overtaken_reason

from .cli import PROTECTION, ROOT, make_embedded_ring, sofsctl


@pytest.fixture
def data(tmp_path):
    """An embedded ring of 6 disks, a volume ec4+2/cos2, and 6 chunks of each policy."""
    return make_embedded_ring(tmp_path / "data")


def test_healthy_ring_is_health_ok(data):
    res = sofsctl(data, "status")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "HEALTH_OK"
    assert "chunks: 12 (12 fully protected, 0 degraded, 0 unrecoverable)" in lines
    assert "volume pacs: ec4+2:isa_l_rs_vand/cos2, not mounted" in lines


def test_a_missing_disk_is_a_warning_and_never_fully_protected(data, tmp_path):
    (data / "disks" / "d3").rename(tmp_path / "d3-moved-away")
    res = sofsctl(data, "status")
    assert res.returncode == 1, res.stdout + res.stderr
    first = res.stdout.splitlines()[0]
    assert first.startswith("HEALTH_WARN: ")
    assert f"disk d3 missing ({data / 'disks' / 'd3'})" in first
    assert "fully protected" not in res.stdout
    rows = {ln.split()[0]: ln for ln in res.stdout.splitlines() if ln.startswith("d")}
    assert "MISSING" in rows["d3"]
    assert "run: sofsctl repair" in res.stderr


def test_an_uninitialised_disk_is_a_warning(data):
    (data / "disks" / "d1" / "DISK").unlink()
    res = sofsctl(data, "status")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "disk d1 not initialised" in res.stdout.splitlines()[0]
    assert "fully protected" not in res.stdout


def test_more_missing_disks_than_the_policies_tolerate_is_an_error(data, tmp_path):
    for d in ("d0", "d2", "d4"):  # ec4+2 and cos2 both survive 2
        (data / "disks" / d).rename(tmp_path / d)
    res = sofsctl(data, "status")
    assert res.returncode == 2, res.stdout + res.stderr
    first = res.stdout.splitlines()[0]
    # the chunk count saw the three disks gone, so it says what the data lost
    assert first.startswith("HEALTH_ERR: ") and "chunks unrecoverable" in first
    assert "disk d0 missing" in first and "disk d4 missing" in first


def test_unrecoverable_chunks_are_an_error(data):
    ring = open_ring(data, instance="test")
    try:  # 3 of the 6 disks lose every piece: the ec4+2 chunks keep 3 of the 4 they need
        for d in ("d0", "d1", "d2"):
            ring.call(d, lambda ds: [ds.delete(p.key, p.frag_idx) for p in list(ds.pieces())])
    finally:
        ring.close()
    res = sofsctl(data, "status")
    assert res.returncode == 2, res.stdout + res.stderr
    first = res.stdout.splitlines()[0]
    assert first.startswith("HEALTH_ERR: 6 chunks unrecoverable")
    assert any(ln.startswith("chunks: ") and "6 unrecoverable)" in ln
               for ln in res.stdout.splitlines())
    keys = next(ln for ln in res.stderr.splitlines() if ln.startswith("unrecoverable: "))
    assert len(keys.split()[1:]) == 6 and "sofsctl chunk which KEY" in res.stderr
    which = sofsctl(data, "chunk", "which", *keys.split()[1:])
    assert which.stdout.count("UNRECOVERABLE (ec4+2") == 6
    assert which.returncode == 0, which.stdout  # written straight to the ring: no file lost


def test_no_cluster_is_a_clear_failure(tmp_path):
    res = sofsctl(tmp_path / "nothing", "status")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "HEALTH_OK" not in res.stdout


# --- the reasons built in sofsctl.status ---------------------------------------------------

def test_dead_mount_reason_names_the_command_that_clears_it():
    r = dead_mount_reason("pacs", "/mnt/pacs", 7031)
    assert r.level == Level.WARN
    assert r.text == "volume pacs: dead mount at /mnt/pacs (pid 7031 gone): run sofsctl umount /mnt/pacs"


def test_checkpoint_reason():
    now = 10_000.0
    fresh = {"checkpoint_at": now - 1700, "checkpoint_seq": 3, "checkpoint_error": None}
    assert checkpoint_reason("v", fresh, now, 600.0) is None          # < 3 intervals
    stale = {**fresh, "checkpoint_at": now - 1900}
    r = checkpoint_reason("v", stale, now, 600.0)
    assert r is not None and r.level == Level.WARN and "32 min old" in r.text
    assert checkpoint_reason("v", stale, now, 0.0) is None            # checkpoints off
    failing = {**fresh, "checkpoint_error": "NoSpace: disk full"}
    r = checkpoint_reason("v", failing, now, 600.0)
    assert r is not None and r.level == Level.WARN and "failed: NoSpace: disk full" in r.text
    assert checkpoint_reason("v", {"checkpoint_at": None}, now, 600.0) is None


@pytest.mark.parametrize("state", ["failed", "dead", "mount-gone"])
def test_a_failed_export_is_a_warning(state):
    r = export_reason("pacs", "nfs", state, "ganesha.nfsd exited")
    assert r is not None and r.level == Level.WARN
    assert r.text == f"NFS export of volume pacs {state}: ganesha.nfsd exited"


@pytest.mark.parametrize("state", ["running", "starting", "stopped"])
def test_a_live_or_stopped_export_is_no_reason(state):
    assert export_reason("pacs", "smb", state, "") is None


def test_a_copy_taken_over_by_another_host_is_a_warning():
    from_mount = {"gc_stopped": True, "checkpoint_error": None}
    reason = overtaken_reason("pacs", from_mount)
    assert reason is not None and reason.level == Level.WARN and "unmount it" in reason.text
    assert overtaken_reason("pacs", {"gc_stopped": False}) is None



def test_a_disk_whose_index_is_damaged_is_reported_and_rebuilt_from_the_others(data):
    """It used to show "up", and repair said "all chunks fully protected" rebuilding nothing."""
    for table in (data / "disks" / "d2" / "index").glob("*.sst"):
        with open(table, "r+b") as f:
            f.seek(50)
            f.write(os.urandom(300))
    res = sofsctl(data, "status")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "disk d2 unavailable: it does not open" in res.stdout.splitlines()[0]
    row = next(ln for ln in res.stdout.splitlines() if ln.startswith("d2 "))
    assert "UNAVAILABLE" in row and "fully protected" not in res.stdout
    assert "sofsctl repair --init-disk d2" in res.stderr
    res = sofsctl(data, "repair")
    assert res.returncode == 5, res.stdout + res.stderr
    assert "cannot open" in res.stderr and "--init-disk d2" in res.stderr, res.stderr[-600:]
    res = sofsctl(data, "repair", "--init-disk", "d2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "disk d2 could not be opened" in res.stdout and "damaged-" in res.stdout
    assert "pieces rebuilt: 0 " not in res.stdout and "all chunks fully protected" in res.stdout
    kept = list((data / "disks" / "d2").glob("damaged-*"))
    assert len(kept) == 1 and (kept[0] / "index").is_dir() and (kept[0] / "containers").is_dir()
    res = sofsctl(data, "status")
    assert res.returncode == 0 and res.stdout.startswith("HEALTH_OK"), res.stdout


def test_status_json_carries_the_same_verdict_and_facts(data, tmp_path):
    import json
    res = sofsctl(data, "status", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["format"] == 1 and doc["networked"] is False and doc["data_dir"] == str(data)
    assert doc["health"] == {"status": "HEALTH_OK", "exit": 0, "reasons": []}
    assert doc["chunks"]["total"] == 12 and doc["chunks"]["protected"] == 12
    assert [d["id"] for d in doc["disks"]] == [f"d{i}" for i in range(6)]
    assert all(d["state"] == "up" and d["total_bytes"] > 0 for d in doc["disks"])
    assert doc["volumes"][0]["name"] == "pacs" and doc["volumes"][0]["state"] == "not mounted"
    (data / "disks" / "d3").rename(tmp_path / "d3-away")
    res = sofsctl(data, "status", "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["health"]["status"] == "HEALTH_WARN" and doc["health"]["exit"] == 1
    assert doc["health"]["reasons"][0]["text"].startswith("disk d3 missing")
    d3 = next(d for d in doc["disks"] if d["id"] == "d3")
    assert d3["state"] == "MISSING" and d3["problem"].startswith("missing")
    text = sofsctl(data, "status")
    assert text.stdout.splitlines()[0] == "HEALTH_WARN: " + "; ".join(
        r["text"] for r in doc["health"]["reasons"])


def test_status_while_an_offline_repair_holds_the_ring(data):
    """It used to fail (the ring is held, no mount process answers); it now names the job."""
    import time
    proc = subprocess.Popen([sys.executable, "-m", "sofsctl", "--data-dir", str(data), "repair",
                             "--rate", "0.05"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            if (data / "run" / "sofsctl-job.json").exists():
                break
            time.sleep(0.05)
        res = sofsctl(data, "status")
        assert res.returncode == 1, res.stdout + res.stderr
        assert f"sofsctl repair (pid {proc.pid}) holds the ring" in res.stdout.splitlines()[0]
        assert any(ln.startswith("chunks: not counted while sofsctl repair") for ln in
                   res.stdout.splitlines())
        other = sofsctl(data, "fsck", "pacs")  # a second job is told who holds the ring
        assert "Traceback" not in other.stderr
    finally:
        proc.kill()
        proc.wait()
    assert sofsctl(data, "status").returncode == 0


def test_a_quorum_only_write_shows_as_repair_debt(data, tmp_path):
    """A write acknowledged while a disk was away owes that disk's piece: the repair log has
    it durably, and status says how many chunks owe pieces, how old the debt is, and what
    completes it (issue 13)."""
    import json
    (data / "disks" / "d3").rename(tmp_path / "d3-away")
    ring = open_ring(data, instance="test")
    try:  # ec4+2 on 6 disks: a piece on every disk, d3's cannot be written
        ring.put(os.urandom(100_000), PROTECTION)
    finally:
        ring.close()
    (tmp_path / "d3-away").rename(data / "disks" / "d3")
    res = sofsctl(data, "status")
    debt = [ln for ln in res.stdout.splitlines() if ln.startswith("repair debt: ")]
    assert len(debt) == 1, res.stdout + res.stderr
    assert debt[0].startswith("repair debt: 1 chunk owes pieces (oldest noted ")
    assert "the repair sweep completes them" in debt[0] and "sofsctl repair" in debt[0]
    doc = json.loads(sofsctl(data, "status", "--json").stdout)
    assert doc["repair_log"]["needs_repair"] == 1 and doc["repair_log"]["oldest_needs_repair"] > 0
    assert sofsctl(data, "repair").returncode == 0
    res = sofsctl(data, "status")
    assert res.returncode == 0 and "repair debt" not in res.stdout, res.stdout + res.stderr
