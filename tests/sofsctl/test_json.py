"""``--json`` on the read commands, as a monitoring script runs them (``python -m sofsctl``,
an embedded ring not mounted): volume list, fsck, repair, volume checkpoint --list, volume
restore --list; the exit status is the same as in text. Also: a never-mounted volume is clean
for fsck, which creates nothing; node list on an embedded ring explains itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from chunkstore.ring.open import open_ring
from sofs.fs import Filesystem

from .cli import sofsctl

ROOT = Path(__file__).resolve().parents[2]




@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    assert sofsctl(d, "cluster", "init", "--disks", "4").returncode == 0
    assert sofsctl(d, "volume", "create", "pacs", "--ec", "2+1").returncode == 0
    assert sofsctl(d, "volume", "create", "fresh", "--cos", "1").returncode == 0
    ring = open_ring(d, instance="test")
    try:
        fs = Filesystem.open_volume(d, "pacs", ring)
        fh, _ = fs.create(1, b"a.dcm", 0o644, os.O_WRONLY)
        fs.write(fh, 0, os.urandom(300_000))
        fs.release(fh)
        fs.close()
    finally:
        ring.close()
    return d


def test_volume_list_fsck_and_repair_as_json(data):
    res = sofsctl(data, "volume", "list", "--json")
    assert res.returncode == 0, res.stderr
    vols = {v["name"]: v for v in json.loads(res.stdout)}
    assert set(vols) == {"pacs", "fresh"} and vols["pacs"]["mountpoint"] is None
    assert vols["pacs"]["large_policy"].startswith("ec2+1")
    res = sofsctl(data, "fsck", "pacs", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["format"] == 1 and doc["volume"] == "pacs" and doc["files"] == 1
    assert doc["problems"] == [] and doc["bytes"] == 300_000
    res = sofsctl(data, "repair", "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["format"] == 1 and rep["chunks_checked"] >= 1 and rep["unrecoverable"] == []
    # a chunk lost on every disk: exit 3 with --json as in text, the key in the report
    ring = open_ring(data, instance="test")
    try:
        for d in ring.disk_ids():
            ring.call(d, lambda ds: [ds.delete(p.key, p.frag_idx) for p in list(ds.pieces())
                                     if p.chunk_size > 100_000])
    finally:
        ring.close()
    res = sofsctl(data, "repair", "--json")
    assert res.returncode in (0, 3), res.stderr  # all pieces gone: known only from nowhere
    res = sofsctl(data, "fsck", "pacs", "--json")
    assert res.returncode == 4
    assert any(p["kind"] == "missing-chunk" for p in json.loads(res.stdout)["problems"])


def test_a_never_mounted_volume_is_clean_and_fsck_creates_nothing(data):
    vdir = data / "volumes" / "fresh"
    before = sorted(p.name for p in vdir.iterdir())
    res = sofsctl(data, "fsck", "fresh")
    assert res.returncode == 0 and "clean" in res.stdout, res.stdout + res.stderr
    assert sorted(p.name for p in vdir.iterdir()) == before == ["volume.json"]


def test_checkpoint_and_restore_lists_as_json(data):
    assert sofsctl(data, "volume", "checkpoint", "pacs").returncode == 0
    res = sofsctl(data, "volume", "checkpoint", "pacs", "--list", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["seq"] for r in rows] == [1] and rows[0]["volume"] == "pacs"
    res = sofsctl(data, "volume", "restore", "--list", "--json")
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    assert [(v["name"], v["seq"], v["here"]) for v in found] == [("pacs", 1, True)]


def test_node_list_on_an_embedded_ring_explains(data):
    res = sofsctl(data, "node", "list")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "embedded ring" in res.stderr and "sofsctl df" in res.stderr
