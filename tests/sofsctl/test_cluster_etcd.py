"""A networked cluster made with ``cluster create --etcd``: real etcd, real sofs-node processes.

The map lives in etcd and changes only by compare-and-swap; the nodes follow it there (a
change nobody offers them still arrives); two admins racing never fork it; while etcd is
unreachable no change is made, the nodes keep serving and ``status`` says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from chunkstore.authority import binding, mapstore, pki, volumewidths
from chunkstore.errors import ClusterMismatch
from chunkstore.net.client import RemoteDisk
from chunkstore.net.wire import load_secret
from chunkstore.placement.clustermap import ClusterMap
from chunkstore.ring import mapadmin
from tests.etcdnet import etcd_cluster
from tests.netcluster import ROOT, SOFSCTL, NetCluster, sofsctl

ETCD = shutil.which("etcd")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(ETCD is None, reason="etcd not installed (scripts/install)")]


@pytest.fixture
def cluster(tmp_path):
    """(etcd member, a client of it, a NetCluster of 3 one-disk nodes made with --etcd)."""
    with etcd_cluster(tmp_path) as c:
        yield c


def _cluster_id(net: NetCluster) -> str:
    return ClusterMap.load(net.admin / "clustermap.json").cluster_id


def _wait_epochs(net: NetCluster, epoch: int, timeout: float = 30) -> float:
    """Seconds until every node answers PING with ``epoch``."""
    start = time.monotonic()
    while True:
        reach = mapadmin.node_reachability(net.admin)
        if all(ok and got == epoch for ok, got in reach.values()):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"nodes did not take epoch {epoch}: {reach}")
        time.sleep(0.02)


def test_the_map_lives_in_etcd_and_the_nodes_follow_it_there(cluster):
    etcd, client, net = cluster
    local = ClusterMap.load(net.admin / "clustermap.json")
    stored = mapstore.read(client, local.cluster_id)
    assert stored is not None and stored.cmap.fingerprint() == local.fingerprint()
    assert [n.id for n in stored.cmap.nodes] == ["n1", "n2", "n3"]
    assert binding.load(net.admin).endpoints == tuple(etcd.endpoints())
    for n in net.nodes.values():
        assert binding.load(n.dir).endpoints == tuple(etcd.endpoints())
        cert = pki.describe(str(n.dir / "pki" / "etcd-client.crt"))
        assert cert.role == "node" and f"node-{n.id}" in cert.subject
        assert not (n.dir / "pki" / "ca.key").exists()  # the CA's key stays with the admin

    # another admin host changes the map in etcd and offers it to no node: they follow etcd
    changed = mapstore.change(client, local.cluster_id,
                              lambda m: m.set_address("n3", net.nodes["n3"].address))
    took = _wait_epochs(net, changed.cmap.epoch)
    print(f"\nthree nodes followed epoch {changed.cmap.epoch} from etcd in {took:.3f} s")
    assert "adopted" in net.nodes["n1"].log() and "etcd" in net.nodes["n1"].log()

    # the admin's next change starts from etcd's map, not from its own older copy
    sofsctl(net.admin, "node", "drain", "n2")
    after = mapstore.read(client, local.cluster_id)
    assert after.cmap.epoch == changed.cmap.epoch + 1
    assert after.cmap.node("n2").state == "draining"
    assert ClusterMap.load(net.admin / "clustermap.json").fingerprint() == after.cmap.fingerprint()

    # a client without etcd cannot move a node past etcd's map (it could fork the cluster)
    forged = after.cmap.set_node_state("n1", "down")
    n1 = net.nodes["n1"]
    host, port = n1.address.rsplit(":", 1)
    with RemoteDisk(host, int(port), "n1.d0", load_secret(str(n1.dir / "cluster.secret")),
                    epoch=after.cmap.epoch) as rd:
        with pytest.raises(ClusterMismatch, match="follows the cluster map in etcd"):
            rd.put_map(forged.to_json().encode())
        assert rd.ping(after.cmap.epoch).epoch == after.cmap.epoch


def _second_admin(net: NetCluster) -> "object":
    other = net.root / "admin2"
    (other / "pki").mkdir(parents=True)
    for name in ("clustermap.json", "cluster.secret", "etcd.json", "pki/ca.crt",
                 "pki/etcd-client.crt", "pki/etcd-client.key"):
        shutil.copy2(net.admin / name, other / name)
    return other


def test_two_admins_racing_never_fork_the_map(cluster):
    etcd, client, net = cluster
    cid = _cluster_id(net)
    other = _second_admin(net)
    base = mapstore.read(client, cid).revision
    changes = [(net.admin, ["node", "drain", "n1"]), (other, ["node", "add", "n4",
                                                              "127.0.0.1:1", "--disks", "1"]),
               (net.admin, ["node", "drain", "n2"]), (other, ["node", "add", "n5",
                                                              "127.0.0.1:2", "--disks", "1"])]
    won, retry = [], []
    for pair in (changes[:2], changes[2:]):
        procs = [(args, subprocess.Popen([*SOFSCTL, "--data-dir", str(d), *args], cwd=ROOT,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)) for d, args in pair]
        for args, p in procs:
            out, err = p.communicate(timeout=120)
            if p.returncode == 0:
                won.append(args)
            else:
                assert "changed while this change was made" in err and "retry" in err, err
                retry.append(args)
    stored = mapstore.read(client, cid)
    final = stored.cmap
    # one compare-and-swap per change that won: none lost, none made twice
    assert stored.revision == base + len(won), (won, retry)
    states = {n.id: n.state for n in final.nodes}
    for args in won:
        if args[1] == "drain":
            assert states[args[2]] == "draining"
        else:
            assert args[2] in states
    for args in retry:
        if args[1] == "drain":
            assert states[args[2]] == "up"
        else:
            assert args[2] not in states
    print(f"\n{len(won)} changes won, {len(retry)} told to retry")


def test_no_map_change_while_etcd_is_unreachable_and_status_says_so(cluster):
    etcd, client, net = cluster
    cid = _cluster_id(net)
    before = mapstore.read(client, cid).cmap
    etcd.stop_all()

    res = sofsctl(net.admin, "node", "drain", "n1", check=False)
    assert res.returncode != 0
    assert "no map change while etcd is unreachable" in res.stderr, res.stderr
    assert ClusterMap.load(net.admin / "clustermap.json").epoch == before.epoch
    reach = mapadmin.node_reachability(net.admin)
    assert all(ok and epoch == before.epoch for ok, epoch in reach.values()), reach

    res = sofsctl(net.admin, "status", "--json", check=False)
    doc = json.loads(res.stdout)
    assert doc["etcd"]["reachable"] is False and doc["etcd"]["map_epoch"] is None
    assert any("etcd is unreachable" in r["text"] and r["level"] == "HEALTH_WARN"
               for r in doc["health"]["reasons"])
    text = sofsctl(net.admin, "status", check=False).stdout
    assert "UNREACHABLE" in text

    # etcd back: the nodes follow again, and changes are made again
    etcd.start(etcd.members[0])
    etcd.wait_ready(client)
    changed = mapstore.change(client, cid, lambda m: m.set_node_state("n3", "draining"))
    _wait_epochs(net, changed.cmap.epoch)
    sofsctl(net.admin, "node", "drain", "n1")
    assert mapstore.read(client, cid).cmap.epoch == changed.cmap.epoch + 1
    doc = json.loads(sofsctl(net.admin, "status", "--json", check=False).stdout)
    assert doc["etcd"]["reachable"] is True
    assert doc["etcd"]["map_epoch"] == changed.cmap.epoch + 1


def test_the_widest_volume_anywhere_bounds_every_admins_map_changes(cluster):
    etcd, client, net = cluster  # three nodes of one disk each
    cid = _cluster_id(net)
    sofsctl(net.admin, "volume", "create", "wide", "--cos", "2")  # 3 copies on 3 disks
    assert volumewidths.widest(client, cid) == (3, "wide")
    other = _second_admin(net)  # an admin host that has no volume of its own
    res = sofsctl(other, "node", "drain", "n1", check=False)
    assert res.returncode != 0 and "volume wide" in res.stderr, res.stderr
    assert mapstore.read(client, cid).cmap.node("n1").state == "up"

    # once the volume is deleted its width bounds nothing any more
    sofsctl(net.admin, "volume", "delete", "wide", "--yes")
    assert volumewidths.widest(client, cid) == (1, None)
    sofsctl(other, "node", "drain", "n1")

    etcd.stop_all()
    res = sofsctl(net.admin, "volume", "create", "later", "--cos", "1", check=False)
    assert res.returncode != 0 and "etcd is unreachable" in res.stderr, res.stderr
    assert not (net.admin / "volumes" / "later").exists()
