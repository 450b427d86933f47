"""``sofsctl fsck`` and the chunks nothing references (issue 13), as an admin runs it on an
embedded ring not mounted: the count, bytes and a few keys (``--verbose``: all), exit status 0
(space to reclaim, not an inconsistency), ``--repair`` hands them to the collector, and none
are listed afterwards."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from chunkstore.ring.open import open_ring
from sofs.blocks import BlockCodec
from sofs.fs import Filesystem
from sofs.volume import load_volume

from .cli import sofsctl


@pytest.fixture
def data(tmp_path):
    """A volume with one file and 7 chunks of its own that no file names (crashed flushes)."""
    d = tmp_path / "data"
    assert sofsctl(d, "cluster", "init", "--disks", "4").returncode == 0
    assert sofsctl(d, "volume", "create", "pacs", "--ec", "2+1").returncode == 0
    ring = open_ring(d, instance="test")
    try:
        fs = Filesystem.open_volume(d, "pacs", ring)
        fh, _ = fs.create(1, b"a.dcm", 0o644, os.O_WRONLY)
        fs.write(fh, 0, os.urandom(300_000))
        fs.release(fh)
        codec = BlockCodec(0, uuid.UUID(load_volume(d, "pacs").uuid).bytes)
        leaked = [ring.put(codec.encode(os.urandom(200_000)), fs.protection) for _ in range(7)]
        fs.close()
    finally:
        ring.close()
    return d, sorted(r.hex for r in leaked), sum(r.size for r in leaked)


def _line(stdout: str) -> str:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("unreferenced chunks: ")]
    assert len(lines) == 1, stdout
    return lines[0]


def test_fsck_lists_unreferenced_chunks_and_repair_queues_them(data):
    d, keys, size = data
    res = sofsctl(d, "fsck", "pacs")  # space to reclaim, not an inconsistency: exit 0
    assert res.returncode == 0 and res.stdout.endswith("clean\n"), res.stdout + res.stderr
    line = _line(res.stdout)
    assert line.startswith("unreferenced chunks: 7 (") and "queued" not in line
    assert "reclaimed by --repair (through the collector)" in line
    assert line.endswith("(and 2 more: --verbose)")
    assert sum(k in line for k in keys) == 5
    line = _line(sofsctl(d, "fsck", "pacs", "--verbose").stdout)
    assert all(k in line for k in keys) and "more" not in line
    res = sofsctl(d, "fsck", "pacs", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["unreferenced"] == 7 and doc["unreferenced_bytes"] == size
    assert sorted(p["detail"].split()[1].rstrip(":") for p in doc["problems"]
                  if p["kind"] == "unreferenced-chunk") == keys
    res = sofsctl(d, "fsck", "pacs", "--repair")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "queued for the collector (deleted after its grace period)" in _line(res.stdout)
    res = sofsctl(d, "fsck", "pacs")
    assert res.returncode == 0 and "unreferenced" not in res.stdout, res.stdout + res.stderr
    ring = open_ring(d, instance="test")
    try:  # queued, not deleted: the grace period has not passed
        on_disks = {p.key.hex() for di in ring.available_disks() for p in ring.disk(di).pieces()}
    finally:
        ring.close()
    assert set(keys) <= on_disks
