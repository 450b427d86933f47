"""Snapshots of a volume (sofs.snapshot): taken, read after the live files changed and after a
reopen, listed, deleted; the garbage collector keeps every chunk a snapshot references, stops
when a snapshot cannot be read, and gets back the chunks of a deleted snapshot."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from chunkstore.clock import FakeClock
from sofs import schema
from sofs.errors import EntryExists, InvalidArgument, NoSuchEntry, SnapshotUnreadable, VolumeFenced
from sofs.inode import ROOT_INO
from sofs.snapshot import catalog
from sofs.snapshot.manager import Snapshots
from sofs.snapshot.view import ReadOnlyStore
from sofs.worm.policy import DomainPolicy

from .conftest import BS, read_file, write_file


def _by_path(fs, path: str) -> int:
    ino = ROOT_INO
    for part in path.split("/"):
        ino = fs.lookup(ino, part.encode()).ino
    return ino


def _read(fs, path: str) -> bytes:
    return read_file(fs, _by_path(fs, path))


def _rewrite(fs, path: str, data: bytes) -> None:
    ino = _by_path(fs, path)
    fh = fs.open(ino, os.O_RDWR | os.O_TRUNC)
    fs.write(fh, 0, data)
    fs.release(fh)


def _referenced(fs) -> int:
    """Chunks the live volume's refcounts name (count > 0)."""
    return sum(1 for _, v in fs.meta.scan(b"R") if schema.parse_refcount_value(v)[0] > 0)


@pytest.fixture
def volume(env):
    """(fs with live, soon-deleted and soon-overwritten files, its store, its clock)."""
    mount, store = env
    clock = FakeClock()
    fs = mount(gc_grace_s=0, clock=clock)
    write_file(fs, ROOT_INO, b"live", b"L" * (2 * BS))
    write_file(fs, ROOT_INO, b"gone", os.urandom(3 * BS))
    d = fs.mkdir(ROOT_INO, b"study", 0o755)
    write_file(fs, d.ino, b"slice", os.urandom(2 * BS + 7))
    return fs, store, clock


def test_a_snapshot_reads_the_old_contents_after_live_files_changed(volume):
    fs, store, clock = volume
    old_gone, old_slice = _read(fs, "gone"), _read(fs, "study/slice")
    snaps = Snapshots(fs, clock)
    info = snaps.create("before")
    assert info.name == "before" and info.meta_bytes > 0
    fs.unlink(ROOT_INO, b"gone")
    _rewrite(fs, "study/slice", b"new bytes")
    write_file(fs, ROOT_INO, b"later", b"after the snapshot")
    view = snaps.open("before")
    try:
        assert _read(view, "gone") == old_gone
        assert _read(view, "study/slice") == old_slice
        with pytest.raises(NoSuchEntry):
            view.lookup(ROOT_INO, b"later")
        names = {n for n, _, _ in view.readdir(ROOT_INO)}
        assert names == {b".", b"..", b"live", b"gone", b"study"}
    finally:
        view.close()
    assert _read(fs, "study/slice") == b"new bytes"


def test_a_snapshot_refuses_every_change(volume):
    fs, store, clock = volume
    snaps = Snapshots(fs, clock)
    snaps.create("s")
    view = snaps.open("s")
    try:
        with pytest.raises(VolumeFenced):
            view.mkdir(ROOT_INO, b"new", 0o755)
        with pytest.raises(VolumeFenced):
            view.unlink(ROOT_INO, b"live")
        with pytest.raises(VolumeFenced):
            view.setattr(_by_path(view, "live"), mode=0o600)
        assert isinstance(view.store, ReadOnlyStore)
    finally:
        view.close()
    assert _read(fs, "live") == b"L" * (2 * BS)


def test_a_snapshot_survives_closing_and_reopening_the_volume(env, volume):
    mount, _ = env
    fs, store, clock = volume
    old = _read(fs, "gone")
    Snapshots(fs, clock).create("s")
    fs.unlink(ROOT_INO, b"gone")
    assert fs.collect_garbage() == 0  # pinned: nothing deleted
    fs.close()
    fs2 = mount(gc_grace_s=0, clock=clock)
    assert fs2.collect_garbage() == 0
    view = Snapshots(fs2, clock).open("s")
    try:
        assert _read(view, "gone") == old
    finally:
        view.close()


def test_gc_keeps_every_chunk_a_snapshot_references(volume):
    fs, store, clock = volume
    snaps = Snapshots(fs, clock)
    before = len(store)
    referenced = _referenced(fs)
    assert before == referenced == 1 + 3 + 3  # "live" is one chunk twice
    snaps.create("s")
    fs.unlink(ROOT_INO, b"gone")
    _rewrite(fs, "study/slice", os.urandom(BS))
    assert fs.collect_garbage() == 0
    assert len(store) == before + 1  # the new slice's chunk; nothing was deleted
    assert fs._collector.pinned == 6
    # the live volume still knows the pinned chunks (count 0, queued a week ahead)
    assert _referenced(fs) == 1 + 1
    zero = [k for k, v in fs.meta.scan(b"R") if schema.parse_refcount_value(v)[0] == 0]
    assert len(zero) == 6
    assert sum(1 for _ in fs.meta.scan(b"G")) == 6
    # deleting the snapshot gives them back
    done = snaps.delete("s")
    assert done.requeued == 6
    assert fs.collect_garbage() == 6
    assert len(store) == 2
    assert not catalog.snapshot_path(snaps.vdir, "s").exists()


def test_a_chunk_of_two_snapshots_goes_only_with_the_second(volume):
    fs, store, clock = volume
    snaps = Snapshots(fs, clock)
    snaps.create("a")
    snaps.create("b")
    fs.unlink(ROOT_INO, b"gone")
    snaps.delete("a")
    assert fs.collect_garbage() == 0
    snaps.delete("b")
    assert fs.collect_garbage() == 3


