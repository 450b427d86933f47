"""The metadata log's group commit (sofs.metadata.MetaStore.make_durable) and the synced close
of a written file (sofs.fileio): what a close or fsync acknowledges is on stable storage.

The power cut itself is tests/powercut/; here the counting: which operations sync the log,
and that concurrent callers share one sync."""

from __future__ import annotations

import os
import threading

import pytest

from sofs.errors import MetadataDamaged
from sofs.metadata import MetaStore
from tests.sofs.conftest import write_file

ROOT = 1


class _FlushHook:
    """The database with its ``flush_wal`` replaced (rocksdict's own attribute is read-only)."""

    def __init__(self, db, flush_wal) -> None:
        self._db = db
        self.flush_wal = flush_wal

    def __getattr__(self, name):
        return getattr(self._db, name)


@pytest.fixture
def meta(tmp_path):
    store = MetaStore(tmp_path / "meta")
    yield store
    store.close()


def _put(meta: MetaStore, key: bytes) -> int:
    b = meta.batch()
    b.put(key, b"v")
    return meta.commit(b)


def test_commits_are_numbered_and_durable_only_once_synced(meta):
    first = _put(meta, b"a")
    second = _put(meta, b"b")
    assert second == first + 1 == meta.written
    assert not meta.is_durable(second)
    meta.make_durable(first)
    # one sync covers every commit written before it started, not only the one asked for
    assert meta.is_durable(second) and meta.wal_syncs == 1
    meta.make_durable(second)
    assert meta.wal_syncs == 1  # already durable: no second sync
    assert meta.commit(meta.batch()) == second  # an empty batch is not a commit


def test_concurrent_callers_share_log_syncs(meta, monkeypatch):
    """While one sync runs, every other caller waits for the next round: 12 threads that
    commit and then ask for durability need far fewer than 12 syncs."""
    real_flush = meta._db.flush_wal
    entered = threading.Event()
    release = threading.Event()
    calls = []

    def slow_flush(sync):
        calls.append(sync)
        if len(calls) == 1:
            entered.set()
            release.wait(10)  # the first sync is slow: everyone else piles up behind it
        return real_flush(sync)

    monkeypatch.setattr(meta, "_db", _FlushHook(meta._db, slow_flush))
    errors = []

    def worker(i: int) -> None:
        try:
            seq = _put(meta, b"k%d" % i)
            meta.make_durable(seq)
            assert meta.is_durable(seq)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    leader = threading.Thread(target=worker, args=(0,))
    leader.start()
    assert entered.wait(10)
    others = [threading.Thread(target=worker, args=(i,)) for i in range(1, 12)]
    for t in others:
        t.start()
    # let the others commit and queue up (they block on the condition, not on a timer)
    while meta.written < 12:
        threading.Event().wait(0.01)
    release.set()
    for t in [leader, *others]:
        t.join(10)
    assert not errors
    assert all(calls)  # every flush is a synced one
    assert meta.wal_syncs == len(calls) == 2  # the leader's round, then one for the 11 others
    assert meta.is_durable(12)


def test_failed_sync_is_raised_and_not_counted_durable(meta, monkeypatch):
    seq = _put(meta, b"a")

    def broken(sync):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(meta, "_db", _FlushHook(meta._db, broken))
    with pytest.raises(MetadataDamaged):
        meta.make_durable(seq)
    assert not meta.is_durable(seq) and meta.wal_syncs == 0


def test_close_of_written_file_syncs_the_log(env):
    mount, _ = env
    fs = mount()
    before = fs.meta.wal_syncs
    write_file(fs, ROOT, b"study.dcm", b"x" * 100_000)
    assert fs.meta.is_durable(fs.meta.written)
    assert fs.meta.wal_syncs > before


def test_close_without_writes_does_not_sync(env):
    mount, _ = env
    fs = mount()
    ino = write_file(fs, ROOT, b"study.dcm", b"x" * 1000)
    before = fs.meta.wal_syncs

    fh = fs.open(ino, os.O_RDONLY)
    fs.read(fh, 0, 10)
    fs.flush(fh)
    fs.release(fh)
    assert fs.meta.wal_syncs == before


def test_unsynced_close_switch_leaves_commit_in_page_cache(env):
    """The benchmark's baseline (SOFS_BENCH_UNSYNCED_CLOSE=1): a close commits, unsynced."""
    mount, _ = env
    fs = mount(synced_acks=False)
    before = fs.meta.wal_syncs
    write_file(fs, ROOT, b"study.dcm", b"x" * 100_000)
    assert fs.meta.wal_syncs == before
    assert not fs.meta.is_durable(fs.meta.written)
