"""Volume root records: the record codec, one disk (DiskStore), the RING (LocalRing; NetRing
over real sofs-node processes) and MemoryChunkStore parity."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from chunkstore.disk import container as ctr
from chunkstore.disk.store import DiskStore
from chunkstore.errors import (
    ChunkCorrupt,
    DiskFull,
    FormatError,
    KeyConflict,
    NotEnoughDisks,
    StaleMap,
    StaleRoot,
)
from chunkstore.healing.sweep import health, repair
from chunkstore.net.client import RemoteDisk
from chunkstore.net.wire import load_secret
from chunkstore.placement.keys import chunk_key
from chunkstore.protection.policy import REPLICA_INDEX, ReplicationPolicy
from chunkstore.ring.local import LocalRing
from chunkstore.ring.localcluster import init_local_cluster
from chunkstore.ring.memory import MemoryChunkStore
from chunkstore.roots import (
    MAX_SEQ,
    ROOT_MAX_BODY,
    RootRecord,
    is_log_record,
    newest,
    record_width,
    root_key,
)
from tests.chunkstore.disk.test_store import small_fs  # noqa: F401  (fixture: a 4 MiB tmpfs)
from tests.chunkstore.ring.test_net import cluster, open_client  # noqa: F401  (fixture: sofs-node processes)

V1 = uuid.UUID(int=1, version=4).bytes  # volume ids are UUID4s (others may be log records)
V2 = uuid.UUID(int=2, version=4).bytes


def _disk(path) -> DiskStore:
    DiskStore.initialise(path, "cluster-a", "d0")
    return DiskStore(path)


def _root_file(disk_dir, volume_id: bytes):
    return disk_dir / "roots" / volume_id.hex()


def _holders(ring, volume_id: bytes) -> dict[str, int]:
    """disk -> seq of the volume's record, over every available disk holding one."""
    out = {}
    for d in ring.available_disks():
        rec = ring.disk(d).get_root(volume_id)
        if rec is not None:
            out[d] = rec.seq
    return out


# -- the record -----------------------------------------------------------------------------


def test_root_key():
    k = root_key(V1)
    assert len(k) == 20 and k == root_key(bytearray(V1)) and k != root_key(V2)
    for bad in (b"", V1[:15], V1 + b"x", "0" * 16, None):
        with pytest.raises(FormatError):
            root_key(bad)


def test_record_round_trip_and_validation():
    for rec in (RootRecord(V1, 1, b""), RootRecord(V1, MAX_SEQ, b"x" * ROOT_MAX_BODY)):
        raw = rec.encode()
        assert RootRecord.decode(raw) == rec
        assert raw[:8] == b"SOFSROOT" and raw[8] == 1
    for vid, seq, body in [(V1[:15], 1, b""), (V1, 0, b""), (V1, MAX_SEQ + 1, b""), (V1, True, b""),
                           (V1, 1.0, b""), (V1, 1, b"x" * (ROOT_MAX_BODY + 1)), (V1, 1, "text")]:
        with pytest.raises(FormatError):
            RootRecord(vid, seq, body)


def test_record_corruption_is_detected():
    raw = RootRecord(V1, 7, b"manifest-x").encode()
    for i in range(len(raw)):  # any single flipped byte
        bad = bytearray(raw)
        bad[i] ^= 0x40
        with pytest.raises(ChunkCorrupt):
            RootRecord.decode(bytes(bad))
    for bad in (raw[:-1], raw + b"\0", b"", raw[:20]):
        with pytest.raises(ChunkCorrupt):
            RootRecord.decode(bad)


def test_newest_prefers_the_highest_seq_then_the_majority_body():
    a, b = RootRecord(V1, 3, b"a"), RootRecord(V1, 3, b"b")
    assert newest([]) is None
    assert newest([RootRecord(V1, 2, b"z"), a, b, b]) == b
    assert newest([a, b]) == a


# -- one disk -------------------------------------------------------------------------------


