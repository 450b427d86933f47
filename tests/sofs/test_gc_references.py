"""The collector against everything that keeps a chunk (issue 12): in one volume, live files,
a trashed file, a file deleted and a file overwritten after a snapshot, a committed WORM file
before its expiry and one under a legal hold; GC runs long past every grace period delete
none of the chunks they reference, and the chunks nobody keeps any more (a purged file's,
once its snapshot is gone) do go."""

from __future__ import annotations

import os

from chunkstore.clock import FakeClock
from sofs.fs import Filesystem
from sofs.inode import ROOT_INO
from sofs.snapshot.manager import Snapshots
from sofs.volume import create_volume
from sofs.worm.policy import DomainPolicy

from .conftest import BS, HookStore, read_file, write_file

DAY = 86400


def test_no_gc_run_deletes_a_chunk_that_anything_keeps(tmp_path):
    create_volume(tmp_path, "v", block_size=BS)  # a 7-day trash
    store, clock = HookStore(), FakeClock(wall_start=1_800_000_000.0)
    fs = Filesystem.open_volume(tmp_path, "v", store, clock=clock, gc_grace_s=60)
    try:
        blob = {n: os.urandom(2 * BS) for n in ("live", "trashed", "snapped", "overwritten",
                                                 "retained", "held")}
        ino = {n: write_file(fs, ROOT_INO, n.encode(), blob[n])
               for n in ("live", "trashed", "snapped", "overwritten")}
        dom = fs.resolve("/worm", create_dirs=True)
        fs.worm_domain_create("/worm", DomainPolicy.parse("compliance", default="10y",
                                                          autocommit="15m"))
        for n in ("retained", "held"):
            ino[n] = write_file(fs, dom, n.encode(), blob[n])
            fs.setattr(ino[n], mode=0o444)
        fs.worm_hold(ino["held"], "case-7", add=True)
        snaps = Snapshots(fs, clock)
        snaps.create("before")
        fs.unlink(ROOT_INO, b"trashed")
        fs.unlink(ROOT_INO, b"snapped")
        fs.trash_purge([ino["snapped"]])  # gone from the trash too: only the snapshot keeps it
        fh = fs.open(ino["overwritten"], os.O_WRONLY)
        fs.write(fh, 0, os.urandom(2 * BS))
        fs.release(fh)
        chunks = len(store)
        for _ in range(3):  # well past the collector's grace and the snapshots' re-queue
            clock.advance(2 * DAY)
            assert fs.collect_garbage() == 0
            assert len(store) == chunks
        assert read_file(fs, ino["live"]) == blob["live"]
        for n in ("retained", "held"):
            assert read_file(fs, ino[n]) == blob[n]
        assert fs.trash_restore(ino["trashed"]) == "/trashed"
        assert read_file(fs, ino["trashed"]) == blob["trashed"]
        view = snaps.open("before")
        try:
            for n in ("snapped", "overwritten"):
                assert read_file(view, view.lookup(ROOT_INO, n.encode()).ino) == blob[n]
        finally:
            view.close()
        snaps.delete("before")  # now the purged file's and the old version's chunks go
        clock.advance(2 * 60)
        assert fs.collect_garbage() == 4
        assert len(store) == chunks - 4
    finally:
        fs.close()
