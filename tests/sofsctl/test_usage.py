"""``sofsctl df`` and ``sofsctl volume show`` as an admin runs them: on a mounted volume (its
metadata read beside the mount process, the disks asked through it) and unmounted, text and
JSON; a wrong volume name is answered with the volumes and the closest one."""

from __future__ import annotations

import json
import os

import pytest

from tests.fuse_mount.conftest import Archive, needs_fuse, sofsctl

pytestmark = [pytest.mark.integration, needs_fuse]

MIB = 1 << 20


@pytest.fixture
def archive(tmp_path):
    a = Archive(tmp_path, volume="pacs")
    sofsctl(a.data, "volume", "create", "reports", "--cos", "2")  # never mounted
    a.mount()
    try:
        same = os.urandom(4 * MIB)
        (a.mnt / "ct1.dcm").write_bytes(same)
        (a.mnt / "ct2.dcm").write_bytes(same)           # deduplicated
        (a.mnt / "report.txt").write_bytes(b"no acute findings. " * 5000)
        yield a
    finally:
        a.cleanup()


def _check_df(doc: dict) -> None:
    vols = {v["name"]: v for v in doc["volumes"]}
    pacs = vols["pacs"]
    assert pacs["files"] == 3 and pacs["logical_bytes"] == 8 * MIB + 19 * 5000
    assert pacs["dedup_ratio"] > 1.9 and pacs["compression_ratio"] > 1.0
    assert pacs["raw_bytes"] > pacs["stored_bytes"] > 4 * MIB
    assert "files" not in vols["reports"]  # never mounted: nothing to count
    assert [d["id"] for d in doc["disks"]] == [f"d{i}" for i in range(6)]
    assert all(d["error"] is None and d["live_pieces"] > 0 for d in doc["disks"])
    assert sum(d["live_bytes"] for d in doc["disks"]) >= pacs["raw_bytes"]


def test_df_and_volume_show_mounted_and_not(archive):
    a = archive
    mounted = json.loads(sofsctl(a.data, "df", "--json").stdout)
    _check_df(mounted)
    text = sofsctl(a.data, "df").stdout
    assert text.splitlines()[0].split() == ["VOLUME", "FILES", "LOGICAL", "STORED", "RAW",
                                            "COMPRESSION", "DEDUP", "RECLAIMABLE"]
    assert any(ln.startswith("d0 ") for ln in text.splitlines())
    show = json.loads(sofsctl(a.data, "volume", "show", "pacs", "--json").stdout)
    assert show["mount"]["mountpoint"] == os.path.realpath(a.mnt)
    assert show["usage"]["files"] == 3 and show["large_policy"].startswith("ec4+2")
    sofsctl(a.data, "volume", "checkpoint", "pacs")
    show = json.loads(sofsctl(a.data, "volume", "show", "pacs", "--json").stdout)
    assert [c["seq"] for c in show["checkpoints"]][:1] == [max(c["seq"] for c in show["checkpoints"])]
    a.umount()
    offline = json.loads(sofsctl(a.data, "df", "--json").stdout)
    _check_df(offline)
    assert offline["volumes"] == mounted["volumes"]
    text = sofsctl(a.data, "volume", "show", "pacs").stdout
    assert "mount:       not mounted" in text and "checkpoint:  " in text
    assert "files:       3" in text
    res = sofsctl(a.data, "volume", "show", "Pacs", check=False)
    assert res.returncode == 1
    assert "no volume 'Pacs'; volumes: pacs, reports (did you mean 'pacs'?)" in res.stderr


def test_df_counts_the_checksum_errors_each_disk_has_seen(archive):
    """A piece that does not verify is counted by its disk, across restarts (df's column)."""
    from chunkstore.disk import container
    from tests.fuse_mount.test_faults import first_records

    a = archive
    a.umount()
    path, rec = first_records(a.disk_dirs[0])[0]
    container.flip_byte(path, container.data_offset(rec) + 11)
    sofsctl(a.data, "repair")  # verifies every piece: finds it, rebuilds it
    doc = json.loads(sofsctl(a.data, "df", "--json").stdout)
    errors = {d["id"]: d["checksum_errors"] for d in doc["disks"]}
    assert errors == {"d0": 1, **{f"d{i}": 0 for i in range(1, 6)}}
    text = sofsctl(a.data, "df").stdout
    assert "CHECKSUM ERRORS" in text and "checksum errors were seen on d0" in text