def test_disk_put_get_rules(tmp_path):
    ds = _disk(tmp_path / "d0")
    assert ds.get_root(V1) is None and ds.list_roots() == []
    assert ds.put_root(V1, 5, b"five") == 5
    assert ds.put_root(V1, 5, b"five") == 5  # idempotent
    with pytest.raises(KeyConflict):
        ds.put_root(V1, 5, b"other")
    assert ds.put_root(V1, 3, b"three") == 5  # lower: nothing stored, the caller sees 5
    assert ds.get_root(V1) == RootRecord(V1, 5, b"five")
    assert ds.put_root(V1, 6, b"six") == 6
    assert ds.put_root(V2, 1, b"") == 1
    with pytest.raises(FormatError):
        ds.put_root(V1[:8], 1, b"")
    with pytest.raises(FormatError):
        ds.get_root(b"short")
    assert ds.list_roots() == sorted([(V1, 6), (V2, 1)])
    assert not [n for n in os.listdir(tmp_path / "d0" / "roots") if n.endswith(".tmp")]
    ds.close()
    (tmp_path / "d0" / "roots" / "stray.tmp").write_bytes(b"left by a crash")
    ds = DiskStore(tmp_path / "d0")  # persisted across reopen; the stale temp file is gone
    assert ds.get_root(V1) == RootRecord(V1, 6, b"six")
    assert ds.list_roots() == sorted([(V1, 6), (V2, 1)])
    assert not (tmp_path / "d0" / "roots" / "stray.tmp").exists()
    ds.close()


def test_disk_corrupt_record(tmp_path):
    ds = _disk(tmp_path / "d0")
    ds.put_root(V1, 4, b"four")
    ds.put_root(V2, 2, b"two")
    ctr.flip_byte(_root_file(tmp_path / "d0", V1), 30)
    with pytest.raises(ChunkCorrupt):
        ds.get_root(V1)
    assert ds.list_roots() == [(V2, 2)]  # the unreadable one is left out
    # a record under another volume's name is not that volume's
    shutil.copy(_root_file(tmp_path / "d0", V2), _root_file(tmp_path / "d0", V1))
    with pytest.raises(ChunkCorrupt):
        ds.get_root(V1)
    assert ds.put_root(V1, 1, b"new") == 1  # an unreadable record is replaced
    assert ds.get_root(V1) == RootRecord(V1, 1, b"new")
    ds.close()


def test_log_records_are_written_in_place(tmp_path):
    log_id = bytes(16)  # version nibble and variant bits zero: a journal slot, not a volume
    assert is_log_record(log_id) and not is_log_record(V1)
    ds = _disk(tmp_path / "d0")
    assert ds.put_root(log_id, 1 << 32 | 1, b"entry one, long enough") == 1 << 32 | 1
    path = _root_file(tmp_path / "d0", log_id)
    inode = os.stat(path).st_ino
    assert ds.put_root(log_id, 1 << 32 | 2, b"two") == 1 << 32 | 2
    assert os.stat(path).st_ino == inode  # rewritten in place, cut to the new length
    assert ds.get_root(log_id) == RootRecord(log_id, 1 << 32 | 2, b"two")
    assert os.path.getsize(path) == len(RootRecord(log_id, 1 << 32 | 2, b"two").encode())
    with open(path, "r+b") as f:  # a write torn by a crash: half new bytes over the old
        f.write(RootRecord(log_id, 1 << 32 | 3, b"three!").encode()[:40])
    with pytest.raises(ChunkCorrupt):
        ds.get_root(log_id)
    assert (log_id, 1 << 32 | 2) not in ds.list_roots()
    assert ds.put_root(log_id, 1 << 32 | 3, b"three") == 1 << 32 | 3  # replaced
    assert ds.get_root(log_id) == RootRecord(log_id, 1 << 32 | 3, b"three")
    ds.close()


