"""How the data path calls its disks: through one typed DiskBackend interface and one call
path (RingStore.call) that retries a StaleMap once after refreshing the map and marks a
failing disk down."""

import errno
import os

import pytest

from chunkstore.api import DiskBackend
from chunkstore.disk.store import DiskStore
from chunkstore.errors import ChunkNotFound, DiskUnavailable, StaleMap
from chunkstore.net.client import RemoteDisk
from chunkstore.protection.policy import REPLICA_INDEX
from chunkstore.ring.local import LocalRing
from tests.chunkstore.ring.fakes import DiskRing, FaultyDisk


def test_disk_stores_and_remote_disks_are_disk_backends(tmp_path):
    DiskStore.initialise(tmp_path / "d0", "c", "d0")
    with DiskStore(tmp_path / "d0", cluster_id="c", disk_id="d0") as ds:
        assert isinstance(ds, DiskBackend)
        assert isinstance(FaultyDisk(ds), DiskBackend)
    with RemoteDisk("127.0.0.1", 9, "d0", b"secret") as rd:  # no connection until used
        assert isinstance(rd, DiskBackend)


def test_an_embedded_ring_has_no_membership(cluster_dir):
    with LocalRing.open(cluster_dir) as ring:
        assert ring.membership is None
        assert ring.refresh_map() is False


def test_a_stale_map_on_the_data_path_is_retried_once_after_a_refresh(cluster_dir, protection):
    with DiskRing(cluster_dir) as ring:
        data = os.urandom(1000)
        ref = ring.put(data, protection)
        first = ring.ring.owners(ref.key, 3)[0]
        ring.backends[first].fail_next("get", StaleMap("epoch 9 here"))
        assert ring.get(ref) == data
        assert ring.map_refreshes == 1 and ring.backends[first].calls["get"] == 2
        # stale twice in a row: the error is the caller's, the disk is not marked down
        ring.backends[first].fail_next("get", StaleMap("epoch 10 here"))
        ring.backends[first].fail_next("get", StaleMap("epoch 10 here"))
        with pytest.raises(StaleMap):
            ring.call(first, lambda ds: ds.get(ref.key, REPLICA_INDEX))
        assert ring.map_refreshes == 2 and first in ring.available_disks()


def test_a_disk_failing_unexpectedly_is_marked_down(cluster_dir, protection):
    with DiskRing(cluster_dir) as ring:
        data = os.urandom(1000)
        ref = ring.put(data, protection)
        first = ring.ring.owners(ref.key, 3)[0]
        ring.backends[first].fail_next("get", OSError(errno.EIO, "Input/output error"))
        with pytest.raises(DiskUnavailable, match="Input/output error"):
            ring.call(first, lambda ds: ds.get(ref.key, REPLICA_INDEX))
        assert "Input/output error" in ring.unavailable_disks()[first]
        with pytest.raises(DiskUnavailable):
            ring.call(first, lambda ds: ds.has(ref.key, REPLICA_INDEX))
        assert ring.get(ref) == data  # from the other copies
        # an expected error is the caller's: the disk stays
        other = ring.ring.owners(ref.key, 3)[1]
        with pytest.raises(ChunkNotFound):
            ring.call(other, lambda ds: ds.get(b"\0" * 20, REPLICA_INDEX))
        assert other in ring.available_disks()


def test_a_closed_ring_refuses_calls(cluster_dir, protection):
    ring = DiskRing(cluster_dir)
    ref = ring.put(b"x", protection)
    ring.close()
    with pytest.raises(DiskUnavailable, match="closed"):
        ring.get(ref)
    with pytest.raises(DiskUnavailable, match="closed"):
        ring.put(b"y", protection)
    assert ring.calls_after_close() == {}
