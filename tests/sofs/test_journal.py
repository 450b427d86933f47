"""The metadata journal in the chunk store (sofs.journal) and its replay by a restore
(sofs.metacheckpoint), over an in-memory store with root records."""

from __future__ import annotations

import os
import threading

import pytest

from chunkstore import errors as cerr
from sofs import journal as jr
from sofs import metacheckpoint as mc
from sofs.errors import JournalError, JournalFull, NoSuchEntry, VolumeFenced
from sofs.fs import Ctx, Filesystem
from sofs.inode import ROOT_INO
from sofs.volume import volume_dir

from .conftest import read_file, write_file

ROOT = Ctx(uid=0, gid=0)


def _journaled(env, tmp_path, token=7, slots=jr.SLOTS):
    """A mounted volume with its journal attached after a first checkpoint, as a mount holding
    the volume's lease does: (fs, store, checkpointer, writer)."""
    mount, store = env
    fs = mount()
    writer = jr.JournalWriter(store, fs.config.uuid, token, slots=slots)
    cp = mc.Checkpointer(fs.meta, store, fs.config, tmp_path / "work")
    cp.journal = writer
    info = cp.write()
    assert info.journal == f"{token}/1"
    fs.meta.attach_journal(writer.append)
    return fs, store, cp, writer


def _restore(store, config, root, journal=True):
    vdir = volume_dir(root, config.name)
    vdir.mkdir(parents=True)
    cfg, info = mc.restore(store, config.uuid, vdir / "meta", journal=journal)
    (vdir / "volume.json").write_text(cfg.to_json())
    return Filesystem.open_volume(root, config.name, store), info


def test_acknowledged_changes_survive_the_loss_of_the_host(env, tmp_path):
    fs, store, _cp, writer = _journaled(env, tmp_path)
    files = {f"f{i}".encode(): os.urandom(3000 * i + 1) for i in range(6)}
    for name, data in files.items():
        write_file(fs, ROOT_INO, name, data)  # a close of a written file: durable
    d = fs.mkdir(ROOT_INO, b"study", 0o750, ROOT)
    fs.rename(ROOT_INO, b"f0", d.ino, b"moved")
    fs.unlink(ROOT_INO, b"f1", ROOT)
    fs.meta.make_durable()  # what the mount does before answering rename / unlink
    assert writer.groups >= len(files) and fs.meta.journal_queued == 0
    # the host is lost: nothing of its metadata but what the store holds
    restored, info = _restore(store, fs.config, tmp_path / "elsewhere")
    try:
        assert info.replayed_groups == writer.groups and info.replayed_entries == writer.entries
        study = restored.lookup(ROOT_INO, b"study")
        assert read_file(restored, restored.lookup(study.ino, b"moved").ino) == files[b"f0"]
        for name in (b"f0", b"f1"):
            with pytest.raises(NoSuchEntry):
                restored.lookup(ROOT_INO, name)
        for name in list(files)[2:]:
            assert read_file(restored, restored.lookup(ROOT_INO, name).ino) == files[name]
    finally:
        restored.close()
    # without the journal the same restore has none of it: the journal is what kept them
    plain, info = _restore(store, fs.config, tmp_path / "plain", journal=False)
    try:
        assert info.replayed_groups == 0
        with pytest.raises(NoSuchEntry):
            plain.lookup(ROOT_INO, b"study")
    finally:
        plain.close()


def test_commits_share_one_journal_group(env, tmp_path):
    fs, store, _cp, writer = _journaled(env, tmp_path)
    for i in range(5):  # five commits, none made durable yet
        b = fs.meta.batch()
        b.put(b"\xfetest%d" % i, b"v%d" % i)
        fs.meta.commit(b)
    assert fs.meta.journal_queued == 5 and writer.groups == 0
    fs.meta.make_durable()
    assert writer.groups == 1 and fs.meta.journal_queued == 0
    got: list[dict] = []
    jr.replay(store, fs.config.uuid, jr.JournalPosition(7, 1), got.append)
    assert got == [{b"\xfetest%d" % i: b"v%d" % i for i in range(5)}]


