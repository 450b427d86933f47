"""fsck and the chunks nothing references (issue 13): a chunk of the volume left on the RING
by a crashed flush is listed and, with repair, handed to the volume's collector, which
deletes it only after its grace period; chunks that a snapshot, the trash or a WORM file
still references, and another volume's or nobody's chunks, are never listed; a listing that
fails stops fsck before it repairs anything."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from chunkstore.clock import FakeClock
from chunkstore.errors import DiskUnavailable
from chunkstore.placement.keys import ChunkRef
from chunkstore.ring.local import LocalRing
from chunkstore.ring.localcluster import init_local_cluster
from sofs import fsck, schema
from sofs.blocks import BlockCodec
from sofs.errors import ReferencesUnknown
from sofs.fs import Filesystem
from sofs.inode import ROOT_INO
from sofs.metadata import MetaStore
from sofs.snapshot.manager import Snapshots
from sofs.volume import create_volume, load_volume, volume_dir
from sofs.worm.policy import DomainPolicy

from .conftest import BS, write_file


def _on_disks(ring: LocalRing, key: bytes) -> bool:
    return any(p.key == key for d in ring.available_disks() for p in ring.disk(d).pieces())


def _leak(ring: LocalRing, fs: Filesystem, tmp_path, name: str = "v") -> ChunkRef:
    """What a flush that crashed after storing its chunk leaves: the volume's chunk, unnamed."""
    vid = uuid.UUID(load_volume(tmp_path, name).uuid).bytes
    return ring.put(BlockCodec(0, vid).encode(os.urandom(BS)), fs.protection)


def _keys(meta: MetaStore, prefix: bytes) -> list[bytes]:
    return [bytes(k) for k, _ in meta.scan(prefix)]


def test_unreferenced_chunks_are_listed_and_collected_only_after_the_grace(tmp_path):
    init_local_cluster(tmp_path / "cluster", disks=6, vnodes=6)
    create_volume(tmp_path, "v", block_size=BS)  # a 7-day trash
    create_volume(tmp_path, "other", block_size=BS)
    with LocalRing.open(tmp_path / "cluster") as ring:
        clock = FakeClock(wall_start=time.time())
        fs = Filesystem.open_volume(tmp_path, "v", ring, clock=clock, gc_grace_s=60)
        ino = {n: write_file(fs, ROOT_INO, n.encode(), os.urandom(2 * BS))
               for n in ("live", "trashed", "snapped")}
        dom = fs.resolve("/worm", create_dirs=True)
        fs.worm_domain_create("/worm", DomainPolicy.parse("compliance", default="10y"))
        ino["retained"] = write_file(fs, dom, b"retained", os.urandom(BS))
        fs.setattr(ino["retained"], mode=0o444)
        snapped = {bytes(v[5:25]) for _, v in fs.meta.scan(schema.block_prefix(ino["snapped"]))}
        Snapshots(fs, clock).create("before")
        fs.unlink(ROOT_INO, b"trashed")
        fs.unlink(ROOT_INO, b"snapped")
        fs.trash_purge([ino["snapped"]])
        leaked = _leak(ring, fs, tmp_path)
        fs.close()
        other = Filesystem.open_volume(tmp_path, "other", ring)
        foreign = _leak(ring, other, tmp_path, "other")  # the other volume's: not v's business
        other.close()
        nobody = ring.put(b"stored straight to the ring", fs.protection)
        # the live volume forgets the snapshot's chunks altogether (a restore from an older
        # checkpoint would): only the snapshot names them now
        meta = MetaStore(volume_dir(tmp_path, "v") / "meta")
        b = meta.batch()
        for k, _ in meta.scan(b"G"):
            if bytes(k[9:]) in snapped:
                b.delete(k)
        for ck in snapped:
            b.delete(schema.refcount_key(ck))
        meta.commit(b, sync=True)
        meta.close()

        report = fsck.check_volume(tmp_path, "v", ring)
        assert [p.kind for p in report.problems] == ["unreferenced-chunk"]
        assert leaked.hex in report.problems[0].detail
        assert report.unreferenced == 1 and report.unreferenced_bytes == leaked.size
        assert report.clean  # space to reclaim (a crash leaves some), not an inconsistency

        report = fsck.check_volume(tmp_path, "v", ring, repair=True, gc_grace_s=60)
        assert report.unreferenced == 1 and report.problems[0].repaired
        assert _on_disks(ring, leaked.key)  # handed to the collector, not deleted
        meta = MetaStore(volume_dir(tmp_path, "v") / "meta")
        try:
            assert any(k[9:] == leaked.key for k in _keys(meta, b"G"))
        finally:
            meta.close()
        again = fsck.check_volume(tmp_path, "v", ring)
        assert again.clean and again.unreferenced == 0

        fs = Filesystem.open_volume(tmp_path, "v", ring, clock=clock, gc_grace_s=60)
        try:
            fs.collect_garbage()
            assert _on_disks(ring, leaked.key)  # within the grace period
            clock.advance(120)
            fs.collect_garbage()
            assert not _on_disks(ring, leaked.key)
            for ck in snapped:
                assert _on_disks(ring, ck)  # the snapshot still names it
        finally:
            fs.close()
        assert _on_disks(ring, foreign.key) and _on_disks(ring, nobody.key)
        assert fsck.check_volume(tmp_path, "v", ring).clean


