"""The power-cut filesystem itself: a cut keeps exactly what was fsynced (tests.powercut.cutfs).

If it kept more than that, the sofs power-cut test could pass on code that does not sync.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .cutmount import CutMount

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0,
                                 reason="FUSE mounts need /dev/fuse and root")]


@pytest.fixture
def cut(tmp_path):
    m = CutMount(tmp_path / "backing", tmp_path / "mnt", tmp_path / "cutfs.log")
    m.start()
    try:
        yield m
    finally:
        m.close()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: Path, data: bytes, sync: bool) -> None:
    with open(path, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def test_a_cut_keeps_what_was_fsynced_and_nothing_else(cut):
    m = cut.mnt
    big = os.urandom(300_000)
    write(m / "synced", big, sync=True)           # data synced, name synced below
    write(m / "unsynced-data", b"x" * 5000, sync=False)   # name synced below, data never
    (m / "sub").mkdir()
    write(m / "sub" / "inner", b"inner", sync=True)   # sub's entries are never synced
    fsync_path(m)
    write(m / "no-name", b"lost", sync=True)      # data synced, its name never
    with open(m / "synced", "r+b") as f:          # an unsynced overwrite and append
        f.write(b"Z" * 10)
        f.seek(0, os.SEEK_END)
        f.write(b"tail")
    os.rename(m / "synced", m / "renamed")        # an unsynced rename
    assert (m / "renamed").read_bytes()[:10] == b"Z" * 10

    cut.cut()
    cut.start()

    assert sorted(os.listdir(m)) == ["sub", "synced", "unsynced-data"]
    assert (m / "synced").read_bytes() == big
    assert (m / "unsynced-data").read_bytes() == b""
    assert os.listdir(m / "sub") == []


def test_synced_truncates_renames_and_unlinks_survive(cut):
    m = cut.mnt
    write(m / "a", b"a" * 200_000, sync=True)
    write(m / "b", b"b" * 10, sync=True)
    fsync_path(m)
    with open(m / "a", "r+b") as f:
        f.truncate(70_000)
        f.truncate(150_000)   # the bytes between come back as zeros, not as old data
        os.fsync(f.fileno())
    os.rename(m / "b", m / "c")
    (m / "d").mkdir()
    write(m / "d" / "e", b"e", sync=True)
    fsync_path(m / "d")
    fsync_path(m)
    os.unlink(m / "c")   # not synced: c comes back

    cut.cut()
    cut.start()

    assert sorted(os.listdir(m)) == ["a", "c", "d"]
    assert (m / "a").read_bytes() == b"a" * 70_000 + bytes(80_000)
    assert (m / "c").read_bytes() == b"b" * 10
    assert (m / "d" / "e").read_bytes() == b"e"
