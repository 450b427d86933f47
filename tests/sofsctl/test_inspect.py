"""``sofsctl file info`` and ``sofsctl chunk which`` as an admin runs them (``python -m
sofsctl``): on a mounted volume (metadata read beside the mount process, pieces located by
it), on an unmounted one, for an unrecoverable chunk (the files that lose data, exit 3), and
for a metadata checkpoint piece that no file names."""

from __future__ import annotations

import json
import os

import pytest

from chunkstore.ring.open import open_ring
from sofs.metacheckpoint import checkpoint_keys
from sofs.volume import load_volume
from tests.fuse_mount.conftest import Archive, needs_fuse, sofsctl

pytestmark = [pytest.mark.integration, needs_fuse]

MIB = 1 << 20


@pytest.fixture
def archive(tmp_path):
    a = Archive(tmp_path, volume="pacs")
    a.mount()
    try:
        study = a.mnt / "studies" / "2019"
        study.mkdir(parents=True)
        (study / "ct.dcm").write_bytes(os.urandom(9 * MIB))       # 3 blocks, ec4+2
        (study / "report.txt").write_bytes(b"no findings\n")       # 1 block, cos2
        os.link(study / "report.txt", a.mnt / "report-link.txt")
        yield a
    finally:
        a.cleanup()


def info(a: Archive, path: str, check: bool = True) -> dict:
    res = sofsctl(a.data, "file", "info", "--json", path, check=check)
    return json.loads(res.stdout)


def test_file_info_and_chunk_which_on_a_mounted_volume(archive):
    a = archive
    ct = info(a, str(a.mnt / "studies" / "2019" / "ct.dcm"))
    assert (ct["volume"], ct["path"], ct["size"], ct["type"]) == (
        "pacs", "/studies/2019/ct.dcm", 9 * MIB, "regular file")
    assert ct["inode"] == os.stat(a.mnt / "studies" / "2019" / "ct.dcm").st_ino
    assert [b["index"] for b in ct["blocks"]] == [0, 1, 2]
    for b in ct["blocks"]:
        assert b["policy"] == "ec4+2" and b["places"]["state"] == "ok"
        assert sorted(p["index"] for p in b["places"]["pieces"]) == list(range(6))
        assert all(p["found_on"] == [p["owner"]] for p in b["places"]["pieces"])
    report = info(a, str(a.mnt / "report-link.txt"))
    assert report["paths"] == ["/report-link.txt", "/studies/2019/report.txt"]
    assert report["nlink"] == 2 and report["blocks"][0]["policy"] == "cos2"
    text = sofsctl(a.data, "file", "info", str(a.mnt / "studies" / "2019" / "ct.dcm")).stdout
    assert "/studies/2019/ct.dcm  (volume pacs, inode" in text and "3 stored block(s)" in text
    key = report["blocks"][0]["key"]
    which = json.loads(sofsctl(a.data, "chunk", "which", "--json", key).stdout)
    assert which[0]["volumes"] == [{"volume": "pacs", "refcount": 1, "blocks": [
        {"inode": report["inode"], "block": 0,
         "paths": ["/report-link.txt", "/studies/2019/report.txt"]}]}]
    assert which[0]["places"]["state"] == "ok"
    # errors an admin makes: a path off the mount, a file that is not there, a bad key
    res = sofsctl(a.data, "file", "info", "/etc/hostname", check=False)
    assert res.returncode == 1 and "not on a sofs mount" in res.stderr
    res = sofsctl(a.data, "file", "info", "pacs:/nope.dcm", check=False)
    assert res.returncode == 1 and "not stored in volume pacs" in res.stderr
    res = sofsctl(a.data, "chunk", "which", "xyz", check=False)
    assert res.returncode == 2 and "not hex" in res.stderr


def test_an_unrecoverable_chunk_names_the_files_that_lose_data(archive):
    a = archive
    ct = info(a, str(a.mnt / "studies" / "2019" / "ct.dcm"))
    lost = ct["blocks"][1]
    a.umount()
    ring = open_ring(a.data, instance="test")
    try:  # three of six fragments gone: ec4+2 needs four
        for p in lost["places"]["pieces"][:3]:
            ring.disk(p["owner"]).delete(bytes.fromhex(lost["key"]), p["index"])
    finally:
        ring.close()
    res = sofsctl(a.data, "chunk", "which", lost["key"], check=False)
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"chunk {lost['key']}: UNRECOVERABLE (ec4+2: 3 of 6 pieces" in res.stdout
    assert "/studies/2019/ct.dcm  (inode" in res.stdout and "block 1)" in res.stdout
    assert res.stdout.count("MISSING") == 3
    res = sofsctl(a.data, "file", "info", "pacs:/studies/2019/ct.dcm", check=False)
    assert res.returncode == 3, res.stdout + res.stderr
    rows = [ln.split() for ln in res.stdout.splitlines() if ln[:1].isdigit()]
    assert [r[0] for r in rows] == ["0", "1", "2"]
    assert [r[5] for r in rows] == ["ok", "unrecoverable", "ok"]  # "4.0 MiB" is two words


def test_a_checkpoint_piece_is_named_as_such_and_an_unknown_key_loses_nothing(archive):
    a = archive
    sofsctl(a.data, "volume", "checkpoint", "pacs")
    a.umount()
    uuid = load_volume(a.data, "pacs").uuid
    ring = open_ring(a.data, instance="test")
    try:
        key = sorted(checkpoint_keys(ring, uuid))[0].hex()
    finally:
        ring.close()
    unknown = "00" * 20
    res = sofsctl(a.data, "chunk", "which", key, unknown)
    assert f"chunk {key}: OK" in res.stdout
    assert "volume pacs: a piece of its metadata checkpoints" in res.stdout
    assert f"chunk {unknown}: UNKNOWN" in res.stdout
    assert "losing it loses no data" in res.stdout
    which = json.loads(sofsctl(a.data, "chunk", "which", "--json", key).stdout)
    assert which[0]["checkpoint_of"] == ["pacs"] and which[0]["volumes"] == []

