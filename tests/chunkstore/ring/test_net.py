"""The networked RING on loopback: real sofs-node processes set up with sofsctl, a NetRing
client, node failures, map epochs, rebuild and rebalance by the healer. Where a test waits for
the failure detector, the client and its healer run on a FakeClock that the test advances."""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from chunkstore.clock import FakeClock
from chunkstore.errors import FormatError, NotEnoughDisks, StaleMap
from chunkstore.healing.healer import Healer
from chunkstore.healing.sweep import health
from chunkstore.net.client import RemoteDisk
from chunkstore.net.wire import load_secret
from chunkstore.placement.clustermap import ClusterMap
from chunkstore.protection.policy import Protection
from chunkstore.ring.net import NetRing
from tests.netcluster import NetCluster, sofsctl

pytestmark = pytest.mark.integration

PROT = Protection.parse("cos2", "ec4+2")


@pytest.fixture
def cluster(tmp_path):
    c = NetCluster(tmp_path, nodes=6, disks=2)
    try:
        yield c
    finally:
        c.cleanup()


HEARTBEAT_S = 0.3


def open_client(cluster: NetCluster, **kw) -> NetRing:
    kw.setdefault("heartbeat_s", HEARTBEAT_S)
    kw.setdefault("ping_timeout_s", 1.0)
    kw.setdefault("timeout", 5.0)
    return NetRing.open(cluster.client_dir(), **kw)


