"""Checkpoints of a volume's metadata in the chunk store, and volumes restored from them
(sofs.metacheckpoint), over an in-memory store with root records."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from chunkstore import errors as cerr
from sofs import metacheckpoint as mc
from sofs.checkpoint_records import CopyState, Manifest, RootBody, parse_ref
from sofs.errors import NoSuchEntry
from sofs.fs import Filesystem
from sofs.inode import ROOT_INO
from sofs.volume import volume_dir

from .conftest import BS, read_file, write_file


def _checkpoint_chunks(store) -> set[bytes]:
    return {k for k in store.keys() if store._chunks[k][0] in (mc.CODEC_PIECE, mc.CODEC_MANIFEST)}


def _restore_into(store, config, root, which=0):
    """Restore CONFIG's volume into a fresh data dir ROOT; the opened Filesystem."""
    vdir = volume_dir(root, config.name)
    vdir.mkdir(parents=True)
    cfg, info = mc.restore(store, config.uuid, vdir / "meta", which=which)
    assert mc.read_state(vdir) >= info.seq
    (vdir / "volume.json").write_text(cfg.to_json())
    return Filesystem.open_volume(root, config.name, store), info


def _checkpointed(env, tmp_path, vdir: str = "v"):
    """A volume with one small file and one checkpoint: (fs, store, its Checkpointer)."""
    mount, store = env
    fs = mount()
    write_file(fs, ROOT_INO, b"a", b"x")
    cp = mc.Checkpointer(fs.meta, store, fs.config, tmp_path / vdir)
    cp.write()
    return fs, store, cp


def test_checkpoint_restore_round_trip_and_incremental(env, tmp_path):
    mount, store = env
    fs = mount()
    files = {f"f{i}".encode(): os.urandom(i * 7000 + 1) for i in range(20)}
    inos = {name: write_file(fs, ROOT_INO, name, data) for name, data in files.items()}
    cp = mc.Checkpointer(fs.meta, store, fs.config, tmp_path / "work")
    first = cp.write()
    assert first.seq == 1 and first.files >= 3 and first.bytes > 0 and first.sent_bytes > 0
    assert first.kept == [first.manifest]
    second = cp.write()  # nothing changed: (almost) every piece is already stored
    assert second.seq == 2 and second.reused_pieces >= first.files - 2
    assert second.sent_bytes < first.sent_bytes
    # more files after the checkpoint are not in it
    write_file(fs, ROOT_INO, b"late", b"after the checkpoint")
    fs.close()

    restored, info = _restore_into(store, fs.config, tmp_path / "elsewhere")
    try:
        assert info.seq == 2 and info.volume == "v" and info.volume_uuid == fs.config.uuid
        for name, data in files.items():
            node = restored.lookup(ROOT_INO, name)
            assert node.ino == inos[name] and read_file(restored, node.ino) == data
        with pytest.raises(NoSuchEntry):
            restored.lookup(ROOT_INO, b"late")
    finally:
        restored.close()
    assert not any(p.name.startswith(".meta-checkpoint") for p in (tmp_path / "work").iterdir())


def test_only_kept_checkpoints_hold_chunks(env, tmp_path):
    mount, store = env
    fs = mount()
    cp = mc.Checkpointer(fs.meta, store, fs.config, tmp_path / "work", keep=2)
    infos = []
    for round_ in range(5):
        for i in range(30):
            write_file(fs, ROOT_INO, f"r{round_}-{i}".encode(), os.urandom(100))
        fs.meta.commit(fs.meta.batch(), sync=True)
        infos.append(cp.write())
    assert [i.seq for i in infos] == [1, 2, 3, 4, 5]
    assert infos[-1].kept == [infos[-1].manifest, infos[-2].manifest]
    assert sum(i.deleted_pieces for i in infos) > 0
    listed = mc.list_checkpoints(store, fs.config.uuid)
    assert [c.seq for c in listed] == [5, 4]
    # exactly the pieces of the two kept manifests (and the manifests) remain
    vid = uuid.UUID(fs.config.uuid).bytes
    wanted = set()
    for m in infos[-1].kept:
        wanted.add(parse_ref(m).key)
        wanted |= {parse_ref(h).key for h in mc._load_manifest(store, vid, m).pieces()}
    assert _checkpoint_chunks(store) == wanted
    # the older kept one restores too
    fs.close()
    restored, info = _restore_into(store, fs.config, tmp_path / "older", which=1)
    try:
        assert info.seq == 4
        restored.lookup(ROOT_INO, b"r3-0")
        with pytest.raises(NoSuchEntry):
            restored.lookup(ROOT_INO, b"r4-0")
    finally:
        restored.close()
    with pytest.raises(mc.NoCheckpoint):
        mc.restore(store, fs.config.uuid, tmp_path / "x", which=2)


