"""Issue 13: the repair sweep's cleanup of a deleted chunk never removes the pieces of the same
chunk written again since (dedup: the same bytes are the same key), whichever process wrote it."""

from __future__ import annotations

import os

import pytest

from chunkstore.healing.sweep import health, repair
from chunkstore.ring.local import LocalRing
from chunkstore.ring.repairlog import DELETED


@pytest.mark.parametrize("size", [2912, 200_000])  # cos2 replicas, ec4+2 fragments
def test_cleanup_of_a_deleted_chunk_spares_it_once_written_again_elsewhere(cluster_dir, protection, size):
    payload = os.urandom(size)
    with LocalRing.open(cluster_dir) as ring:
        ref = ring.put(payload, protection)
        policy = ring._policy(ref)
        owners = ring.ring.owners(ref.key, policy.width)
        ring.mark_down(owners[0], "test: unreachable while the chunk is deleted")
        ring.delete(ref)  # the GC: one owner missed, so the repair log says DELETED
        assert ring.repair_log.get(ref.key).kind == DELETED
        # another process writes a file with the same bytes: same key, same pieces, on the
        # owners it reaches; this client's repair log never hears of it
        pieces = policy.encode(payload)
        for i, disk_id in enumerate(owners[1:], start=1):
            ring.disk(disk_id).put(ref.key, policy.piece_index(i), ref.policy, ref.size, pieces[i])
        rep = repair(ring)  # revives owners[0], then cleans up what the log calls deleted
        assert rep.errors == () and rep.unrecoverable == ()
        assert ring.get(ref) == payload  # the new file's chunk is still there
        assert ring.repair_log.get(ref.key) is None
        h = health(ring)
        assert (h.chunks, h.protected) == (1, 1)


def test_cleanup_of_a_deleted_chunk_not_written_again_still_removes_it(cluster_dir, protection):
    with LocalRing.open(cluster_dir) as ring:
        ref = ring.put(os.urandom(200_000), protection)
        owners = ring.ring.owners(ref.key, 6)
        ring.mark_down(owners[0], "test")
        ring.delete(ref)
        rep = repair(ring)
        assert rep.pieces_removed == 1 and rep.unrecoverable == ()
        assert ring.repair_log.get(ref.key) is None
        assert not any(ring.disk(d).has(ref.key, i) for d in ring.available_disks() for i in range(6))