def test_the_roots_directory_trips_nothing_else(tmp_path):
    """Containers, compaction, recovery, stats, checks and re-initialisation ignore roots/."""
    path = tmp_path / "d0"
    DiskStore.initialise(path, "cluster-a", "d0")
    ds = DiskStore(path, container_size=4096)
    ds.put_root(V1, 1, b"r")
    keys = []
    for _ in range(12):
        payload = os.urandom(1500)
        key = chunk_key(payload)
        ds.put(key, REPLICA_INDEX, ReplicationPolicy(3).code, len(payload), payload)
        keys.append(key)
    before = ds.stats()
    for key in keys[:8]:
        ds.delete(key, REPLICA_INDEX)
    assert ds.compact(0.0).containers_removed > 0
    ds.check_alive()
    ds.close()
    assert DiskStore.initialise(path, "cluster-a", "d0")  # idempotent with roots/ present
    ds = DiskStore(path, container_size=4096)
    assert ds.stats().containers <= before.containers and ds.stats().live_pieces == 4
    assert ds.get_root(V1) == RootRecord(V1, 1, b"r")
    for key in keys[8:]:
        assert len(ds.get(key, REPLICA_INDEX)) == 1500
    ds.close()


def test_disk_full(small_fs):  # noqa: F811
    ds = _disk(small_fs / "d0")
    assert ds.put_root(V1, 1, b"one") == 1
    filler = small_fs / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(os.urandom(64 * 1024))
                f.flush()
        except OSError:
            pass
    with pytest.raises(DiskFull):
        ds.put_root(V1, 2, b"x" * ROOT_MAX_BODY)
    assert ds.get_root(V1) == RootRecord(V1, 1, b"one")  # the old record is intact
    assert sorted(os.listdir(small_fs / "d0" / "roots")) == [V1.hex()]  # no temp file left
    filler.unlink()
    assert ds.put_root(V1, 2, b"x" * ROOT_MAX_BODY) == 2
    ds.close()


# -- the RING (LocalRing) and MemoryChunkStore: the same rules ----------------------------------


@pytest.fixture(params=["local", "memory"])
def store(request, cluster_dir):
    s = LocalRing.open(cluster_dir) if request.param == "local" else MemoryChunkStore()
    try:
        yield s
    finally:
        s.close()


def test_store_rules(store):
    assert store.get_root(V1) is None and store.list_roots() == {}
    n = store.put_root(V1, 1, b"one")
    assert n == (5 if isinstance(store, LocalRing) else 1)
    assert store.put_root(V1, 1, b"one") == n  # idempotent retry
    with pytest.raises(KeyConflict):
        store.put_root(V1, 1, b"another body")
    assert store.put_root(V1, 2, b"two") == n
    with pytest.raises(StaleRoot):
        store.put_root(V1, 1, b"one")
    store.put_root(V2, 9, b"")
    assert store.get_root(V1) == RootRecord(V1, 2, b"two")
    assert store.list_roots() == {V1: 2, V2: 9}
    with pytest.raises(FormatError):
        store.put_root(V1, 0, b"")
    with pytest.raises(FormatError):
        store.get_root(V1[:4])


def test_ring_writes_the_owners_and_hands_off(cluster_dir):
    with LocalRing.open(cluster_dir) as ring:
        owners = ring.ring.owners(root_key(V1), 5)
        spare = next(d for d in ring.disk_ids() if d not in owners)
        shutil.rmtree(cluster_dir / "disks" / owners[0])
        assert ring.put_root(V1, 3, b"three") == 5
        assert owners[0] in ring.unavailable_disks()
        assert _holders(ring, V1) == {d: 3 for d in owners[1:] + [spare]}
        shutil.rmtree(cluster_dir / "disks" / owners[1])  # lost after the write: still found
        assert ring.get_root(V1) == RootRecord(V1, 3, b"three")
        assert ring.list_roots() == {V1: 3}


def test_ring_raises_stale_root_after_every_write(cluster_dir):
    with LocalRing.open(cluster_dir) as ring:
        owners = ring.ring.owners(root_key(V1), 5)
        ring.disk(owners[2]).put_root(V1, 8, b"eight")  # another writer got this far
        with pytest.raises(StaleRoot, match="8"):
            ring.put_root(V1, 7, b"seven")
        assert _holders(ring, V1) == {**{d: 7 for d in owners}, owners[2]: 8}
        assert ring.get_root(V1) == RootRecord(V1, 8, b"eight")


