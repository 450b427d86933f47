import json
import os

import pytest

from chunkstore.disk.store import read_marker
from chunkstore.errors import ClusterInUse, ClusterMismatch
from chunkstore.ring.localcluster import ClusterLock, init_local_cluster, load_config


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
