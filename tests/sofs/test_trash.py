"""The trash of a volume (sofs.trash): a deleted file (unlink, or a rename over it) keeps its
inode, unreachable by name or by inode number, until it is restored with identical bytes,
owner, mode, times and xattrs, purged, or expired by the collector pass; the collector never
deletes its chunks meanwhile; fsck calls such a volume clean; WORM domain files and volumes
with the trash off are not kept."""

from __future__ import annotations

import os

import pytest

from chunkstore.clock import FakeClock
from sofs.errors import EntryExists, NoSuchEntry
from sofs.fs import Filesystem
from sofs.fsck import check_volume
from sofs.inode import ROOT_INO
from sofs.volume import create_volume
from sofs.worm.policy import DomainPolicy

from .conftest import BS, HookStore, read_file, write_file

DAY = 86400


@pytest.fixture
def trash(tmp_path):
    """(open() -> Filesystem of a volume with a 7-day trash, its clock, store, data dir)."""
    create_volume(tmp_path, "t", block_size=BS)
    store, clock, opened = HookStore(), FakeClock(wall_start=1_800_000_000.0), []

    def open_fs(**kw) -> Filesystem:
        fs = Filesystem.open_volume(tmp_path, "t", store, clock=clock, gc_grace_s=60, **kw)
        opened.append(fs)
        return fs

    yield open_fs, clock, store, tmp_path
    for fs in opened:
        try:
            fs.close()
        except Exception:
            pass


def _attrs(fs, ino):
    n = fs.getattr(ino)
    return (n.mode, n.uid, n.gid, n.size, n.atime_ns, n.mtime_ns,
            {x: fs.getxattr(ino, x) for x in fs.listxattr(ino)})


def test_a_deleted_file_is_kept_invisible_and_restored_identical(trash):
    open_fs, clock, store, _ = trash
    fs = open_fs()
    d = fs.mkdir(ROOT_INO, b"pacs", 0o755).ino
    data = os.urandom(3 * BS + 123)
    ino = write_file(fs, d, b"ct.dcm", data)
    fs.setattr(ino, mode=0o640, uid=1000, gid=1001, atime_ns=123_000, mtime_ns=456_000)
    fs.setxattr(ino, b"user.study", b"1.2.840.1")
    before = _attrs(fs, ino)
    chunks = len(store._chunks)
    clock.advance(5)
    fs.unlink(d, b"ct.dcm")
    with pytest.raises(NoSuchEntry):
        fs.lookup(d, b"ct.dcm")
    with pytest.raises(NoSuchEntry):  # by inode number (an NFS handle) too
        fs.getattr(ino)
    with pytest.raises(NoSuchEntry):
        fs.open(ino, os.O_RDONLY)
    assert [n for n, _, _ in fs.readdir(d)] == [b".", b".."]
    [entry] = fs.trash_list()
    assert (entry.ino, entry.path, entry.size, entry.uid) == (ino, "/pacs/ct.dcm", len(data), 1000)
    clock.advance(3600)  # long past the collector's grace period: the chunks stay
    fs.collect_garbage()
    assert len(store._chunks) == chunks
    fs.close()
    fs = open_fs()  # across a remount
    assert fs.trash_restore(ino) == "/pacs/ct.dcm"
    assert fs.lookup(d, b"ct.dcm").ino == ino
    assert _attrs(fs, ino) == before and read_file(fs, ino) == data
    assert fs.trash_list() == []
    fs.unlink(d, b"ct.dcm")  # and fsck calls a volume with a trashed file clean
    fs.close()
    assert check_volume(trash[3], "t", store).clean


def test_restore_to_another_path_makes_directories_and_never_overwrites(trash):
    open_fs, _, _, _ = trash
    fs = open_fs()
    d = fs.mkdir(ROOT_INO, b"a", 0o755).ino
    ino = write_file(fs, d, b"f", b"old bytes")
    fs.unlink(d, b"f")
    fs.rmdir(ROOT_INO, b"a")
    write_file(fs, ROOT_INO, b"taken", b"x")
    with pytest.raises(EntryExists):
        fs.trash_restore(ino, to="/taken")
    assert fs.trash_restore(ino) == "/a/f"  # its directory is made again
    assert read_file(fs, fs.resolve("/a/f")) == b"old bytes"
    fs.unlink(fs.resolve("/a"), b"f")
    assert fs.trash_restore(ino, to="/restored/deep/f2") == "/restored/deep/f2"
    assert read_file(fs, fs.resolve("/restored/deep/f2")) == b"old bytes"


