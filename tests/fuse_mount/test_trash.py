"""The trash through a real FUSE mount: files deleted by rm (and replaced by a rename over them)
are gone for every client, listed by ``sofsctl trash list``, restored by ``sofsctl trash
restore`` byte-identical with their owner, mode, times and xattrs, before and after a remount,
with the volume mounted and not; ``trash purge`` and ``volume set trash=0``."""

from __future__ import annotations

import json
import os

import pytest

from .conftest import needs_fuse, sofsctl

pytestmark = [pytest.mark.integration, needs_fuse]


def _meta(path) -> tuple:
    st = os.stat(path)
    return (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
            {x: os.getxattr(path, x) for x in os.listxattr(path)})


def test_rm_then_restore_gives_back_the_same_file(archive):
    study = archive.mnt / "pacs" / "2024" / "ct.dcm"
    study.parent.mkdir(parents=True)
    data = os.urandom(5 * 2**20 + 17)
    study.write_bytes(data)
    os.chown(study, 1000, 1001)
    os.chmod(study, 0o640)
    os.setxattr(study, "user.study_uid", b"1.2.840.113619")
    os.utime(study, ns=(1_600_000_000 * 10**9, 1_650_000_000 * 10**9))
    before = _meta(study)
    (archive.mnt / "pacs" / "report.txt").write_bytes(b"v1")
    new = archive.mnt / "pacs" / "report.new"
    new.write_bytes(b"v2")
    os.rename(new, archive.mnt / "pacs" / "report.txt")  # the old report goes to the trash
    os.system(f"rm -r {archive.mnt / 'pacs' / '2024'}")
    assert not study.parent.exists()
    listed = json.loads(sofsctl(archive.data, "trash", "list", archive.volume,
                                "--json").stdout)
    assert sorted(r["path"] for r in listed) == ["/pacs/2024/ct.dcm", "/pacs/report.txt"]
    out = sofsctl(archive.data, "trash", "restore", archive.volume, "/pacs/2024/ct.dcm").stdout
    assert "restored /pacs/2024/ct.dcm" in out
    assert study.read_bytes() == data and _meta(study) == before
    old = next(r for r in listed if r["path"] == "/pacs/report.txt")
    res = sofsctl(archive.data, "trash", "restore", archive.volume, str(old["ino"]), check=False)
    assert res.returncode != 0 and "exists" in res.stderr  # never over the live file
    os.unlink(study)
    archive.remount()
    out = sofsctl(archive.data, "trash", "list", archive.volume).stdout
    assert "/pacs/2024/ct.dcm" in out and "/pacs/report.txt" in out
    sofsctl(archive.data, "trash", "restore", archive.volume, str(old["ino"]), "--to",
            "/pacs/report.v1.txt")
    assert (archive.mnt / "pacs" / "report.v1.txt").read_bytes() == b"v1"
    archive.umount()  # unmounted: the command opens the volume itself
    sofsctl(archive.data, "trash", "restore", archive.volume, "/pacs/2024/ct.dcm")
    res = sofsctl(archive.data, "trash", "purge", archive.volume, "--all", check=False)
    assert res.returncode != 0 and "--yes" in res.stderr
    archive.mount()
    assert study.read_bytes() == data and _meta(study) == before
    os.unlink(study)
    out = sofsctl(archive.data, "trash", "purge", archive.volume, "--all", "--yes").stdout
    assert "1 file(s) purged" in out
    assert "is empty" in sofsctl(archive.data, "trash", "list", archive.volume).stdout
    res = sofsctl(archive.data, "trash", "restore", archive.volume, "/pacs/2024/ct.dcm",
                  check=False)
    assert res.returncode != 0 and "nothing deleted from" in res.stderr


def test_a_volume_without_trash_deletes_for_good(make_archive):
    a = make_archive("off", create_args=("--trash", "0"))
    a.mount()
    try:
        (a.mnt / "f").write_bytes(b"x")
        os.unlink(a.mnt / "f")
        assert "is empty (it is off)" in sofsctl(a.data, "trash", "list", a.volume).stdout
        out = sofsctl(a.data, "volume", "set", a.volume, "trash=12h").stdout
        assert "trash 12h" in out and "next mount" in out
    finally:
        a.umount()
    res = sofsctl(a.data, "volume", "set", a.volume, "trash=soon", check=False)
    assert res.returncode != 0 and "trash=soon" in res.stderr