def test_ring_skips_corrupt_records(cluster_dir):
    with LocalRing.open(cluster_dir) as ring:
        ring.put_root(V1, 2, b"two")
        owners = ring.ring.owners(root_key(V1), 5)
        ring.disk(owners[0]).put_root(V1, 3, b"three")  # the newest, then damaged
        ctr.flip_byte(_root_file(cluster_dir / "disks" / owners[0], V1), 40)
        assert ring.get_root(V1) == RootRecord(V1, 2, b"two")
        assert ring.list_roots() == {V1: 2}
        for d in owners[1:]:
            ctr.flip_byte(_root_file(cluster_dir / "disks" / d, V1), 40)
        with pytest.raises(ChunkCorrupt):
            ring.get_root(V1)
        assert ring.put_root(V1, 4, b"four") == 5  # a new record replaces the damaged ones
        assert ring.get_root(V1) == RootRecord(V1, 4, b"four")


def test_ring_not_enough_disks(cluster_dir):
    for d in ("d0", "d1", "d2", "d3"):
        shutil.rmtree(cluster_dir / "disks" / d)
    with LocalRing.open(cluster_dir) as ring:
        with pytest.raises(NotEnoughDisks, match="quorum 3"):
            ring.put_root(V1, 1, b"one")
        assert ring.get_root(V1) == RootRecord(V1, 1, b"one")  # below quorum, yet visible
        for d in ("d4", "d5"):
            shutil.rmtree(cluster_dir / "disks" / d)
        with pytest.raises(NotEnoughDisks):
            ring.get_root(V1)
        with pytest.raises(NotEnoughDisks):
            ring.list_roots()


def test_a_log_record_id_names_its_width(cluster_dir):
    narrow = bytes(6) + b"\x02" + bytes(9)  # a journal slot written to 2 disks
    assert is_log_record(narrow) and record_width(narrow, 6) == 2
    assert record_width(V1, 6) == 5 and record_width(bytes(16), 3) == 3
    with LocalRing.open(cluster_dir) as ring:
        assert ring.put_root(narrow, 1 << 32 | 1, b"entry") == 2
        assert len([d for d, s in _holders(ring, narrow).items() if s]) == 2
        assert ring.get_root_certain(narrow) == RootRecord(narrow, 1 << 32 | 1, b"entry")


def test_certain_reads_need_more_than_a_write_quorum_answering(cluster_dir):
    log_id = bytes(16)
    with LocalRing.open(cluster_dir) as ring:
        assert ring.get_root_certain(log_id) is None  # every disk answered: surely absent
        ring.put_root(V1, 1, b"one")
    for d in ("d0", "d1"):  # 2 of 6 disks away: any majority of 5 still meets one answering
        shutil.rmtree(cluster_dir / "disks" / d)
    with LocalRing.open(cluster_dir) as ring:
        assert ring.get_root_certain(log_id) is None
        assert ring.get_root_certain(V1) == RootRecord(V1, 1, b"one")
    shutil.rmtree(cluster_dir / "disks" / "d2")  # 3 away: a record on those 3 could be missed
    with LocalRing.open(cluster_dir) as ring:
        with pytest.raises(NotEnoughDisks, match="cannot be told"):
            ring.get_root_certain(log_id)
        assert ring.get_root(log_id) is None  # the plain read still says "none"


def test_small_ring_width(tmp_path):
    data = tmp_path / "data"
    init_local_cluster(data, disks=3, vnodes=6)
    shutil.rmtree(data / "disks" / "d1")
    with LocalRing.open(data) as ring:
        assert ring.put_root(V1, 1, b"one") == 2  # width 3, quorum 2
        shutil.rmtree(data / "disks" / "d2")
        with pytest.raises(NotEnoughDisks, match="1 of 3 disks"):
            ring.put_root(V1, 2, b"two")


