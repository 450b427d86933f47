"""The ``.snapshots`` tree (fuse_mount.snapshotview) without a kernel: inode numbers, listings
and their offsets, read-only opens, and a snapshot deleted while a file of it is open."""

from __future__ import annotations

import os

import pytest

from chunkstore.ring.memory import MemoryChunkStore
from fuse_mount.snapshotview import INNER_MASK, SLOT_SHIFT, SNAPDIR_INO, SnapshotView
from sofs.errors import NoSuchEntry, VolumeFenced
from sofs.fs import Filesystem
from sofs.inode import ROOT_INO
from sofs.snapshot.manager import Snapshots
from sofs.volume import create_volume


@pytest.fixture
def fs(tmp_path):
    create_volume(tmp_path, "v", block_size=64 * 1024)
    fs = Filesystem.open_volume(tmp_path, "v", MemoryChunkStore())
    fh, node = fs.create(ROOT_INO, b"f", 0o644, os.O_WRONLY)
    fs.write(fh, 0, b"old bytes")
    fs.release(fh)
    yield fs
    fs.close()


def test_snapshots_are_numbered_by_slot_and_listed_with_stable_offsets(fs):
    view = SnapshotView(fs)
    assert view.is_entry(ROOT_INO, b".snapshots") and not view.is_entry(2, b".snapshots")
    assert view.owns(SNAPDIR_INO) and not view.owns(INNER_MASK)
    assert [n for n, _, _ in view.readdir(SNAPDIR_INO, 0)] == [b".", b".."]
    snaps = Snapshots(fs)
    snaps.create("a")
    snaps.create("b")
    entries = view.readdir(SNAPDIR_INO, 0)
    assert [(n, off) for n, _, off in entries] == [(b".", 1), (b"..", 2), (b"a", 3), (b"b", 4)]
    assert [n for n, _, _ in view.readdir(SNAPDIR_INO, 3)] == [b"b"]
    a = view.lookup(SNAPDIR_INO, b"a")
    assert a.ino == 2 << SLOT_SHIFT | ROOT_INO and a.is_dir
    f = view.lookup(a.ino, b"f")
    assert f.ino >> SLOT_SHIFT == 2 and view.getattr(f.ino).size == 9
    assert view.lookup(a.ino, b"..").ino == SNAPDIR_INO
    assert view.lookup(SNAPDIR_INO, b"..").ino == ROOT_INO
    assert {n for n, _, _ in view.readdir(a.ino, 0)} == {b".", b"..", b"f"}
    assert view.timeout(a.ino) == 1.0 and view.timeout(f.ino) is None
    view.close()


def test_files_open_read_only_and_stay_readable_after_their_snapshot_is_deleted(fs):
    view = SnapshotView(fs)
    snaps = Snapshots(fs)
    snaps.create("a")
    ino = view.lookup(view.lookup(SNAPDIR_INO, b"a").ino, b"f").ino
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
        with pytest.raises(VolumeFenced):
            view.open(ino, flags)
    with pytest.raises(VolumeFenced):
        view.access(ino, os.W_OK)
    fh = view.open(ino, os.O_RDONLY)
    assert fh >> SLOT_SHIFT == 2
    snaps.delete("a")
    with pytest.raises(NoSuchEntry):
        view.lookup(SNAPDIR_INO, b"a")
    assert view.read(fh, 0, 100) == b"old bytes"  # the open file still reads
    view.release(fh)
    # the deleted snapshot's view was closed with its last open file
    with pytest.raises(NoSuchEntry):
        view.getattr(ino)
    view.close()
