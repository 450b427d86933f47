"""Issue 13: the pieces of a put that failed below its write quorum are not lost data: repair
reports them as an abandoned put, and collects them once the grace period is over."""

from __future__ import annotations

import os

import pytest

from chunkstore.clock import FakeClock
from chunkstore.errors import NotEnoughDisks
from chunkstore.healing.sweep import ABANDONED_GRACE_S, health, repair
from chunkstore.placement.keys import chunk_key
from chunkstore.ring.local import LocalRing
from chunkstore.ring.repairlog import ABANDONED


def _failed_put(ring, protection, payload):
    """A put of an ec4+2 chunk with three of its owners down: 3 pieces written, fewer than k."""
    owners = ring.ring.owners(chunk_key(payload), 6)
    for d in owners[:3]:
        ring.mark_down(d, "test: down during the put")
    with pytest.raises(NotEnoughDisks):
        ring.put(payload, protection)


def _pieces(ring, key):
    return sum(ring.disk(d).has(key, i) for d in ring.available_disks() for i in range(6))


def test_pieces_of_a_put_that_failed_below_quorum_are_abandoned_then_collected(cluster_dir, protection):
    payload = os.urandom(200_000)
    with LocalRing.open(cluster_dir) as ring:
        _failed_put(ring, protection, payload)
        key = chunk_key(payload)
        entry = ring.repair_log.get(key)
        assert entry is not None and entry.kind == ABANDONED
        clock = FakeClock(wall_start=entry.noted_at + 10)
        rep = repair(ring, clock=clock)  # revives the three disks; within the grace period
        assert rep.unrecoverable == () and rep.errors == ()
        assert rep.abandoned == (f"{key.hex()}: abandoned put: 3 pieces, kept until the grace period ends",)
        assert _pieces(ring, key) == 3
        h = health(ring)
        assert (h.unrecoverable, h.abandoned) == (0, 1)
        clock.advance(ABANDONED_GRACE_S)
        rep = repair(ring, clock=clock)
        assert rep.unrecoverable == () and rep.abandoned_collected == 1
        assert rep.abandoned == (f"{key.hex()}: abandoned put: 3 pieces, collected after grace",)
        assert _pieces(ring, key) == 0 and ring.repair_log.get(key) is None
        rep = repair(ring, clock=clock)
        assert rep.abandoned == () and rep.unrecoverable == () and rep.chunks_checked == 0


def test_an_abandoned_chunk_put_again_in_full_is_kept(cluster_dir, protection):
    payload = os.urandom(200_000)
    with LocalRing.open(cluster_dir) as ring:
        _failed_put(ring, protection, payload)
        for d in list(ring.unavailable_disks()):
            ring.revive_disk(d)
        ref = ring.put(payload, protection)  # the retry succeeds: the entry goes
        assert ring.repair_log.get(ref.key) is None
        rep = repair(ring, clock=FakeClock(wall_start=2e9))
        assert rep.abandoned == () and rep.unrecoverable == ()
        assert ring.get(ref) == payload
