"""Fencing through the RING (issue 13): two clients of one volume on real nodes; once the new
holder declared its higher lease token, every write of the old one is refused by the nodes
(StaleEpoch, raised as such: no hand-off, no disk marked down) and nothing of it is stored."""

from __future__ import annotations

import os

import pytest

from chunkstore.errors import StaleEpoch
from chunkstore.protection.policy import Protection
from chunkstore.ring.net import NetRing
from tests.netcluster import NetCluster

pytestmark = pytest.mark.integration

PROT = Protection.parse("cos2", "ec2+1")
VOL = bytes(range(16))


def test_the_old_holder_of_a_volume_can_store_nothing_once_overtaken(tmp_path):
    cluster = NetCluster(tmp_path, nodes=3, disks=1)
    rings: list[NetRing] = []
    try:
        old = NetRing.open(cluster.client_dir("old"), fence=(VOL, 5), timeout=5.0)
        rings.append(old)
        before = {old.put(os.urandom(n), PROT): None for n in (1000, 300_000)}
        old.put_root(VOL, 1, b"root 1")

        new = NetRing.open(cluster.client_dir("new"), fence=(VOL, 5), timeout=5.0)
        rings.append(new)
        took = new.set_fence(VOL, 9)  # the takeover, before its first write
        assert sorted(took.values()) == [9, 9, 9], took
        new.put_root(VOL, 2, b"root 2 of the new holder")

        def pieces() -> set:
            return {(d, p.key, p.frag_idx) for d in new.disk_ids()
                    for p in new.disk(d).pieces()}

        stored = pieces()
        late_small, late_large = os.urandom(1000), os.urandom(300_000)
        refused = 0
        for data in (late_small, late_large):
            with pytest.raises(StaleEpoch):
                old.put(data, PROT)
            refused += 1
        with pytest.raises(StaleEpoch):
            old.put_root(VOL, 3, b"root 3 of the old holder")
        refused += 1
        assert refused == 3
        assert not old.unavailable_disks()  # refusals are not disk failures
        assert new.get_root(VOL).body == b"root 2 of the new holder"
        for ref in before:  # what the old holder stored before is still there
            assert new.get(ref) is not None
        assert pieces() == stored  # and not one piece of its late writes
    finally:
        for r in rings:
            r.close()
        cluster.cleanup()
