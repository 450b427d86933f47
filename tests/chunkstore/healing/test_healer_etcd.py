"""The healer of a cluster made with etcd: real etcd, real sofs-node processes.

A node is suspect when etcd lost its liveness lease, never because one client cannot reach it;
it is down only after the delay (on the healer's clock, a FakeClock here) and the change is a
compare-and-swap in etcd; while etcd does not answer nothing is decided and no sweep runs.
"""

from __future__ import annotations

import shutil

import pytest

from chunkstore.authority import binding, liveness, mapstore, volumewidths
from chunkstore.authority.election import candidate_name
from chunkstore.clock import FakeClock
from chunkstore.healing.healer import Healer
from chunkstore.net.wire import load_secret
from chunkstore.placement.clustermap import ClusterMap
from chunkstore.ring.net import NetRing
from tests.etcdnet import etcd_cluster, wait_until
from tests.netcluster import free_port

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("etcd") is None,
                                 reason="etcd not installed (scripts/install)")]

DOWN_AFTER = 60.0



def _states(client, cid: str) -> dict[str, str]:
    return {n.id: n.state for n in mapstore.read(client, cid).cmap.nodes}


def test_down_and_up_are_etcds_word_and_nothing_is_decided_without_it(tmp_path):
    with etcd_cluster(tmp_path, nodes=3, node_config={"lease_ttl": 2}) as (etcd, client, net):
        admin_map = ClusterMap.load(net.admin / "clustermap.json")
        cid = admin_map.cluster_id

        def alive() -> set[str]:
            return set(liveness.alive_nodes(client, cid))

        wait_until(lambda: alive() == {"n1", "n2", "n3"}, "three liveness keys")
        # this client's copy of the map has a wrong address for n2: it can never reach n2,
        # while n2 is alive for etcd and everyone else
        # (same epoch: only the address differs)
        cut = ClusterMap.from_json(admin_map.to_json().replace(
            net.nodes["n2"].address, f"127.0.0.1:{free_port()}"))
        state = tmp_path / "client"
        state.mkdir()
        clock = FakeClock()
        ring = NetRing(cut, load_secret(str(net.admin / "cluster.secret")), state, clock=clock,
                       etcd=binding.client(net.admin), ping_timeout_s=0.5)
        try:
            healer = Healer(ring, down_after_s=DOWN_AFTER, clock=clock)
            ring.heartbeat_once()
            assert "n2" in ring.unreachable_for()  # this client's own view
            clock.advance(2 * DOWN_AFTER)
            assert healer.update_map() is False
            assert _states(client, cid) == {"n1": "up", "n2": "up", "n3": "up"}

            # n3 dies: suspect once its lease ran out, down only after the delay
            net.nodes["n3"].kill()
            wait_until(lambda: "n3" not in alive(), "n3's lease to expire")
            assert healer.update_map() is False  # absent from now on
            clock.advance(DOWN_AFTER - 1)
            assert healer.update_map() is False
            clock.advance(2)
            assert healer.update_map() is True
            assert _states(client, cid) == {"n1": "up", "n2": "up", "n3": "down"}
            assert ring.cmap.node("n3").state == "down"
            assert healer.needs_sweep() == "map"

            # etcd gone: nothing is decided, no sweep runs, and the healer says why
            etcd.stop_all()
            net.nodes["n3"].start()
            assert healer.update_map() is False
            assert healer.authority_unreachable
            assert healer.needs_sweep() is None
            assert ring.cmap.node("n3").state == "down"

            # etcd back: n3 took a new lease and is marked up, by compare-and-swap there
            etcd.start(etcd.members[0])
            etcd.wait_ready(client)
            wait_until(lambda: alive() == {"n1", "n2", "n3"}, "n3 alive again")
            assert healer.update_map() is True
            assert healer.authority_unreachable is None
            assert _states(client, cid) == {"n1": "up", "n2": "up", "n3": "up"}
        finally:
            ring.close()


def test_a_clean_stop_revokes_the_lease_at_once(tmp_path):
    with etcd_cluster(tmp_path, nodes=1, node_config={"lease_ttl": 30}) as (_, client, net):
        cid = ClusterMap.load(net.admin / "clustermap.json").cluster_id
        wait_until(lambda: set(liveness.alive_nodes(client, cid)) == {"n1"}, "n1 alive")
        record = liveness.alive_nodes(client, cid)["n1"]
        assert record.address == net.nodes["n1"].address and record.lease
        assert record.pid == net.nodes["n1"].proc.pid
        net.nodes["n1"].stop()  # SIGTERM: well before the 30 s lease would run out
        assert liveness.alive_nodes(client, cid) == {}


def test_one_healer_acts_for_the_cluster_and_a_standby_takes_over(tmp_path):
    with etcd_cluster(tmp_path, nodes=1) as (_, client, net):
        secret = load_secret(str(net.admin / "cluster.secret"))
        rings, healers = [], []
        try:
            for name in ("a", "b"):
                d = tmp_path / name
                d.mkdir()
                rings.append(NetRing(ClusterMap.load(net.admin / "clustermap.json"), secret, d,
                                     etcd=binding.client(net.admin)))
                healers.append(Healer(rings[-1], leader_ttl_s=2))
            a, b = healers
            a.step()
            b.step()
            assert a.status.state == "idle" and b.status.state == "standby"
            assert a.leader == b.leader == candidate_name(str(tmp_path / "a"))

            # a hangs (no step renews its lease): b takes over once the lease ran out
            wait_until(lambda: (b.step(), b.status.state == "idle")[1], "b to take over", 15)
            assert b.leader == candidate_name(str(tmp_path / "b"))
            a.step()
            assert a.status.state == "standby" and a.leader == b.leader

            # b stops cleanly: it resigns, and a leads at its next step
            b.close()
            a.step()
            assert a.status.state == "idle"
        finally:
            for h in healers:
                h.close()
            for r in rings:
                r.close()


def test_no_node_goes_down_below_the_widest_volume_anywhere(tmp_path):
    with etcd_cluster(tmp_path, nodes=3, node_config={"lease_ttl": 2}) as (_, client, net):
        cid = ClusterMap.load(net.admin / "clustermap.json").cluster_id
        # a volume of another admin host puts 3 pieces on 3 disks; this healer's own is 1 wide
        volumewidths.register(client, cid, "0" * 8 + "-0000-4000-8000-" + "0" * 12, "wide", 3)
        clock = FakeClock()
        ring = NetRing.open(net.admin, clock=clock)
        try:
            healer = Healer(ring, down_after_s=DOWN_AFTER, clock=clock, min_placing=1)
            net.nodes["n3"].kill()
            wait_until(lambda: "n3" not in liveness.alive_nodes(client, cid), "n3's lease")
            healer.update_map()
            clock.advance(2 * DOWN_AFTER)
            assert healer.update_map() is False
            assert _states(client, cid)["n3"] == "up"  # kept in the placement: 3 are needed
        finally:
            ring.close()
