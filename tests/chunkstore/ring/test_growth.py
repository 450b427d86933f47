"""Growing an embedded ring by one disk: the checks of chunkstore.ring.growth, the commit
order of LocalRing.add_disk, a ring file completed at open, and the rebalance that moves
exactly the pieces whose owners changed (chunkstore.healing.rebalance)."""

from __future__ import annotations

import json
import os
import threading

import pytest

from chunkstore.disk.store import DiskStore
from chunkstore.errors import MapError
from chunkstore.healing.rebalance import plan, rebalance
from chunkstore.healing.sweep import health
from chunkstore.placement.layout import CLUSTER_FILE, RING_FILE
from chunkstore.protection.policy import Protection, parse_policy
from chunkstore.ring import growth
from chunkstore.ring.local import LocalRing
from chunkstore.ring.localcluster import init_local_cluster, load_config, load_ring

PROTECTION = Protection(parse_policy("cos2"), parse_policy("ec4+2"))


@pytest.fixture
def cluster(tmp_path):
    data = tmp_path / "data"
    init_local_cluster(data, disks=6)
    return data


def _filled(data, n=12):
    ring = LocalRing.open(data)
    refs = [ring.put(os.urandom(size), PROTECTION) for _ in range(n) for size in (90_000, 900)]
    return ring, refs


def test_next_disk_id_follows_the_highest_number(cluster):
    cfg = load_config(cluster)
    assert growth.next_disk_id(cfg) == "d6"
    assert growth.next_disk_id(growth.plan_disk(cluster, cfg, load_ring(cluster), "d9").config) == "d10"


@pytest.mark.parametrize("disk_id, weight, why", [
    ("d3", 1.0, "already in the cluster"),
    ("../x", 1.0, "bad disk id"),
    (".", 1.0, "bad disk id"),
    ("d6", 0.0, "bad weight"),
    ("d6", -2.0, "bad weight"),
    ("d6", float("nan"), "bad weight"),
])
def test_plan_refuses_a_bad_id_or_weight(cluster, disk_id, weight, why):
    with pytest.raises(MapError, match=why):
        growth.plan_disk(cluster, load_config(cluster), load_ring(cluster), disk_id, weight=weight)


def test_plan_refuses_directories_that_are_not_free(cluster, tmp_path):
    cfg, ring = load_config(cluster), load_ring(cluster)
    with pytest.raises(MapError, match="already used by disk d2"):
        growth.plan_disk(cluster, cfg, ring, path=cluster / "disks" / "d2")
    with pytest.raises(MapError, match="already used by disk d2"):
        growth.plan_disk(cluster, cfg, ring, path=cluster / "disks" / "d2" / "containers")
    with pytest.raises(MapError, match="already used by disk"):
        growth.plan_disk(cluster, cfg, ring, path=cluster / "disks")  # holds the disks
    full = tmp_path / "full"
    full.mkdir()
    (full / "study.dcm").write_bytes(b"x")
    with pytest.raises(MapError, match="not empty and is not a sofs disk"):
        growth.plan_disk(cluster, cfg, ring, path=full)
    other = tmp_path / "other"
    init_local_cluster(other, disks=1)
    with pytest.raises(MapError, match="of another cluster"):
        growth.plan_disk(cluster, cfg, ring, "d6", path=other / "disks" / "d0")
    mine = tmp_path / "mine"
    DiskStore.initialise(mine, cfg.cluster_id, "d8")
    with pytest.raises(MapError, match="already initialised as disk d8"):
        growth.plan_disk(cluster, cfg, ring, "d6", path=mine)
    with pytest.raises(MapError, match="no directory"):
        growth.plan_disk(cluster, cfg, ring, path=tmp_path / "nowhere" / "d6")
    assert not (cluster / "disks" / "d6").exists()  # planning writes nothing


def test_plan_accepts_the_directory_an_interrupted_add_initialised(cluster):
    cfg = load_config(cluster)
    DiskStore.initialise(cluster / "disks" / "d6", cfg.cluster_id, "d6")
    p = growth.plan_disk(cluster, cfg, load_ring(cluster))
    assert p.resumed and p.disk.id == "d6"


def test_grown_ring_keeps_the_tokens_of_the_other_disks(cluster):
    old = load_ring(cluster)
    p = growth.plan_disk(cluster, load_config(cluster), old)
    assert p.ring.epoch == old.epoch + 1
    def tokens(r, disk):
        i = [d.id for d in r.devices].index(disk)
        return sorted(t for t, j in r.vnode2dev if j == i)
    for d in old.devices:
        assert tokens(p.ring, d.id) == tokens(old, d.id)
    assert len(tokens(p.ring, "d6")) == old.vnodes_per_disk


