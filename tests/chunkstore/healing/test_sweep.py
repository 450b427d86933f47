import collections
import errno
import os
import shutil

import pytest

from chunkstore.disk import container as ctr
from chunkstore.errors import DiskUnavailable, StaleMap
from chunkstore.healing.sweep import health, repair
from chunkstore.protection.policy import REPLICA_INDEX
from chunkstore.ring.local import LocalRing
from tests.chunkstore.ring.fakes import DiskRing

SIZES = [0, 1, 1000, 60 * 1024 - 1, 60 * 1024 + 1, 300_000, 4 * 1024 * 1024]


def _expected_counts(ring, refs):
    want = collections.Counter()
    for ref in refs:
        pol = ref.policy.policy()
        for d in ring.ring.owners(ref.key, pol.width):
            want[d] += 1
    return want


def _actual_counts(ring):
    return collections.Counter({d: ring.disk(d).stats().live_pieces for d in ring.available_disks()})


def test_repair_refuses_to_recreate_a_missing_disk_unless_told(cluster_dir, protection):
    """F31: a vanished disk directory may be a drive that failed to mount; rebuilding into a
    re-created directory would fill the parent filesystem."""
    payloads = [os.urandom(n) for n in SIZES]
    with LocalRing.open(cluster_dir) as ring:
        refs = [ring.put(p, protection) for p in payloads]
    shutil.rmtree(cluster_dir / "disks" / "d5")
    shutil.rmtree(cluster_dir / "disks" / "d0")
    (cluster_dir / "disks" / "d0").mkdir()  # an empty mount point: the drive did not mount
    with LocalRing.open(cluster_dir) as ring:
        rep = repair(ring)
        assert rep.disks_revived == ()
        assert len(rep.disks_refused) == 2
        for disk_id, msg in zip(("d0", "d5"), rep.disks_refused, strict=True):
            assert f"disk {disk_id}" in msg and str(cluster_dir / "disks" / disk_id) in msg
            assert f"--init-disk {disk_id}" in msg
        assert sorted(ring.unavailable_disks()) == ["d0", "d5"]  # out of the read/write set
        assert rep.unrecoverable == ()
        assert not (cluster_dir / "disks" / "d5").exists()
        assert os.listdir(cluster_dir / "disks" / "d0") == []
        for ref, p in zip(refs, payloads, strict=True):  # reads degrade
            assert ring.get(ref) == p
        h = health(ring)
        assert h.degraded > 0 and h.disks_unavailable == ("d0", "d5")


def test_repair_refuses_an_unknown_init_disk(cluster_dir):
    with LocalRing.open(cluster_dir) as ring:
        with pytest.raises(ValueError, match="unknown disk d9"):
            repair(ring, init_disks={"d9"})


def test_repair_recreates_missing_disks_when_told(cluster_dir, protection):
    payloads = [os.urandom(n) for n in SIZES]
    with LocalRing.open(cluster_dir) as ring:
        refs = [ring.put(p, protection) for p in payloads]
        want = _expected_counts(ring, refs)
    shutil.rmtree(cluster_dir / "disks" / "d0")
    shutil.rmtree(cluster_dir / "disks" / "d5")
    with LocalRing.open(cluster_dir) as ring:
        h = health(ring)
        assert h.degraded > 0 and h.unrecoverable == 0 and h.disks_unavailable == ("d0", "d5")
        seen = []
        rep = repair(ring, progress=lambda done, total: seen.append((done, total)), init_disks={"d0", "d5"})
        assert rep.disks_revived == ("d0", "d5")
        assert rep.unrecoverable == () and rep.errors == ()
        assert rep.pieces_rebuilt == want["d0"] + want["d5"]
        assert rep.bytes_rebuilt > 0
        assert seen[-1] == (rep.chunks_checked, rep.chunks_checked) == (len(SIZES), len(SIZES))
        assert _actual_counts(ring) == want
        h = health(ring, verify=True)
        assert (h.protected, h.degraded, h.unrecoverable) == (len(SIZES), 0, 0)
        assert len(ring.repair_log) == 0
        # a second sweep finds nothing to do
        rep2 = repair(ring)
        assert rep2.pieces_rebuilt == rep2.pieces_removed == 0
    shutil.rmtree(cluster_dir / "disks" / "d1")
    shutil.rmtree(cluster_dir / "disks" / "d2")
    with LocalRing.open(cluster_dir) as ring:
        for ref, p in zip(refs, payloads, strict=True):
            assert ring.get(ref) == p


def test_repair_fixes_flipped_fragment(cluster_dir, protection):
    p = os.urandom(500_000)
    small = b"small chunk"
    with LocalRing.open(cluster_dir) as ring:
        ref = ring.put(p, protection)
        sref = ring.put(small, protection)
        owners = ring.ring.owners(ref.key, 6)
        victim = owners[1]
        info = ring.disk(victim).piece(ref.key, 1)
        path = cluster_dir / "disks" / victim / "containers" / ctr.container_name(info.container)
        ctr.flip_byte(path, ctr.data_offset(info.offset) + 100)
        sowner = ring.ring.owners(sref.key, 3)[0]
        sinfo = ring.disk(sowner).piece(sref.key, REPLICA_INDEX)
        ctr.flip_byte(cluster_dir / "disks" / sowner / "containers" / ctr.container_name(sinfo.container),
                      ctr.header_offset(sinfo.offset, ctr.OFF_KEY))
        assert health(ring, verify=True).degraded == 2
        rep = repair(ring)
        assert rep.pieces_rebuilt == 2 and rep.unrecoverable == ()
        assert ring.disk(victim).get(ref.key, 1)
        assert ring.disk(sowner).get(sref.key, REPLICA_INDEX) == small
        assert health(ring, verify=True).protected == 2
        assert ring.get(ref) == p


