"""Snapshots through a real FUSE mount: ``sofsctl snapshot create`` on the mounted volume (its
mount process), the old bytes read from ``/.snapshots/NAME/`` after the live files changed and
after a remount, every change there refused with EROFS, the directory hidden from the root's
listing, and a deleted snapshot gone from the mount."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat

import pytest

from .conftest import needs_fuse, sofsctl
from .test_posix import name_to_handle, open_by_handle

pytestmark = [pytest.mark.integration, needs_fuse]

OLD = b"DICM" + os.urandom(5 << 20)  # more than one 4 MiB block
SMALL = b"small file"


def _erofs(fn, *args, **kw) -> None:
    with pytest.raises(OSError) as e:
        fn(*args, **kw)
    assert e.value.errno == errno.EROFS, (fn, args, e.value)


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_a_snapshot_keeps_the_old_bytes_through_changes_and_a_remount(archive):
    mnt = archive.mnt
    (mnt / "study").mkdir()
    (mnt / "study" / "ct.dcm").write_bytes(OLD)
    (mnt / "small.txt").write_bytes(SMALL)
    os.symlink("study/ct.dcm", mnt / "link")
    os.chmod(mnt / "small.txt", 0o640)
    res = sofsctl(archive.data, "snapshot", "create", archive.volume, "before")
    assert "snapshot before of volume vol taken" in res.stdout
    # the live files change
    (mnt / "study" / "ct.dcm").write_bytes(b"rewritten")
    os.unlink(mnt / "small.txt")
    (mnt / "new.txt").write_bytes(b"after")
    snap = mnt / ".snapshots" / "before"

    def check() -> None:
        assert ".snapshots" not in os.listdir(mnt)
        assert os.listdir(mnt / ".snapshots") == ["before"]
        assert sorted(os.listdir(snap)) == ["link", "small.txt", "study"]
        assert _read(snap / "study" / "ct.dcm") == OLD
        assert _read(snap / "small.txt") == SMALL
        assert stat.S_IMODE(os.stat(snap / "small.txt").st_mode) == 0o640
        assert os.readlink(snap / "link") == "study/ct.dcm"
        assert _read(snap / "link") == OLD
        assert os.path.realpath(snap / "..") == os.path.realpath(mnt / ".snapshots")
        assert _read(mnt / "study" / "ct.dcm") == b"rewritten"
        assert not (mnt / "small.txt").exists()

    check()
    # nothing under .snapshots changes
    _erofs(open, snap / "small.txt", "r+b")
    _erofs(open, snap / "created.txt", "wb")
    _erofs(os.unlink, snap / "small.txt")
    _erofs(os.mkdir, snap / "dir")
    _erofs(os.rmdir, snap / "study")
    _erofs(os.rename, snap / "small.txt", snap / "moved.txt")
    _erofs(os.chmod, snap / "small.txt", 0o600)
    _erofs(os.setxattr, snap / "small.txt", "user.note", b"x")
    _erofs(os.truncate, snap / "small.txt", 0)
    _erofs(os.rmdir, mnt / ".snapshots")
    with pytest.raises(FileExistsError):
        os.mkdir(mnt / ".snapshots")
    # restore a file from the snapshot
    shutil.copy2(snap / "small.txt", mnt / "small.txt")
    assert _read(mnt / "small.txt") == SMALL
    os.unlink(mnt / "small.txt")
    handle = name_to_handle(snap / "study" / "ct.dcm")  # as NFS-Ganesha keeps it
    archive.remount()
    check()
    fd = open_by_handle(mnt, handle)
    try:
        assert os.read(fd, 4) == b"DICM"
    finally:
        os.close(fd)
    rows = json.loads(sofsctl(archive.data, "snapshot", "list", "--json", archive.volume).stdout)
    assert [r["name"] for r in rows] == ["before"]


def test_snapshots_come_and_go_on_the_mount(archive):
    mnt = archive.mnt
    (mnt / "f").write_bytes(b"one")
    sofsctl(archive.data, "snapshot", "create", archive.volume, "a")
    (mnt / "f").write_bytes(b"two")
    res = sofsctl(archive.data, "snapshot", "create", archive.volume)
    default = res.stdout.split()[1]
    assert default.startswith("@GMT-")
    assert sorted(os.listdir(mnt / ".snapshots")) == sorted(["a", default])
    assert _read(mnt / ".snapshots" / "a" / "f") == b"one"
    assert _read(mnt / ".snapshots" / default / "f") == b"two"
    sofsctl(archive.data, "snapshot", "delete", archive.volume, "a")
    assert os.listdir(mnt / ".snapshots") == [default]
    assert not (mnt / ".snapshots" / "a").exists()
    res = sofsctl(archive.data, "snapshot", "delete", archive.volume, "a", check=False)
    assert res.returncode == 1 and "no snapshot" in res.stderr