def test_concurrent_closes_are_all_journaled(env, tmp_path):
    fs, store, _cp, writer = _journaled(env, tmp_path)
    names = [f"c{i}".encode() for i in range(16)]
    threads = [threading.Thread(target=write_file, args=(fs, ROOT_INO, n, n * 100))
               for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert writer.groups <= len(names)
    restored, _ = _restore(store, fs.config, tmp_path / "elsewhere")
    try:
        for n in names:
            assert read_file(restored, restored.lookup(ROOT_INO, n).ino) == n * 100
    finally:
        restored.close()


def _lands_then_fails(store):
    """The store's next journal write reaches a disk but not a quorum: stored, then refused."""
    real = store.put_root
    armed = [True]

    def put_root(volume_id, seq, body):
        held = real(volume_id, seq, body)
        if armed[0] and jr.is_journal_id(volume_id):
            armed[0] = False
            raise cerr.NotEnoughDisks("1 of 5 disks hold it, quorum 3")
        return held

    store.put_root = put_root


def _put(fs, key, value, durable=False):
    b = fs.meta.batch()
    b.put(key, value)
    fs.meta.commit(b)
    if durable:
        fs.meta.make_durable()


def test_a_group_the_store_refused_is_written_again_byte_identical(env, tmp_path):
    fs, store, _cp, writer = _journaled(env, tmp_path)
    _lands_then_fails(store)
    _put(fs, b"\xfefirst", b"1")
    with pytest.raises(JournalError, match="not stored"):
        fs.meta.make_durable()
    assert fs.meta.journal_queued == 1 and writer.in_flight
    # a different body under the seq that one disk holds would conflict (or tie on reads):
    # the failed entry goes again as it was, the queued commits follow
    _put(fs, b"\xfesecond", b"2", durable=True)
    assert not writer.in_flight and fs.meta.journal_queued == 0
    got: list[dict] = []
    jr.replay(store, fs.config.uuid, jr.JournalPosition(7, 1), got.append)
    assert got == [{b"\xfefirst": b"1"}, {b"\xfefirst": b"1", b"\xfesecond": b"2"}]


def test_replay_never_undoes_a_commit_the_snapshot_holds(env, tmp_path):
    fs, store, cp, _writer = _journaled(env, tmp_path)
    _lands_then_fails(store)
    _put(fs, b"\xfek", b"old")
    with pytest.raises(JournalError):
        fs.meta.make_durable()  # entry 7/1 holds k=old on one disk
    _put(fs, b"\xfek", b"new")  # never acknowledged, but in the next checkpoint's snapshot
    info = cp.write()
    assert info.journal == "7/1"
    # the host is lost before anything more reaches the journal
    restored, rinfo = _restore(store, fs.config, tmp_path / "elsewhere")
    try:
        # replaying 7/1 over the snapshot would put k back to "old" under the snapshot's
        # newer state; the snapshot holds that group whole, so it is skipped
        assert restored.meta.get(b"\xfek") == b"new"
        assert rinfo.replayed_groups == 0
    finally:
        restored.close()


def test_nodes_holding_a_newer_token_fence_the_copy(env, tmp_path):
    fs, store, _cp, _writer = _journaled(env, tmp_path)

    def stale(volume_id, seq, body):
        raise cerr.StaleEpoch("volume has fencing token 9, this connection declared 7")

    store.put_root = stale
    fh, _ = fs.create(ROOT_INO, b"late", 0o644, os.O_WRONLY)
    fs.write(fh, 0, b"x")
    with pytest.raises(VolumeFenced):
        fs.flush(fh)
        fs.release(fh)
    assert fs.meta.fenced is not None
    with pytest.raises(VolumeFenced):
        fs.mkdir(ROOT_INO, b"more", 0o755, ROOT)


def test_large_groups_span_entries_and_an_incomplete_one_is_dropped(env, tmp_path):
    fs, store, _cp, writer = _journaled(env, tmp_path)
    big = {b"\xfebig%d" % i: os.urandom(30_000) for i in range(8)}  # ~240 KB, incompressible
    b = fs.meta.batch()
    for k, v in big.items():
        b.put(k, v)
    fs.meta.commit(b, sync=True)
    assert writer.entries >= 4 and writer.groups == 1
    got: list[dict] = []
    res = jr.replay(store, fs.config.uuid, jr.JournalPosition(7, 1), got.append)
    assert got == [big] and res.entries == writer.entries
    assert res.end == jr.JournalPosition(7, 1 + writer.entries)
    # a group whose last part never reached the store was never acknowledged: dropped whole
    b = fs.meta.batch()
    for k in big:
        b.put(k, b"new")
    b.put(b"\xfepad", os.urandom(100_000))
    fs.meta.commit(b, sync=True)
    last = writer.position().next - 1
    del store._roots[jr.slot_id(fs.config.uuid, last)]
    got = []
    res = jr.replay(store, fs.config.uuid, jr.JournalPosition(7, 1), got.append)
    assert got == [big] and res.dropped_parts >= 1


def test_the_journal_wraps_only_past_a_checkpoint(env, tmp_path):
    fs, store, cp, writer = _journaled(env, tmp_path, slots=4)
    wanted = []
    for i in range(4):
        b = fs.meta.batch()
        b.put(b"\xfek%d" % i, b"%d" % i)
        fs.meta.commit(b, sync=True)
        wanted.append(b"\xfek%d" % i)
    b = fs.meta.batch()
    b.put(b"\xfek4", b"4")
    fs.meta.commit(b)
    with pytest.raises(JournalFull):
        fs.meta.make_durable()
    assert writer.backlog() == 4
    info = cp.write()  # the checkpoint is the trim point: its position is 7/5
    assert info.journal == "7/5" and writer.backlog() == 0
    fs.meta.make_durable()  # the queued commit now goes into a reused slot
    for i in range(5, 8):
        b = fs.meta.batch()
        b.put(b"\xfek%d" % i, b"%d" % i)
        fs.meta.commit(b, sync=True)
    restored, info = _restore(store, fs.config, tmp_path / "elsewhere")
    try:
        assert info.replayed_groups == 3  # k4's group: its commit is in the snapshot already
        for i in range(8):
            assert restored.meta.get(b"\xfek%d" % i) == b"%d" % i
    finally:
        restored.close()


def test_a_reader_accepts_only_its_own_token(env, tmp_path):
    fs, store, _cp, _writer = _journaled(env, tmp_path, token=7)
    b = fs.meta.batch()
    b.put(b"\xfeold", b"1")
    fs.meta.commit(b, sync=True)
    newer = jr.JournalWriter(store, fs.config.uuid, 8)  # the next lease holder, same slots
    newer.append({b"\xfenew": b"2"})
    got: list[dict] = []
    res = jr.replay(store, fs.config.uuid, jr.JournalPosition(7, 1), got.append)
    assert got == [] and res.groups == 0  # slot 1 now holds token 8's entry: not 7/1
    got = []
    jr.replay(store, fs.config.uuid, jr.JournalPosition(8, 1), got.append)
    assert got == [{b"\xfenew": b"2"}]
    with pytest.raises(cerr.StaleRoot):  # and token 7 can never write there again
        store.put_root(jr.slot_id(fs.config.uuid, 1), jr.entry_seq(7, 1), b"x")


def test_journal_slots_are_not_volumes(env, tmp_path):
    fs, store, _cp, _writer = _journaled(env, tmp_path)
    write_file(fs, ROOT_INO, b"a", b"x")
    assert any(jr.is_journal_id(v) for v in store.list_roots())
    assert [v.uuid for v in mc.find_volumes(store)] == [fs.config.uuid]


def test_group_encoding_round_trip_and_damage():
    writes = {b"a": b"1", b"b": None, b"": b"", b"c" * 300: os.urandom(5000)}
    assert jr.decode_group(jr.encode_group(writes)) == writes
    with pytest.raises(JournalError):
        jr.decode_group(b"not zstd")
    frame = jr.encode_group(writes)
    with pytest.raises(JournalError):
        jr.decode_group(frame[:-9] + bytes(9))


def test_a_deleted_volume_leaves_no_journal(env, tmp_path):
    from sofs import volumedelete

    fs, store, _cp, writer = _journaled(env, tmp_path)
    write_file(fs, ROOT_INO, b"patient-name.dcm", b"x")
    slots = {v for v in store.list_roots() if jr.is_journal_id(v)}
    assert slots and writer.entries >= 1
    fs.close()
    tomb = volumedelete.begin(tmp_path, "v")
    volumedelete.finish(tomb, store)
    for sid in slots:
        assert store.get_root(sid).body == b""
    with pytest.raises(cerr.StaleRoot):
        store.put_root(sid, jr.entry_seq(7, 99), b"late")