def test_a_rename_over_a_file_trashes_the_file_replaced(trash):
    open_fs, _, _, _ = trash
    fs = open_fs()
    victim = write_file(fs, ROOT_INO, b"study.dcm", b"original")
    write_file(fs, ROOT_INO, b"study.dcm.locked", b"encrypted!")
    fs.rename(ROOT_INO, b"study.dcm.locked", ROOT_INO, b"study.dcm")
    [entry] = fs.trash_list()
    assert entry.ino == victim and entry.path == "/study.dcm"
    fs.unlink(ROOT_INO, b"study.dcm")
    assert fs.trash_restore(victim) == "/study.dcm"
    assert read_file(fs, victim) == b"original"


def test_expiry_and_purge_free_the_file_and_its_chunks(trash):
    open_fs, clock, store, data_dir = trash
    fs = open_fs()
    a = write_file(fs, ROOT_INO, b"a", os.urandom(BS))
    b = write_file(fs, ROOT_INO, b"b", os.urandom(BS))
    c = write_file(fs, ROOT_INO, b"c", os.urandom(BS))
    fs.unlink(ROOT_INO, b"a")
    clock.advance(3 * DAY)
    fs.unlink(ROOT_INO, b"b")
    fs.unlink(ROOT_INO, b"c")
    assert fs.trash_purge([c]) == 1
    with pytest.raises(NoSuchEntry):
        fs.trash_restore(c)
    with pytest.raises(NoSuchEntry):
        fs.trash_purge([c])
    clock.advance(5 * DAY)  # a: 8 days in the trash, b: 5
    assert fs.collect_garbage() == 1  # c's chunk, purged long ago; a is purged now
    assert [e.ino for e in fs.trash_list()] == [b]
    with pytest.raises(NoSuchEntry):
        fs.trash_restore(a)
    clock.advance(120)  # the collector's grace: a's chunk goes
    assert fs.collect_garbage() == 1
    fs.close()
    assert check_volume(data_dir, "t", store).clean


def test_an_open_file_deleted_stays_usable_and_is_kept_after_its_close(trash):
    open_fs, _, _, _ = trash
    fs = open_fs()
    fh, node = fs.create(ROOT_INO, b"live", 0o644, os.O_RDWR)
    fs.write(fh, 0, b"first")
    fs.unlink(ROOT_INO, b"live")
    fs.write(fh, 5, b" second")
    assert fs.read(fh, 0, 100) == b"first second"
    fs.release(fh)
    assert fs.trash_restore(node.ino) == "/live"
    assert read_file(fs, node.ino) == b"first second"


def test_nothing_is_kept_in_a_worm_domain_or_with_the_trash_off(trash, tmp_path):
    open_fs, _, _, _ = trash
    fs = open_fs()
    fs.worm_domain_create("/worm", DomainPolicy.parse("compliance", autocommit="15m"))
    write_file(fs, fs.resolve("/worm"), b"tmp", b"x")
    fs.unlink(fs.resolve("/worm"), b"tmp")  # uncommitted: deleted for good
    fs.symlink(ROOT_INO, b"link", b"target")
    fs.unlink(ROOT_INO, b"link")
    assert fs.trash_list() == []
    create_volume(tmp_path / "off", "o", block_size=BS, trash_s=0)
    off = Filesystem.open_volume(tmp_path / "off", "o", HookStore())
    try:
        ino = write_file(off, ROOT_INO, b"f", b"x")
        off.unlink(ROOT_INO, b"f")
        assert off.trash_list() == []
        with pytest.raises(NoSuchEntry):
            off.trash_restore(ino)
    finally:
        off.close()


def test_files_of_an_untrashed_root_directory_are_deleted_for_good(tmp_path):
    """The exports' health probes write and delete a file every few seconds."""
    create_volume(tmp_path, "p", block_size=BS)
    fs = Filesystem.open_volume(tmp_path, "p", HookStore(), untrashed=frozenset({b".probe"}))
    try:
        probe = fs.mkdir(ROOT_INO, b".probe", 0o700).ino
        deep = fs.mkdir(fs.mkdir(ROOT_INO, b"data", 0o755).ino, b".probe", 0o755).ino
        write_file(fs, probe, b"p", b"x")
        fs.unlink(probe, b"p")
        write_file(fs, deep, b"kept", b"y")  # only the root's directory of that name
        fs.unlink(deep, b"kept")
        assert [e.path for e in fs.trash_list()] == ["/data/.probe/kept"]
    finally:
        fs.close()