def test_a_second_writer_is_refused_unless_it_takes_over(env, tmp_path):
    mount, store = env
    fs = mount()
    write_file(fs, ROOT_INO, b"a", b"x" * 10)
    here = mc.Checkpointer(fs.meta, store, fs.config, tmp_path / "here")
    assert here.write().seq == 1
    assert mc.read_state(tmp_path / "here") == 1
    # another copy of the metadata (another host) that never wrote or restored: refused
    there = mc.Checkpointer(fs.meta, store, fs.config, tmp_path / "there")
    with pytest.raises(mc.CheckpointConflict, match="another host wrote checkpoint 1"):
        there.write()
    assert "CheckpointConflict" in there.last_error
    assert there.write(take_over=True).seq == 2
    # now the first one is behind
    with pytest.raises(mc.CheckpointConflict, match="--take-over"):
        here.write()
    vid = uuid.UUID(fs.config.uuid).bytes
    assert store.get_root(vid).seq == 2
    # a copy restored from the RING continues from the current number
    vdir = tmp_path / "restored"
    vdir.mkdir()
    mc.restore(store, fs.config.uuid, vdir / "meta", which=1)
    assert mc.read_state(vdir) == 2
    assert mc.Checkpointer(fs.meta, store, fs.config, vdir).write().seq == 3

    class Racing:
        """Reads the root record as it was before another host advanced it."""

        def __init__(self, inner, stale):
            self.inner, self.stale = inner, stale

        def get_root(self, volume_id):
            return self.stale

        def __getattr__(self, name):
            return getattr(self.inner, name)

    stale = store.get_root(vid)
    mc.Checkpointer(fs.meta, store, fs.config, vdir).write()  # seq 4
    racer = mc.Checkpointer(fs.meta, Racing(store, stale), fs.config, vdir)
    mc.write_state(vdir, 3)
    with pytest.raises(mc.CheckpointConflict, match="at the same time"):
        racer.write()  # seq 4 again, other bytes: the disks refuse it
    assert store.get_root(vid).seq == 4


def test_find_volumes_and_missing_or_damaged_checkpoints(env, tmp_path):
    mount, store = env
    fs = mount()
    assert mc.find_volumes(store) == []
    with pytest.raises(mc.NoCheckpoint):
        mc.restore(store, fs.config.uuid, tmp_path / "none")
    write_file(fs, ROOT_INO, b"a", os.urandom(3 * BS))
    info = mc.Checkpointer(fs.meta, store, fs.config, tmp_path / "w").write()
    [found] = mc.find_volumes(store)
    assert (found.name, found.uuid, found.seq) == ("v", fs.config.uuid, 1)
    assert found.host and found.created == info.created
    # a lost piece: the restore fails clearly and leaves nothing behind
    manifest = mc._load_manifest(store, uuid.UUID(fs.config.uuid).bytes, info.manifest)
    store.delete(parse_ref(manifest.files[0].chunks[0]))
    dest = tmp_path / "r" / "meta"
    dest.parent.mkdir()
    with pytest.raises(cerr.ChunkNotFound):
        mc.restore(store, fs.config.uuid, dest)
    assert list(dest.parent.iterdir()) == []
    # a destination that exists is refused
    dest.mkdir()
    with pytest.raises(mc.CheckpointError, match="already exists"):
        mc.restore(store, fs.config.uuid, dest)


def test_a_root_update_whose_answer_was_lost_is_recognised_as_our_own(env, tmp_path):
    fs, store, cp = _checkpointed(env, tmp_path)
    real_put_root = store.put_root

    def stored_but_failed(volume_id, seq, body):
        real_put_root(volume_id, seq, body)  # it reached (some) disks ...
        raise cerr.NotEnoughDisks("... but the quorum answer was lost")

    store.put_root = stored_but_failed
    with pytest.raises(cerr.NotEnoughDisks):
        cp.write()
    store.put_root = real_put_root
    assert mc.read_state(tmp_path / "v") == 1  # not known to have been written
    assert cp.write().seq == 3  # seq 2 is recognised as ours: no conflict
    # and a root record damaged in transit is refused, not trusted
    vid = uuid.UUID(fs.config.uuid).bytes
    body = store.get_root(vid).body
    with pytest.raises(mc.CheckpointError, match="checksum"):
        RootBody.decode(body.replace(b'"format"', b'"formaT"'))


def test_own_lost_update_then_a_failed_one_is_still_ours(env, tmp_path):
    fs, store, cp = _checkpointed(env, tmp_path)
    real = store.put_root

    def lost_answer(volume_id, seq, body):
        real(volume_id, seq, body)
        raise cerr.NotEnoughDisks("answer lost")

    def not_stored(volume_id, seq, body):
        raise cerr.NotEnoughDisks("nothing stored")

    for fake in (lost_answer, not_stored):
        store.put_root = fake
        with pytest.raises(cerr.NotEnoughDisks):
            cp.write()
    store.put_root = real
    mc.check_current(store, fs.config, tmp_path / "v", "--take-over")  # not refused
    assert cp.write().seq == 3 and not cp.overtaken


