"""The etcd client (chunkstore.authority.etcd) against real etcd members started with the
command line of chunkstore.authority.etcdmember: TLS both ways, client certificates checked
against the cluster CA made by chunkstore.authority.pki."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest

from chunkstore.authority import pki
from chunkstore.authority.etcd import EtcdClient
from chunkstore.authority.etcdmember import MemberSpec, prepare_member_dir
from chunkstore.errors import ConfigError, EtcdError, EtcdUnavailable

from .etcdcluster import Cluster, free_port

ETCD = shutil.which("etcd")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(ETCD is None, reason="etcd not installed (scripts/install)")]


def test_keys_and_compare_and_swap(one):
    _, etcd = one
    rev = etcd.put(b"/sofs/map", b"epoch-1")
    kv, _ = etcd.get(b"/sofs/map")
    assert kv is not None and kv.value == b"epoch-1" and kv.mod_revision == rev
    # two admins both read the map at `rev` and both try to change it: exactly one wins
    ok_a, rev_a = etcd.put_if(b"/sofs/map", b"epoch-2 by a", rev)
    ok_b, _ = etcd.put_if(b"/sofs/map", b"epoch-2 by b", rev)
    assert (ok_a, ok_b) == (True, False)
    kv, _ = etcd.get(b"/sofs/map")
    assert kv.value == b"epoch-2 by a" and kv.mod_revision == rev_a
    made, there = etcd.create(b"/sofs/map", b"again")
    assert not made and there.value == b"epoch-2 by a"
    assert etcd.create(b"/sofs/new", b"x") == (True, None)
    assert [k.key for k in etcd.get_prefix(b"/sofs/")] == [b"/sofs/map", b"/sofs/new"]
    assert not etcd.delete_if(b"/sofs/new", rev)
    assert etcd.delete(b"/sofs/new") == 1
    assert etcd.get(b"/sofs/new")[0] is None


def test_leases_bind_keys(one):
    _, etcd = one
    lease = etcd.grant(30)
    etcd.put(b"/sofs/alive/n1", b"up", lease=lease)
    assert etcd.get(b"/sofs/alive/n1")[0].lease == lease
    assert etcd.keepalive(lease) > 0
    assert 0 < etcd.time_to_live(lease) <= 30
    etcd.revoke(lease)
    assert etcd.get(b"/sofs/alive/n1")[0] is None  # the key went with its lease
    assert etcd.keepalive(lease) == 0  # an expired lease cannot come back
    etcd.revoke(lease)  # revoking twice is not an error
    with pytest.raises(EtcdError):
        etcd.put(b"/sofs/alive/n1", b"up", lease=lease)


def test_watch_sees_changes_from_a_revision(one):
    _, etcd = one
    start = etcd.put(b"/sofs/map", b"1")
    etcd.put(b"/sofs/map", b"2")
    etcd.delete(b"/sofs/map")
    stop = threading.Event()
    seen = []
    for kv in etcd.watch(b"/sofs/map", start, stop):
        if kv is None:
            break
        seen.append(kv.value)
        if len(seen) == 3:
            stop.set()
    assert seen == [b"1", b"2", b""]  # a delete is an empty value


def test_a_client_without_a_cluster_certificate_is_refused(one, tmp_path):
    c, _ = one
    other = tmp_path / "other"
    pki.ensure_ca(other, "another cluster")  # a valid certificate, from the wrong CA
    stranger = pki.issue(other, other / "pki", "stranger", "admin")
    foreign = pki.TlsFiles(c.client_tls.ca, stranger.cert, stranger.key)
    with EtcdClient(c.endpoints(), foreign, timeout=2) as etcd:
        with pytest.raises(EtcdUnavailable):
            etcd.get(b"/sofs/map")
    with pytest.raises(ConfigError):
        EtcdClient(c.endpoints(), pki.TlsFiles(c.client_tls.ca, str(tmp_path / "none.crt"),
                                              stranger.key))


def test_unreachable_members_are_unavailable_not_a_hang(tmp_path):
    pki.ensure_ca(tmp_path, "t")
    tls = pki.issue(tmp_path, tmp_path / "pki", "client", "admin")
    with EtcdClient([f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"], tls,
                    timeout=1) as etcd:
        with pytest.raises(EtcdUnavailable) as e:
            etcd.get(b"/sofs/map")
    assert str(e.value).count("127.0.0.1") == 2  # both endpoints were tried


def test_three_members_survive_the_loss_of_one(tmp_path):
    c = Cluster(tmp_path, 3)
    try:
        for m in c.members:
            c.start(m)
        with c.client(timeout=2) as etcd:
            c.wait_ready(etcd)
            rev = etcd.put(b"/sofs/map", b"1")
            status = etcd.status()
            assert all(s.ok for s in status) and sum(s.is_leader for s in status) == 1
            leader = next(m.name for m, s in zip(c.members, status, strict=True) if s.is_leader)
            c.stop(leader)
            # a new leader is elected; the client fails over to a member that answers
            deadline = time.monotonic() + 60
            while True:
                try:
                    ok, _ = etcd.put_if(b"/sofs/map", b"2", rev)
                    break
                except EtcdUnavailable:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            assert ok and etcd.get(b"/sofs/map")[0].value == b"2"
            down = [s for s in etcd.status() if not s.ok]
            assert len(down) == 1 and str(c.members[[m.name for m in c.members].index(leader)]
                                          .client_port) in down[0].endpoint
    finally:
        c.stop_all()


def test_member_directories_are_private(tmp_path):
    path = prepare_member_dir(tmp_path, "e0")
    assert os.stat(path).st_mode & 0o777 == 0o700
    assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700


def test_member_sets_that_etcd_cannot_run_are_refused():
    from chunkstore.authority.etcdmember import check_members
    with pytest.raises(ConfigError, match="2 etcd members"):
        check_members([MemberSpec("a", "10.0.0.1"), MemberSpec("b", "10.0.0.2")])
    with pytest.raises(ConfigError, match="unique"):
        check_members([MemberSpec("a", "10.0.0.1"), MemberSpec("a", "10.0.0.2"),
                       MemberSpec("c", "10.0.0.3")])
    with pytest.raises(ConfigError, match="address"):
        check_members([MemberSpec("a", "10.0.0.1"), MemberSpec("b", "10.0.0.1"),
                       MemberSpec("c", "10.0.0.3")])