def test_repair_and_health_leave_roots_alone(cluster_dir, protection):
    with LocalRing.open(cluster_dir) as ring:
        ring.put_root(V1, 1, b"one")
        refs = [ring.put(os.urandom(n), protection) for n in (100, 300_000)]
        report = repair(ring)
        assert report.unrecoverable == () and not report.errors and report.pieces_removed == 0
        assert report.roots_refreshed == 1
        assert health(ring).protected == len(refs)
        assert len(_holders(ring, V1)) == 5


def test_repair_puts_root_records_back_on_their_owners(cluster_dir):
    # a volume that is not mounted never rewrites its record: replaced disks would lose it
    with LocalRing.open(cluster_dir) as ring:
        ring.put_root(V1, 3, b"three")
        holders = sorted(_holders(ring, V1))
        for d in holders[:-1]:  # every copy but one lost (disks replaced over the years)
            _root_file(Path(ring.disk(d).path), V1).unlink()
        assert len(_holders(ring, V1)) == 1
        report = repair(ring)
        assert report.roots_refreshed == 1 and not report.errors
        assert _holders(ring, V1) == {d: 3 for d in holders}
        assert ring.get_root(V1).body == b"three"


# -- over real sofs-node processes ----------------------------------------------------------


@pytest.mark.integration
def test_net_roots(cluster):  # noqa: F811  (the fixture imported from test_net)
    """Two clients (mounts) of one cluster of 6 nodes x 2 disks."""
    a = open_client(cluster, instance="a")
    b = open_client(cluster, instance="b")
    try:
        assert a.put_root(V1, 1, b"from a") == 5
        assert a.put_root(V2, 4, b"v2") == 5
        assert b.get_root(V1) == RootRecord(V1, 1, b"from a")
        assert b.put_root(V1, 2, b"from b") == 5
        with pytest.raises(StaleRoot):  # a is behind: another writer advanced the volume
            a.put_root(V1, 1, b"from a, again")
        with pytest.raises(KeyConflict):
            a.put_root(V1, 2, b"a's idea of 2")
        assert a.list_roots() == {V1: 2, V2: 4}

        # the nodes of two owners killed: the record is still read, and written by quorum
        owners = a.ring.owners(root_key(V1), 5)
        for d in owners[:2]:
            cluster.nodes[a.cmap.node_of(d).id].kill()
        assert a.get_root(V1) == RootRecord(V1, 2, b"from b")
        assert a.put_root(V1, 3, b"three") == 5  # handed off to the next disks of the walk
        assert b.get_root(V1) == RootRecord(V1, 3, b"three")
        assert b.list_roots() == {V1: 3, V2: 4}

        # one disk: the wire ops directly, errors mapped, the node's epoch rule applies
        secret = load_secret(cluster.admin / "cluster.secret")
        node = next(n for n in cluster.nodes.values() if n.alive())
        disk_id = f"{node.id}.d0"
        disk_dir = node.dir / "disks" / disk_id
        with RemoteDisk("127.0.0.1", node.port, disk_id, secret, 5, epoch=a.cmap.epoch) as rd:
            held = rd.put_root(V2, 1, b"old")  # 4 if this disk is an owner of V2's record
            assert held in (1, 4) and rd.get_root(V2).seq == held
            assert rd.put_root(V2, 99, b"x" * ROOT_MAX_BODY) == 99
            assert rd.get_root(V2) == RootRecord(V2, 99, b"x" * ROOT_MAX_BODY)
            with pytest.raises(KeyConflict):
                rd.put_root(V2, 99, b"y")
            with pytest.raises(FormatError):
                rd.put_root(V2, 100, b"x" * (ROOT_MAX_BODY + 1))
            assert dict(rd.list_roots())[V2] == 99
            ctr.flip_byte(_root_file(disk_dir, V2), 12)
            with pytest.raises(ChunkCorrupt):
                rd.get_root(V2)
        assert a.get_root(V2) == RootRecord(V2, 4, b"v2")  # the damaged record is skipped
        with RemoteDisk("127.0.0.1", node.port, disk_id, secret, 5) as stale:
            with pytest.raises(StaleMap):
                stale.get_root(V1)
    finally:
        a.close()
        b.close()