def test_repair_removes_misplaced_and_deleted(cluster_dir, protection):
    with LocalRing.open(cluster_dir) as ring:
        ref = ring.put(b"misplaced", protection)
        owners = ring.ring.owners(ref.key, 3)
        stranger = next(d for d in ring.available_disks() if d not in owners)
        ring.disk(stranger).put(ref.key, REPLICA_INDEX, ref.policy, ref.size, b"misplaced")
        gone = ring.put(b"deleted while a disk was away", protection)
        gone_owner = ring.ring.owners(gone.key, 3)[0]
    os.rename(cluster_dir / "disks" / gone_owner, cluster_dir / "away")
    with LocalRing.open(cluster_dir) as ring:
        ring.delete(gone)
    os.rename(cluster_dir / "away", cluster_dir / "disks" / gone_owner)
    with LocalRing.open(cluster_dir) as ring:
        rep = repair(ring)
        assert rep.pieces_removed == 2
        assert not ring.disk(stranger).has(ref.key, REPLICA_INDEX)
        assert not ring.disk(gone_owner).has(gone.key, REPLICA_INDEX)
        assert ring.get(ref) == b"misplaced"
        assert health(ring).chunks == 1


def test_repair_refuses_unmarked_nonempty_dir(cluster_dir, protection):
    with LocalRing.open(cluster_dir) as ring:
        ring.put(b"x", protection)
    shutil.rmtree(cluster_dir / "disks" / "d3")
    (cluster_dir / "disks" / "d3").mkdir()
    (cluster_dir / "disks" / "d3" / "lost+found").mkdir()
    with LocalRing.open(cluster_dir) as ring:
        rep = repair(ring)
        assert "d3" not in rep.disks_revived
        assert "d3" in ring.unavailable_disks()
        assert not os.path.exists(cluster_dir / "disks" / "d3" / "DISK")


def test_unrecoverable_reported(cluster_dir, protection):
    p = os.urandom(100_000)
    with LocalRing.open(cluster_dir) as ring:
        ref = ring.put(p, protection)
        owners = ring.ring.owners(ref.key, 6)
        for d in owners[:3]:
            ring.disk(d).delete(ref.key, owners.index(d))
        assert health(ring).unrecoverable == 1
        rep = repair(ring)
        assert rep.unrecoverable == (ref.key,)
        assert rep.chunks_unrecoverable == 1


# -- the sweep's disk calls go through the ring client's call path ---------------------------


def test_a_stale_map_during_a_sweep_refreshes_the_map_and_the_call_is_retried(cluster_dir, protection):
    data = os.urandom(300_000)
    with DiskRing(cluster_dir) as ring:
        ref = ring.put(data, protection)
        owners = ring.ring.owners(ref.key, 6)
        ring.backends[owners[1]].inner.delete(ref.key, 1)  # a fragment to rebuild
        ring.backends[owners[0]].fail_next("pieces", StaleMap("node n1 has map epoch 8"))
        ring.backends[owners[2]].fail_next("get", StaleMap("node n3 has map epoch 8"))
        ring.backends[owners[1]].fail_next("put", StaleMap("node n2 has map epoch 8"))
        rep = repair(ring)
        assert rep.errors == () and rep.pieces_rebuilt == 1
        assert ring.map_refreshes == 3  # once per stale answer, each call then made again
        assert ring.unavailable_disks() == {}
        assert health(ring, verify=True).protected == 1
        assert ring.get(ref) == data


def test_a_disk_failing_during_a_sweep_is_marked_down_for_the_data_path(cluster_dir, protection):
    data = os.urandom(300_000)
    with DiskRing(cluster_dir) as ring:
        ref = ring.put(data, protection)
        owners = ring.ring.owners(ref.key, 6)
        unplugged, failing = owners[2], owners[4]
        ring.backends[unplugged].inner.delete(ref.key, 2)
        ring.backends[unplugged].fail_next("put", DiskUnavailable("disk unplugged"))  # the rebuild
        ring.backends[failing].fail_next("get", OSError(errno.EIO, "Input/output error"))
        rep = repair(ring)
        assert rep.errors == () and rep.unrecoverable == ()
        assert set(ring.unavailable_disks()) == {unplugged, failing}
        assert set(ring.available_disks()) == set(ring.disk_ids()) - {unplugged, failing}
        assert ring.repair_log.get(ref.key) is not None  # still degraded: the next sweep goes on
        assert ring.get(ref) == data  # reads go around both disks
        assert ring.backends[failing].calls["get"] == 1  # not asked again after it failed