def wait_for(cond, timeout=30.0, what="condition", clock: FakeClock | None = None):
    """Poll ``cond`` for ``timeout`` real seconds; with a fake ``clock``, move it one
    heartbeat on between polls (the client's heartbeats run on it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if clock is not None:
            clock.advance(HEARTBEAT_S)
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def piece_census(ring: NetRing) -> Counter:
    """(chunk key, fragment index) -> how many disks hold it, over every answering disk."""
    seen: Counter = Counter()
    for disk_id in ring.available_disks():
        for p in ring.disk(disk_id).pieces():
            seen[(p.key, p.frag_idx)] += 1
    return seen


def placements(ring: NetRing) -> set:
    """Every (chunk key, fragment index, disk) stored on an answering disk."""
    return {(p.key, p.frag_idx, d) for d in ring.available_disks() for p in ring.disk(d).pieces()}


def write_set(ring: NetRing, n: int = 40) -> dict:
    refs = {}
    for i in range(n):
        size = [1000, 50_000, 300_000, 2_000_000][i % 4]
        data = os.urandom(size)
        refs[ring.put(data, PROT)] = data
    return refs


def test_put_get_survive_two_dead_nodes_and_the_healer_rebuilds(cluster):
    clock = FakeClock()
    ring = open_client(cluster, clock=clock)
    try:
        refs = write_set(ring)
        assert health(ring).protected == len(refs)
        cluster.nodes["n2"].kill()
        cluster.nodes["n5"].kill()
        for ref, data in refs.items():  # degraded reads, before anyone noticed
            assert ring.get(ref) == data
        wait_for(lambda: set(ring.suspects()) == {"n2", "n5"}, what="heartbeat suspicion",
                 clock=clock)
        more = write_set(ring, 8)  # writes go on: EC 4+2 across 8 disks of 4 hosts
        refs.update(more)
        healer = Healer(ring, down_after_s=300, clock=clock)
        healer.step()
        assert all(n.state == "up" for n in ring.cmap.nodes)  # not silent for long enough yet
        clock.advance(300)
        healer.step()  # marks n2, n5 down (new epoch) and sweeps
        states = {n.id: n.state for n in ring.cmap.nodes}
        assert states["n2"] == states["n5"] == "down"
        report = healer.status.last_report
        assert report is not None and report.pieces_rebuilt > 0 and report.unrecoverable == 0
        h = health(ring)
        assert h.protected == h.chunks == len(refs), h
        for ref, data in refs.items():
            assert ring.get(ref) == data

        # the dead nodes come back: marked up, their pieces count again, extras removed
        cluster.nodes["n2"].start()
        cluster.nodes["n5"].start()
        wait_for(lambda: not ring.suspects(), what="nodes answering again", clock=clock)
        healer.step()
        assert all(n.state == "up" for n in ring.cmap.nodes)
        census = piece_census(ring)
        for ref in refs:  # no duplicates, nothing missing
            policy = ref.policy.policy()
            held = {idx: n for (key, idx), n in census.items() if key == ref.key}
            if 255 in held:
                assert held == {255: policy.width}
            else:
                assert held == {i: 1 for i in range(policy.width)}
            assert ring.get(ref) == refs[ref]
    finally:
        ring.close()


def test_stale_map_refused_then_refreshed_and_a_new_node_takes_its_share(cluster):
    # a clock that never moves: no heartbeats, this client learns of the change from StaleMap only
    ring = open_client(cluster, clock=FakeClock())
    try:
        refs = write_set(ring, 60)
        before = placements(ring)
        epoch = ring.cmap.epoch
        cluster.add_node("n7")
        secret = load_secret(cluster.admin / "cluster.secret")
        n1 = cluster.nodes["n1"]
        with RemoteDisk("127.0.0.1", n1.port, "n1.d0", secret, 5, epoch=epoch) as old:
            with pytest.raises(StaleMap):
                old.stats()
        for ref, data in refs.items():
            assert ring.get(ref) == data  # StaleMap -> fetch the map -> retry
        assert ring.cmap.epoch > epoch and "n7.d0" in ring.disk_ids()
        report = Healer(ring).sweep()  # rebalance
        assert report.unrecoverable == () and not report.errors
        after = placements(ring)
        assert len(after) == len(before)  # as many pieces as before: moved, not copied
        assert {(k, i) for k, i, _ in after} == {(k, i) for k, i, _ in before}
        moved = len(after - before)
        on_new = sum(1 for _, _, d in after if d.startswith("n7."))
        assert moved >= on_new > 0
        share = moved / len(before)
        print(f"\nrebalance after adding a 7th node: {moved}/{len(before)} pieces moved "
              f"({share:.1%}; {on_new} to the new node; its capacity share {1 / 7:.1%})")
        assert share < 0.35
        for ref, data in refs.items():
            assert ring.get(ref) == data
    finally:
        ring.close()


def test_drain_then_remove_a_node(cluster):
    ring = open_client(cluster)
    try:
        refs = write_set(ring, 30)
        res = sofsctl(cluster.admin, "node", "remove", "n3", check=False)
        assert res.returncode == 1 and "still holds" in res.stderr + res.stdout
        sofsctl(cluster.admin, "node", "drain", "n3")
        wait_for(lambda: ring.cmap.node("n3").state == "draining", what="map via heartbeat")
        Healer(ring).sweep()
        assert not [1 for d in ("n3.d0", "n3.d1") for _ in ring.disk(d).pieces()]
        sofsctl(cluster.admin, "node", "remove", "n3")
        wait_for(lambda: "n3.d0" not in ring.disk_ids(), what="removal via heartbeat")
        for ref, data in refs.items():
            assert ring.get(ref) == data
        listing = sofsctl(cluster.admin, "node", "list").stdout
        assert "n3" not in listing and "n1" in listing
    finally:
        ring.close()


def test_map_documents_are_validated_by_nodes(cluster):
    secret = load_secret(cluster.admin / "cluster.secret")
    n1 = cluster.nodes["n1"]
    cmap = ClusterMap.load(cluster.admin / "clustermap.json")
    with RemoteDisk("127.0.0.1", n1.port, "n1.d0", secret, 5) as rd:
        assert ClusterMap.from_json(rd.get_map()).epoch == cmap.epoch
        with pytest.raises(FormatError):
            rd.put_map(b"{not json")
        assert rd.put_map(cmap.to_json().encode()) == cmap.epoch
        foreign = ClusterMap.create("another-cluster")
        with pytest.raises(Exception, match="cluster"):
            rd.put_map(foreign.to_json().encode())


def test_largest_pieces_cross_the_wire(cluster):
    """A replicated volume with 64 MiB blocks stores whole 64 MiB pieces (plus the block
    header): they travel in one frame each way."""
    ring = open_client(cluster)
    try:
        data = os.urandom((64 << 20) + 17)
        ref = ring.put(data, Protection.parse("cos1", "cos1"))
        assert ring.get(ref) == data
    finally:
        ring.close()


def test_a_node_is_not_marked_down_when_its_chunks_could_no_longer_be_placed(tmp_path):
    """3 servers x 2 disks and EC 4+2: without one server only 4 disks would place data, too
    few for 6 fragments. The healer keeps the dead node in the placement: reads degrade, small
    (replicated) writes go on, large ones fail with a clear error until the node is back; the
    CLI refuses to drain a node."""
    small = NetCluster(tmp_path, nodes=3, disks=2)
    try:
        sofsctl(small.admin, "volume", "create", "v", "--ec", "4+2")
        clock = FakeClock()
        ring = open_client(small, clock=clock)
        try:
            refs = write_set(ring, 12)
            small.nodes["n3"].kill()
            wait_for(lambda: "n3" in ring.suspects(), what="suspicion", clock=clock)
            healer = Healer(ring, down_after_s=300, min_placing=6, clock=clock)
            clock.advance(300)
            healer.step()
            assert ring.cmap.node("n3").state == "up"
            for ref, data in refs.items():
                assert ring.get(ref) == data
            small_data = os.urandom(1000)
            assert ring.get(ring.put(small_data, PROT)) == small_data
            with pytest.raises(NotEnoughDisks, match="quorum"):
                ring.put(os.urandom(300_000), PROT)
        finally:
            ring.close()
        res = sofsctl(small.admin, "node", "drain", "n1", check=False)
        assert res.returncode == 1 and "widest policy" in res.stderr
    finally:
        small.cleanup()