def test_an_unreachable_root_record_never_makes_the_sequence_go_back(env, tmp_path):
    fs, store, cp = _checkpointed(env, tmp_path)
    cp.write()
    real = store.get_root
    store.get_root = lambda volume_id: None  # the disks holding it time out
    with pytest.raises(mc.CheckpointError, match="behind this copy's 2") as ei:
        cp.write()
    assert not isinstance(ei.value, mc.CheckpointConflict) and not cp.overtaken
    assert cp.write(take_over=True).seq == 3  # an admin who knows it is lost for good
    store.get_root = real
    assert store.get_root(uuid.UUID(fs.config.uuid).bytes).seq == 3
    assert cp.write().seq == 4


def test_leftovers_of_a_killed_checkpoint_are_removed_and_checkpoint_keys(env, tmp_path):
    mount, store = env
    fs = mount()
    write_file(fs, ROOT_INO, b"a", os.urandom(5000))
    vdir = tmp_path / "v"
    (vdir / ".meta-checkpoint.4242.77").mkdir(parents=True)
    (vdir / ".meta-checkpoint.4242.77" / "000009.sst").write_bytes(b"x" * 100)
    cp = mc.Checkpointer(fs.meta, store, fs.config, vdir)
    assert not list(vdir.glob(".meta-checkpoint.*"))
    cp.write()
    cp.write()
    assert mc.checkpoint_keys(store, fs.config.uuid) == _checkpoint_chunks(store)


def test_an_overtaken_copy_is_fenced_until_it_takes_over(env, tmp_path):
    from sofs.errors import VolumeFenced
    fs, store, mine = _checkpointed(env, tmp_path, "mine")
    assert mine.verify_current() is False  # nobody else
    other = mc.Checkpointer(fs.meta, store, fs.config, tmp_path / "other")
    other.write(take_over=True)
    other.meta.unfence()  # (the two share one MetaStore in this test)
    assert mine.verify_current() is True and mine.overtaken
    with pytest.raises(VolumeFenced, match="read-only"):
        write_file(fs, ROOT_INO, b"b", b"y")
    assert read_file(fs, fs.lookup(ROOT_INO, b"a").ino) == b"x"  # reads go on
    mine.write(take_over=True)
    assert not mine.overtaken
    write_file(fs, ROOT_INO, b"c", b"z")


def test_the_records_keep_the_stored_json_of_earlier_checkpoints(env):
    """Manifests, root bodies and state files are dataclasses now; what they read and write
    is the JSON the first checkpoints were written with."""
    mount, _ = env
    fs = mount()
    volume = json.loads(fs.config.to_json())
    old = {"format": 1, "seq": 4, "created": 1700000000.5, "host": "pacs1", "volume": volume,
           "files": [{"name": "000012.sst", "size": 10, "blake3": "ab" * 32,
                      "chunks": ["01" * 41]}]}
    manifest = Manifest.decode(json.dumps(old).encode())
    assert manifest.volume == fs.config and manifest.size == 10
    assert manifest.files[0].chunks == ("01" * 41,) and manifest.pieces() == {"01" * 41}
    assert json.loads(manifest.encode()) == old
    body = RootBody(fs.config.name, fs.config.uuid, ("aa", "bb"), 5.0).encode()
    doc = json.loads(body.rpartition(b"\n")[0])
    assert doc == {"format": 1, "volume": "v", "uuid": fs.config.uuid, "manifests": ["aa", "bb"],
                   "created": 5.0}
    assert RootBody.decode(body).manifests == ("aa", "bb")
    state = CopyState(3, 9.5, 4, "cc")
    assert json.loads(state.encode()) == {"seq": 3, "written": 9.5, "pending_seq": 4,
                                          "pending_manifest": "cc"}
    assert CopyState.decode(state.encode()) == state
    assert json.loads(CopyState(2, 1.0).encode()) == {"seq": 2, "written": 1.0}


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format=2), "unknown format"),
    (lambda d: d.update(seq="4"), "seq"),
    (lambda d: d["files"][0].update(size=-1), "size"),
    (lambda d: d["files"][0].update(chunks=[1]), "non-string"),
    (lambda d: d["volume"].update(block_size="big"), "block_size"),
    (lambda d: d.pop("files"), "files"),
])
def test_a_damaged_manifest_is_refused(env, edit, message):
    mount, _ = env
    fs = mount()
    doc = {"format": 1, "seq": 1, "created": 1.0, "host": "h",
           "volume": json.loads(fs.config.to_json()),
           "files": [{"name": "CURRENT", "size": 1, "blake3": "00", "chunks": []}]}
    edit(doc)
    with pytest.raises(mc.CheckpointError, match=message):
        Manifest.decode(json.dumps(doc).encode())


def test_an_unreadable_state_file_counts_as_none(tmp_path):
    for text in ("{", "[]", '{"seq": -3}', '{"seq": "2"}'):
        assert CopyState.decode(text) == CopyState()
    (tmp_path / mc.STATE_FILE).write_bytes(b"\xff\xfe")
    assert mc.read_state(tmp_path) == 0


def test_the_checkpoint_errors_live_in_sofs_errors():
    from sofs import errors
    assert mc.CheckpointConflict is errors.CheckpointConflict
    assert issubclass(mc.NoCheckpoint, errors.CheckpointError)
    assert issubclass(errors.CheckpointError, errors.FsError)
