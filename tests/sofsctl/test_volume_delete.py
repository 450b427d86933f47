"""``sofsctl volume delete`` and ``volume set`` as an admin runs them: refused while mounted,
confirmed by typing the name, chunks and checkpoints gone from the RING (checked on the disks
and in restore --list), another volume untouched; a deletion interrupted before its chunks
were deleted is finished by --finish; while another volume is mounted the mount process
deletes the chunks."""

from __future__ import annotations

import json
import os

import pytest

from chunkstore.ring.open import open_ring
from sofs.volumedelete import begin
from tests.fuse_mount.conftest import Archive, needs_fuse, sofsctl

pytestmark = [pytest.mark.integration, needs_fuse]


def _pieces(data) -> int:
    ring = open_ring(data, instance="test")
    try:
        return sum(ring.call(d, lambda ds: ds.stats().live_pieces) for d in ring.disk_ids())
    finally:
        ring.close()


@pytest.fixture
def archive(tmp_path):
    a = Archive(tmp_path, volume="scratch")
    sofsctl(a.data, "volume", "create", "pacs")
    a.mount()
    try:
        (a.mnt / "tmp.bin").write_bytes(os.urandom(9 << 20))
        yield a
    finally:
        a.cleanup()


def test_delete_a_volume_and_its_chunks_but_nothing_else(archive, tmp_path):
    a = archive
    res = sofsctl(a.data, "volume", "delete", "scratch", "--yes", check=False)
    assert res.returncode == 1 and "is mounted" in res.stderr
    sofsctl(a.data, "volume", "checkpoint", "scratch")
    a.umount()
    # the other volume gets a file: its chunks must survive
    b = Archive.__new__(Archive)
    b.data, b.mnt, b.volume, b.pids = a.data, tmp_path / "mnt-pacs", "pacs", set()
    b.mount_env = None
    b.mnt.mkdir()
    b.mount()
    try:
        (b.mnt / "kept.dcm").write_bytes(b"keep me" * 100_000)
    finally:
        b.umount()
    before = _pieces(a.data)
    res = sofsctl(a.data, "volume", "delete", "scratch", check=False)  # no tty: nothing typed
    assert res.returncode == 1 and "not confirmed" in res.stderr
    res = sofsctl(a.data, "volume", "delete", "scratch", "--yes")
    assert "volume scratch deleted:" in res.stdout
    assert _pieces(a.data) < before
    names = [v["name"] for v in json.loads(sofsctl(a.data, "volume", "list", "--json").stdout)]
    assert names == ["pacs"]
    found = json.loads(sofsctl(a.data, "volume", "restore", "--list", "--json").stdout)
    assert "scratch" not in {v["name"] for v in found}
    b.mount()
    try:
        assert (b.mnt / "kept.dcm").read_bytes() == b"keep me" * 100_000
    finally:
        b.umount()
    assert sofsctl(a.data, "fsck", "pacs").returncode == 0
    assert sofsctl(a.data, "status", check=False).stdout.startswith("HEALTH_OK")


def test_an_interrupted_deletion_is_finished_and_set_changes_compression(archive):
    a = archive
    a.umount()
    res = sofsctl(a.data, "volume", "set", "scratch", "compression=zstd:3")
    assert "compression zstd:3" in res.stdout
    assert json.loads(sofsctl(a.data, "volume", "show", "scratch", "--json").stdout)[
        "compression"] == "zstd:3"
    res = sofsctl(a.data, "volume", "set", "scratch", "block_size=1M", check=False)
    assert res.returncode == 1 and "settable: compression=" in res.stderr
    before = _pieces(a.data)
    begin(a.data, "scratch")  # a crash right after step 1
    assert "scratch" not in sofsctl(a.data, "volume", "list").stdout
    res = sofsctl(a.data, "volume", "delete", "--finish")
    assert "volume scratch deleted:" in res.stdout and _pieces(a.data) < before
    assert "no unfinished" in sofsctl(a.data, "volume", "delete", "--finish").stdout