def test_an_unreadable_snapshot_stops_the_collector(volume):
    fs, store, clock = volume
    snaps = Snapshots(fs, clock)
    snaps.create("s")
    fs.unlink(ROOT_INO, b"gone")
    before = len(store)
    path = catalog.snapshot_path(snaps.vdir, "s")
    (path / "CURRENT").unlink()
    with pytest.raises(SnapshotUnreadable):
        fs.collect_garbage()
    assert len(store) == before


def test_a_damaged_or_lost_catalog_stops_the_collector(volume):
    fs, store, clock = volume
    snaps = Snapshots(fs, clock)
    snaps.create("s")
    fs.unlink(ROOT_INO, b"gone")
    before = len(store)
    cat = catalog.catalog_path(snaps.vdir)
    cat.write_text("{not json")
    with pytest.raises(SnapshotUnreadable):
        fs.collect_garbage()
    cat.unlink()
    with pytest.raises(SnapshotUnreadable):
        fs.collect_garbage()
    with pytest.raises(SnapshotUnreadable):
        snaps.create("t")
    assert len(store) == before


def test_a_snapshot_that_cannot_be_read_mid_pass_deletes_nothing_of_its_batch(volume):
    fs, store, clock = volume
    snaps = Snapshots(fs, clock)
    snaps.create("s")
    fs.unlink(ROOT_INO, b"gone")
    fs.unlink(ROOT_INO, b"live")
    pins = fs._collector.pins
    pins.refresh()

    def broken(chunk_key):
        raise SnapshotUnreadable("disk error")

    pins.refresh = lambda: ["s"]
    pins.pinned_by = broken
    before = len(store)
    with pytest.raises(SnapshotUnreadable):
        fs.collect_garbage()
    assert len(store) == before


def test_names_defaults_listing_and_errors(volume):
    fs, store, clock = volume
    snaps = Snapshots(fs, clock)
    first = snaps.create()
    assert first.name == "@GMT-2023.11.14-22.13.20"  # FakeClock's wall start, UTC
    with pytest.raises(EntryExists):
        snaps.create()
    clock.advance(3600)
    second = snaps.create()
    assert second.name == "@GMT-2023.11.14-23.13.20"
    for bad in ("", ".hidden", "a/b", "x" * 81, "sp ace"):
        with pytest.raises(InvalidArgument):
            snaps.create(bad)
    assert [i.name for i in snaps.ready()] == [first.name, second.name]
    with pytest.raises(NoSuchEntry):
        snaps.delete("nope")
    doc = json.loads(catalog.catalog_path(snaps.vdir).read_text())
    assert [s["state"] for s in doc["snapshots"]] == ["ready", "ready"]


def test_buffered_writes_are_in_the_snapshot(volume):
    fs, store, clock = volume
    fh, node = fs.create(ROOT_INO, b"open", 0o644, os.O_WRONLY)
    fs.write(fh, 0, b"not closed yet")
    snaps = Snapshots(fs, clock)
    snaps.create("s")
    fs.release(fh)
    view = snaps.open("s")
    try:
        assert _read(view, "open") == b"not closed yet"
    finally:
        view.close()


def test_an_interrupted_delete_is_finished_by_the_next_command(volume):
    fs, store, clock = volume
    snaps = Snapshots(fs, clock)
    snaps.create("s")
    infos = catalog.load(snaps.vdir)
    catalog.save(snaps.vdir, [dataclasses.replace(i, state=catalog.DELETING) for i in infos])
    (catalog.snapshots_dir(snaps.vdir) / ".new-x").mkdir()
    assert snaps.ready() == []
    fs.unlink(ROOT_INO, b"gone")
    snaps.create("t")
    assert [i.name for i in snaps.ready()] == ["t"]
    assert sorted(p.name for p in catalog.snapshots_dir(snaps.vdir).iterdir()) == ["t"]


def test_a_worm_file_due_for_autocommit_is_read_from_a_snapshot_without_any_write(volume):
    fs, store, clock = volume
    policy = DomainPolicy.parse("compliance", default="10y", minimum="1d", maximum="30y",
                                autocommit="5m")
    fs.worm_domain_create("/worm", policy)
    ino = write_file(fs, _by_path(fs, "worm"), b"scan.dcm", b"DICM" * 100)
    snaps = Snapshots(fs, clock)
    snaps.create("s")
    clock.advance(3600)  # its autocommit is due
    roots = dict(store.list_roots())
    view = snaps.open("s")
    try:
        node = view.getattr(ino)
        assert node.mode & 0o222  # not committed in the snapshot: as it was
        assert _read(view, "worm/scan.dcm") == b"DICM" * 100
    finally:
        view.close()
    assert dict(store.list_roots()) == roots  # nothing written to the RING
    assert not fs.getattr(ino).mode & 0o222  # the live file commits as ever


def test_slots_are_never_given_twice_and_survive_a_reopen(env, volume):
    mount, _ = env
    fs, store, clock = volume
    snaps = Snapshots(fs, clock)
    a, b = snaps.create("a"), snaps.create("b")
    assert (a.slot, b.slot) == (2, 3)
    snaps.delete("b")
    assert snaps.create("b").slot == 4  # not 3 again: an old handle finds nothing
    fs.close()
    fs2 = mount(gc_grace_s=0, clock=clock)
    snaps2 = Snapshots(fs2, clock)
    assert [(i.name, i.slot) for i in snaps2.ready()] == [("a", 2), ("b", 4)]
    assert snaps2.create("c").slot == 5
