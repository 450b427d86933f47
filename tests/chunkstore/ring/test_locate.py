"""locate(): each piece's owner and the disks found holding it, on a real local ring."""

import os

from chunkstore.protection.policy import REPLICA_INDEX as COPY
from chunkstore.ring.local import LocalRing
from chunkstore.ring.locate import DEGRADED, OK, UNRECOVERABLE, locate


def test_replicated_chunk_copies_missing_misplaced_and_lost(cluster_dir, protection):
    with LocalRing.open(cluster_dir) as ring:
        ref = ring.put(b"small", protection)  # cos2: three copies
        places = locate(ring, ref)
        assert places.state == OK and places.policy == "cos2"
        owners = [p.owner for p in places.pieces]
        assert [p.found_on for p in places.pieces] == [(d,) for d in owners]
        code, size = ref.policy, ref.size
        # one copy moves to a non-owner: still three copies, one misplaced
        other = next(d for d in ring.disk_ids() if d not in owners)
        ring.disk(other).put(ref.key, COPY, code, size, b"small")
        ring.disk(owners[1]).delete(ref.key, COPY)
        places = locate(ring, ref)
        assert places.state == OK and places.pieces[1].found_on == (other,)
        assert places.pieces[1].misplaced and not places.pieces[0].misplaced
        for d in (other, owners[2]):
            ring.disk(d).delete(ref.key, COPY)
        places = locate(ring, ref)
        assert places.state == DEGRADED and places.found == 1
        ring.disk(owners[0]).delete(ref.key, COPY)
        assert locate(ring, ref).state == UNRECOVERABLE


def test_erasure_coded_fragments_by_index(cluster_dir, protection):
    with LocalRing.open(cluster_dir) as ring:
        ref = ring.put(os.urandom(200_000), protection)  # ec4+2: six fragments
        places = locate(ring, ref)
        assert places.policy == "ec4+2" and places.needed == 4
        assert [p.index for p in places.pieces] == list(range(6)) and places.state == OK
        for p in places.pieces[:2]:
            ring.disk(p.owner).delete(ref.key, p.index)
        places = locate(ring, ref)
        assert places.state == DEGRADED and places.found == 4
        assert [p.found_on for p in places.pieces[:2]] == [(), ()]
        ring.disk(places.pieces[2].owner).delete(ref.key, 2)
        gone = locate(ring, ref)
        assert gone.state == UNRECOVERABLE and gone.as_dict()["pieces_found"] == 3
