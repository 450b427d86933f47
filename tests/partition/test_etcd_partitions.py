"""Partitions of a cluster that agrees through etcd (issue 13, scenarios 3 and 4), with real
processes in network namespaces (tests/netlab.py): etcd in one, each storage node in its own,
the connector (a NetRing and its healer, in this process) in the root namespace.

3. A node cut off from the connector only (a blackhole route here): etcd still holds its
   lease, so it is never marked down and no rebuild starts, however long the cut lasts.
4. A node cut off from everyone (its link down): its lease runs out, it is marked down after
   the delay and its share rebuilt once; back, it is marked up and the extra copies go.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import pytest

from chunkstore.authority import liveness, mapstore
from chunkstore.clock import FakeClock
from chunkstore.healing.healer import Healer
from chunkstore.healing.sweep import health
from chunkstore.protection.policy import Protection
from chunkstore.ring.net import NetRing
from tests.etcdnet import etcd_cluster, wait_until

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("etcd") is None,
                                 reason="etcd not installed (scripts/install)")]

PROT = Protection.parse("cos1", "ec2+1")
DOWN_AFTER = 60.0



@contextlib.contextmanager
def _blackhole(ip: str):
    """This (root) namespace cannot reach ``ip``; everyone else still can."""
    subprocess.run(["ip", "route", "add", "blackhole", f"{ip}/32"], check=True,
                   capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "route", "del", "blackhole", f"{ip}/32"], capture_output=True)


def test_partitions_judged_by_etcd_not_by_one_connector(tmp_path, netlab):
    with etcd_cluster(tmp_path, nodes=4, disks=1, lab=netlab,
                      node_config={"lease_ttl": 2}) as (_, client, net):
        state = net.client_dir("connector")
        ring = NetRing.open(state, heartbeat_s=0.3, ping_timeout_s=0.5, timeout=3.0)
        cid = ring.cmap.cluster_id
        clock = FakeClock()
        healer = Healer(ring, down_after_s=DOWN_AFTER, clock=clock, min_placing=3)
        try:
            refs = {ring.put(os.urandom(n), PROT): None for n in (500, 2000, 200_000) * 4}
            wait_until(lambda: len(liveness.alive_nodes(client, cid)) == 4, "four live nodes", 40)

            # 3: n4 unreachable from this connector only
            with _blackhole(net.nodes["n4"].ip):
                wait_until(lambda: "n4" in ring.unreachable_for(), "this connector to suspect n4")
                for _ in range(3):
                    clock.advance(DOWN_AFTER)
                    assert healer.update_map() is False
                    assert healer.needs_sweep() is None
                assert "n4" in liveness.alive_nodes(client, cid)
                assert {n.id: n.state for n in mapstore.read(client, cid).cmap.nodes} == \
                    {"n1": "up", "n2": "up", "n3": "up", "n4": "up"}
                for ref in refs:  # degraded reads meanwhile
                    assert ring.get(ref)

            # 4: n4 cut off from everyone, etcd included
            wait_until(lambda: "n4" not in ring.unreachable_for(), "n4 reachable again")
            epoch = mapstore.read(client, cid).cmap.epoch
            net.nodes["n4"].host.link_down()
            wait_until(lambda: "n4" not in liveness.alive_nodes(client, cid), "n4's lease to end")
            assert healer.update_map() is False  # suspect from now on
            clock.advance(DOWN_AFTER + 1)
            assert healer.update_map() is True
            assert mapstore.read(client, cid).cmap.node("n4").state == "down"
            assert healer.needs_sweep() == "map"
            healer.step()  # the one rebuild
            report = healer.status.last_report
            assert report is not None and report.pieces_rebuilt > 0, report
            assert healer.needs_sweep() is None  # once
            h = health(ring)
            assert h.protected == h.chunks == len(refs), h

            net.nodes["n4"].host.link_up()
            wait_until(lambda: "n4" in liveness.alive_nodes(client, cid), "n4 alive again")
            assert healer.update_map() is True
            stored = mapstore.read(client, cid)
            assert stored.cmap.node("n4").state == "up"
            assert stored.cmap.epoch == epoch + 2  # down once, up once
            healer.step()  # the extra copies made meanwhile go
            assert healer.status.last_report.pieces_removed > 0
            for ref in refs:
                assert ring.get(ref)
        finally:
            healer.close()
            ring.close()