def _volume_with_a_leak_and_a_fixable_problem(tmp_path, ring):
    create_volume(tmp_path, "v", block_size=BS)
    fs = Filesystem.open_volume(tmp_path, "v", ring)
    ino = write_file(fs, ROOT_INO, b"f", os.urandom(BS))
    leaked = _leak(ring, fs, tmp_path)
    fs.close()
    meta = MetaStore(volume_dir(tmp_path, "v") / "meta")
    ck = bytes(next(iter(meta.scan(b"B")))[1][5:25])
    b = meta.batch()
    b.delete(schema.refcount_key(ck))  # refcount-missing: repair would write it
    meta.commit(b, sync=True)
    meta.close()
    return ino, ck, leaked


def _nothing_repaired(tmp_path, ck: bytes) -> None:
    meta = MetaStore(volume_dir(tmp_path, "v") / "meta")
    try:
        assert meta.get(schema.refcount_key(ck)) is None
        assert _keys(meta, b"G") == []
    finally:
        meta.close()


def test_a_disk_that_does_not_list_stops_the_repair(tmp_path, monkeypatch):
    init_local_cluster(tmp_path / "cluster", disks=6, vnodes=6)
    with LocalRing.open(tmp_path / "cluster") as ring:
        _, ck, _ = _volume_with_a_leak_and_a_fixable_problem(tmp_path, ring)
        broken = ring.available_disks()[2]
        real = ring.disk

        class Unlistable:  # answers everything but the listing of its pieces
            def __init__(self, inner):
                self.inner = inner

            def __getattr__(self, name):
                return getattr(self.inner, name)

            def pieces(self):
                raise DiskUnavailable("index unreadable")

        monkeypatch.setattr(ring, "disk",
                            lambda d: Unlistable(real(d)) if d == broken else real(d))
        with pytest.raises(ReferencesUnknown, match=f"disk {broken}"):
            fsck.check_volume(tmp_path, "v", ring, repair=True)
        _nothing_repaired(tmp_path, ck)


def test_an_unreadable_snapshot_stops_the_repair(tmp_path):
    init_local_cluster(tmp_path / "cluster", disks=6, vnodes=6)
    with LocalRing.open(tmp_path / "cluster") as ring:
        _, ck, _ = _volume_with_a_leak_and_a_fixable_problem(tmp_path, ring)
        bogus = volume_dir(tmp_path, "v") / "snapshots" / "s1"
        bogus.mkdir(parents=True)
        (bogus / "CURRENT").write_text("not a database\n")
        with pytest.raises(ReferencesUnknown, match="snapshot s1"):
            fsck.check_volume(tmp_path, "v", ring, repair=True)
        _nothing_repaired(tmp_path, ck)
