import json
import os
import subprocess

import pytest

from chunkstore.disk.store import read_marker
from chunkstore.errors import ClusterInUse, ClusterMismatch, DiskUnavailable
from chunkstore.healing.sweep import repair
from chunkstore.ring.local import LocalRing
from chunkstore.ring.localcluster import (
    ClusterLock,
    init_disk_dir,
    init_local_cluster,
    load_config,
    unmounted_reason,
)


def test_init_layout_and_idempotence(tmp_path):
    data = tmp_path / "data"
    cfg = init_local_cluster(data, disks=6, vnodes=6)
    assert sorted(os.listdir(data / "disks")) == [f"d{i}" for i in range(6)]
    assert read_marker(data / "disks" / "d3").cluster_id == cfg.cluster_id
    assert json.loads((data / "ring.json").read_text())["format_version"] == 1
    assert load_config(data) == cfg
    ring_before = (data / "ring.json").read_bytes()
    assert init_local_cluster(data, disks=6, vnodes=6) == cfg
    assert (data / "ring.json").read_bytes() == ring_before
    with pytest.raises(ClusterMismatch):
        init_local_cluster(data, disks=5)
    with pytest.raises(ClusterMismatch):
        init_local_cluster(data, disks=6, vnodes=8)


def test_lock(tmp_path):
    lock = ClusterLock(tmp_path)
    with pytest.raises(ClusterInUse) as exc:
        ClusterLock(tmp_path)
    assert exc.value.pid == os.getpid()
    assert str(os.getpid()) in str(exc.value)
    with pytest.raises(ClusterInUse):
        init_local_cluster(tmp_path)
    lock.release()
    ClusterLock(tmp_path).release()


def test_no_cluster(tmp_path):
    from chunkstore.errors import ClusterNotFound
    from chunkstore.ring.local import LocalRing
    from chunkstore.ring.localcluster import load_ring

    with pytest.raises(ClusterNotFound):
        load_config(tmp_path)
    with pytest.raises(ClusterNotFound):
        load_ring(tmp_path)
    with pytest.raises(ClusterNotFound):
        LocalRing.open(tmp_path / "nowhere")
    assert not os.path.exists(tmp_path / "cluster.lock")


def test_a_config_without_own_fs_loads_as_not_its_own_filesystem(tmp_path):
    data = tmp_path / "data"
    cfg = init_local_cluster(data, disks=3, vnodes=4)
    doc = json.loads((data / "cluster.json").read_text())
    assert [d["own_fs"] for d in doc["disks"]] == [False] * 3  # plain directories
    for d in doc["disks"]:
        del d["own_fs"]  # as written before the field existed
    (data / "cluster.json").write_text(json.dumps(doc))
    assert load_config(data) == cfg
    assert all(not d.own_fs for d in load_config(data).disks)


@pytest.fixture
def tmpfs_disk(tmp_path):
    """DATA/disks/d0 as its own (tmpfs) filesystem; yields (data dir, mount, unmount)."""
    data = tmp_path / "data"
    mnt = data / "disks" / "d0"
    mnt.mkdir(parents=True)
    mounted = []

    def mount():
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(1)

    def unmount():
        subprocess.run(["umount", str(mnt)], check=True)
        mounted.pop()

    mount()
    yield data, mount, unmount
    while mounted:
        unmount()


def test_init_records_which_disks_are_their_own_filesystem(tmpfs_disk):
    data, _, _ = tmpfs_disk
    cfg = init_local_cluster(data, disks=3, vnodes=4)
    assert [d.own_fs for d in cfg.disks] == [True, False, False]
    assert load_config(data) == cfg
    assert init_local_cluster(data, disks=3, vnodes=4) == cfg  # idempotent, same shape


def test_an_own_filesystem_disk_that_is_not_mounted_is_never_used(tmpfs_disk):
    data, mount, unmount = tmpfs_disk
    init_local_cluster(data, disks=6, vnodes=6)
    unmount()  # the drive failed to mount at boot: its mount point is an empty directory
    assert unmounted_reason(data, load_config(data), "d0") is not None
    init_local_cluster(data, disks=6, vnodes=6)  # re-running init initialises nothing there
    assert os.listdir(data / "disks" / "d0") == []
    with pytest.raises(DiskUnavailable, match="not mounted"):
        init_disk_dir(data, "d0")
    assert os.listdir(data / "disks" / "d0") == []
    with LocalRing.open(data) as ring:
        assert "not mounted" in ring.unavailable_disks()["d0"]
        assert not ring.revive_disk("d0", init=True)
        rep = repair(ring, init_disks={"d0"})
        assert rep.disks_revived == ()
        assert len(rep.disks_refused) == 1 and "disk d0" in rep.disks_refused[0]
        assert "not mounted" in rep.disks_refused[0] and str(data / "disks" / "d0") in rep.disks_refused[0]
    assert os.listdir(data / "disks" / "d0") == []  # nothing written onto the parent filesystem
    mount()  # a new, empty drive mounted in its place
    with LocalRing.open(data) as ring:
        assert not ring.revive_disk("d0")  # empty: only when told
        assert "--init-disk d0" in ring.refused["d0"]
        rep = repair(ring, init_disks={"d0"})
        assert rep.disks_revived == ("d0",) and rep.disks_refused == ()
        assert ring.available_disks() == ring.disk_ids()
