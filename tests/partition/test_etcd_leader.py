"""Scenario 5 of issue 13: the etcd leader is killed while map changes are made. Each change
either happens once or not at all: none is lost after it was reported made, none is made twice,
and the epochs stay one sequence (three real etcd members on 127.0.0.1)."""

from __future__ import annotations

import shutil

import pytest

from chunkstore.authority import mapstore
from chunkstore.errors import EtcdUnavailable
from chunkstore.placement.clustermap import ClusterMap
from tests.chunkstore.authority.etcdcluster import Cluster

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("etcd") is None,
                                 reason="etcd not installed (scripts/install)")]

CID = "c5"
CHANGES = 24


def test_killing_the_leader_during_map_changes_makes_each_once_or_not_at_all(tmp_path):
    cluster = Cluster(tmp_path, 3)
    try:
        for m in cluster.members:
            cluster.start(m)
        with cluster.client(timeout=2.0) as etcd:
            cluster.wait_ready(etcd)
            base = mapstore.seed(etcd, ClusterMap.create(CID).add_node("n0", "10.0.0.1:7700"))
            made, unknown = [], []
            killed = None
            for i in range(1, CHANGES + 1):
                if i == 4:  # the leader dies with changes still to come
                    leader = next(s for s in etcd.status() if s.is_leader)
                    killed = next(m.name for m in cluster.members
                                  if m.client_url == leader.endpoint)
                    cluster.stop(killed)
                try:
                    mapstore.change(etcd, CID, lambda m, i=i: m.add_node(f"n{i}",
                                                                         f"10.0.1.{i}:7700"))
                    made.append(f"n{i}")
                except EtcdUnavailable:  # during the election: made or not, unknown
                    unknown.append(f"n{i}")
            assert killed is not None
            cluster.wait_ready(etcd)
            final = mapstore.read(etcd, CID).cmap
            nodes = [n.id for n in final.nodes][1:]
            assert len(nodes) == len(set(nodes))  # none twice
            assert set(made) <= set(nodes) <= set(made) | set(unknown)  # none lost
            assert final.epoch == base.cmap.epoch + len(nodes)  # one epoch per change made
            assert f"n{CHANGES}" in made  # the two survivors went on without the leader
            print(f"\nleader {killed} killed: {len(made)} changes made, {len(unknown)} "
                  "unknown during the election")
    finally:
        cluster.stop_all()