def test_add_disk_commits_cluster_then_ring_and_uses_the_disk(cluster):
    ring = LocalRing.open(cluster)
    try:
        added = ring.add_disk(weight=2.0)
        assert added.disk.id == "d6" and added.disk.path == os.path.join("disks", "d6")
        assert not added.disk.own_fs  # a directory of the data directory's filesystem
        assert "d6" in ring.disk_ids() and "d6" in ring.available_disks()
        assert "d6" in ring.ring.device_ids and ring.ring.device("d6").weight == 2.0
        cfg = json.loads((cluster / CLUSTER_FILE).read_text())
        assert [d["id"] for d in cfg["disks"]][-1] == "d6" and cfg["disks"][-1]["weight"] == 2.0
        assert "d6" in [d.id for d in load_ring(cluster).devices]
        with pytest.raises(MapError, match="already in the cluster"):
            ring.add_disk("d6")
        ref = ring.put(os.urandom(200_000), PROTECTION)  # placed by the grown ring
        assert ring.get(ref)
    finally:
        ring.close()


def test_a_failed_initialisation_commits_nothing(cluster, monkeypatch):
    before = (cluster / CLUSTER_FILE).read_bytes(), (cluster / RING_FILE).read_bytes()

    def boom(*a, **kw):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(growth.DiskStore, "initialise", boom)
    ring = LocalRing.open(cluster)
    try:
        with pytest.raises(OSError):
            ring.add_disk()
        assert "d6" not in ring.disk_ids()
    finally:
        ring.close()
    assert ((cluster / CLUSTER_FILE).read_bytes(), (cluster / RING_FILE).read_bytes()) == before


def test_a_ring_file_without_the_committed_disk_is_completed_at_open(cluster):
    old_ring = (cluster / RING_FILE).read_bytes()
    ring = LocalRing.open(cluster)
    try:
        added = ring.add_disk()
    finally:
        ring.close()
    (cluster / RING_FILE).write_bytes(old_ring)  # as if stopped right after cluster.json
    ring = LocalRing.open(cluster)
    try:
        assert ring.completed == ["d6"]
        assert ring.ring.data == added.ring  # the very ring the add would have written
    finally:
        ring.close()
    assert load_ring(cluster) == added.ring
    ring = LocalRing.open(cluster)
    try:
        assert ring.completed == []
    finally:
        ring.close()


def test_rebalance_moves_the_pieces_to_their_owners(cluster):
    ring, refs = _filled(cluster)
    try:
        assert plan(ring).pieces_to_move == 0
        ring.add_disk()
        p = plan(ring)
        assert 0 < p.pieces_to_move and p.chunks_to_move <= p.chunks == len(refs)
        h = health(ring)
        assert h.degraded == p.chunks_to_move  # a moved owner lacks its piece until the move
        seen: list[tuple[int, int]] = []
        r = rebalance(ring, lambda done, total: seen.append((done, total)))
        assert r.complete and r.pieces_moved == p.pieces_to_move == r.pieces_removed
        assert r.bytes_moved == p.bytes_to_move and r.traffic == p.traffic
        assert seen[-1][0] == seen[-1][1] == r.traffic  # ends at 100%
        assert all(done <= total for done, total in seen)
        h = health(ring)
        assert h.protected == len(refs) and h.degraded == 0
        assert plan(ring).pieces_to_move == 0
        assert ring.call("d6", lambda ds: sum(1 for _ in ds.pieces())) > 0
        for ref in refs:
            assert ring.get(ref)
    finally:
        ring.close()
    counts: dict[bytes, int] = {}
    for d in load_config(cluster).disks:  # every piece on its owner, and no extra one
        store = DiskStore(cluster / d.path)
        try:
            for piece in store.pieces():
                counts[piece.key] = counts.get(piece.key, 0) + 1
        finally:
            store.close()
    assert sorted(counts) == sorted(r.key for r in refs)
    assert all(counts[r.key] == r.policy.policy().width for r in refs)


def test_a_cancelled_rebalance_leaves_every_chunk_readable_and_the_next_one_finishes(cluster):
    ring, refs = _filled(cluster)
    try:
        ring.add_disk()
        stop = threading.Event()
        r = rebalance(ring, chunks=lambda done, total: stop.set(), cancel=stop)
        assert r.cancelled and not r.complete
        for ref in refs:
            assert ring.get(ref)
        assert health(ring).unrecoverable == 0
        again = rebalance(ring)
        assert again.complete and plan(ring).pieces_to_move == 0
        assert r.pieces_moved + again.pieces_moved == r.plan.pieces_to_move
    finally:
        ring.close()
