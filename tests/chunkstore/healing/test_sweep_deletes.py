"""F29: chunks deleted while a repair sweep runs (checkpoint rotation, the volumes' GC) are
neither unrecoverable nor left in the repair log; chunks really lost still are."""

from __future__ import annotations

import os

import pytest

from chunkstore.healing import sweep as sweep_mod
from chunkstore.healing.sweep import health, repair
from chunkstore.ring.local import LocalRing
from chunkstore.ring.repairlog import NEEDS_REPAIR


@pytest.fixture
def after_snapshot(monkeypatch):
    """Run a hook once the sweep has listed every disk, before it handles any chunk."""
    def install(hook):
        real = sweep_mod._collect

        def collect(ring, cancel=None):
            snapshot = real(ring, cancel)
            hook(ring)
            return snapshot

        monkeypatch.setattr(sweep_mod, "_collect", collect)
    return install


def _needs_repair(ring):
    return [e.ref.key for e in ring.repair_log.entries() if e.kind == NEEDS_REPAIR]


def test_chunks_deleted_through_the_ring_during_a_sweep_are_not_unrecoverable(cluster_dir, protection,
                                                                               after_snapshot):
    with LocalRing.open(cluster_dir) as ring:
        kept = ring.put(os.urandom(300_000), protection)
        doomed = [ring.put(os.urandom(n), protection) for n in (42, 2912, 200_000)]  # cos2 and EC
        ring.repair_log.note(doomed[0], NEEDS_REPAIR)  # an entry from before the sweep, now stale
        after_snapshot(lambda r: [r.delete(ref) for ref in doomed])
        rep = repair(ring)
        assert rep.unrecoverable == () and rep.errors == ()
        assert rep.deleted_meanwhile == len(doomed)
        assert rep.pieces_rebuilt == 0  # nothing deleted is resurrected
        assert _needs_repair(ring) == []
        h = health(ring)
        assert (h.chunks, h.protected, h.unrecoverable) == (1, 1, 0)
        assert ring.get(kept)


def test_a_chunk_whose_pieces_all_vanish_during_the_sweep_counts_as_deleted(cluster_dir, protection,
                                                                           after_snapshot):
    # another client of the ring deleted it: every disk answers and none has a piece left
    with LocalRing.open(cluster_dir) as ring:
        ref = ring.put(os.urandom(200_000), protection)

        def delete_elsewhere(r):
            for d in r.available_disks():
                for idx in range(6):
                    r.disk(d).delete(ref.key, idx)

        after_snapshot(delete_elsewhere)
        rep = repair(ring)
        assert rep.unrecoverable == () and rep.deleted_meanwhile == 1
        assert _needs_repair(ring) == []


def test_a_chunk_losing_pieces_behind_the_rings_back_during_the_sweep_is_still_unrecoverable(
        cluster_dir, protection, after_snapshot):
    with LocalRing.open(cluster_dir) as ring:
        ref = ring.put(os.urandom(200_000), protection)  # ec4+2: 3 fragments lost is too many
        owners = ring.ring.owners(ref.key, 6)
        after_snapshot(lambda r: [r.disk(d).delete(ref.key, i) for i, d in enumerate(owners[:3])])
        rep = repair(ring)
        assert rep.unrecoverable == (ref.key,) and rep.deleted_meanwhile == 0
        assert _needs_repair(ring) == [ref.key]
        again = repair(ring)  # stays reported: it is not a delete
        assert again.unrecoverable == (ref.key,)


def test_a_chunk_known_only_from_the_repair_log_with_no_piece_left_is_still_unrecoverable(cluster_dir, protection):
    # its pieces were removed behind the ring's back, no delete was ever recorded
    with LocalRing.open(cluster_dir) as ring:
        ref = ring.put(b"lost without a delete", protection)
        for d in ring.available_disks():
            ring.disk(d).delete(ref.key, 0xFF)
        ring.repair_log.note(ref, NEEDS_REPAIR)
        rep = repair(ring)
        assert rep.unrecoverable == (ref.key,)
        assert _needs_repair(ring) == [ref.key]


def test_health_does_not_count_a_chunk_the_gc_deletes_while_the_disks_are_listed(cluster_dir, protection,
                                                                                monkeypatch):
    """`sofsctl status` while the GC runs: the disks listed after the delete no longer show the
    chunk, those listed before still do; it is neither unrecoverable nor counted."""
    with LocalRing.open(cluster_dir) as ring:
        ring.put(os.urandom(300_000), protection)
        doomed = ring.put(os.urandom(200_000), protection)
        real = sweep_mod._collect

        def collect(r, cancel=None):
            chunks, pieces = real(r, cancel)
            r.delete(doomed)
            c = next(c for c in chunks.values() if c.ref.key == doomed.key)
            for d in sorted(c.where)[2:]:  # listed after the delete: gone there
                del c.where[d]
            return chunks, pieces

        monkeypatch.setattr(sweep_mod, "_collect", collect)
        h = health(ring)
        assert (h.chunks, h.protected, h.unrecoverable) == (1, 1, 0)
