"""Issue 13: an idempotent re-put verifies the stored piece (a rotten copy is rewritten), and
a delete carrying the time it was decided at is refused when a put of the piece landed here
at or after that time (the repair sweep's cleanup must not remove a chunk written again)."""

import os

import pytest

from chunkstore.clock import FakeClock
from chunkstore.disk import container as ctr
from chunkstore.disk.store import DiskStore
from chunkstore.errors import KeyConflict
from chunkstore.placement.keys import chunk_key
from chunkstore.protection.policy import REPLICA_INDEX, ReplicationPolicy

CODE = ReplicationPolicy(3).code


def _open(path, clock=None):
    DiskStore.initialise(path, "cluster-a", "d0")
    return DiskStore(path, clock=clock) if clock is not None else DiskStore(path)


def _put(ds, payload):
    key = chunk_key(payload)
    ds.put(key, REPLICA_INDEX, CODE, len(payload), payload)
    return key


def test_an_idempotent_reput_rewrites_a_piece_that_rotted(tmp_path):
    with _open(tmp_path / "d0") as ds:
        payload = os.urandom(4000)
        key = _put(ds, payload)
        info = ds.piece(key, REPLICA_INDEX)
        ctr.flip_byte(os.path.join(ds.path, "containers", ctr.container_name(info.container)),
                      ctr.data_offset(info.offset) + 10)
        _put(ds, payload)  # the index still names the piece: it must not be trusted
        assert ds.get(key, REPLICA_INDEX) == payload  # verified read of the rewritten copy
        assert ds.piece(key, REPLICA_INDEX).offset != info.offset
        assert ds.stats().live_pieces == 1 and ds.stats().dead_bytes > 0
        before = ds.piece(key, REPLICA_INDEX)
        _put(ds, payload)  # an intact copy is not written again
        assert ds.piece(key, REPLICA_INDEX) == before


def test_a_delete_decided_before_a_reput_is_refused(tmp_path):
    clock = FakeClock()
    with _open(tmp_path / "d0", clock) as ds:
        clock.advance(10)
        key = _put(ds, b"same bytes")
        decided = clock.time()
        clock.advance(5)
        _put(ds, b"same bytes")  # written again (dedup): the same piece, no new record
        with pytest.raises(KeyConflict):
            ds.delete(key, REPLICA_INDEX, decided_at=decided)
        assert ds.get(key, REPLICA_INDEX) == b"same bytes"
        clock.advance(5)
        ds.delete(key, REPLICA_INDEX, decided_at=clock.time())  # decided after the last put
        assert not ds.has(key, REPLICA_INDEX)


def test_a_conditional_delete_of_a_piece_put_before_it_goes_through(tmp_path):
    clock = FakeClock()
    with _open(tmp_path / "d0", clock) as ds:
        clock.advance(10)
        key = _put(ds, b"old bytes")
        clock.advance(5)
        ds.delete(key, REPLICA_INDEX, decided_at=clock.time())
        assert not ds.has(key, REPLICA_INDEX)


def test_put_times_survive_a_reopen_and_unknown_ones_refuse(tmp_path):
    clock = FakeClock()
    path = tmp_path / "d0"
    with _open(path, clock) as ds:
        clock.advance(10)
        key = _put(ds, b"kept")
        decided = clock.time()
        clock.advance(5)
        _put(ds, b"kept")
    with DiskStore(path, clock=clock) as ds:
        with pytest.raises(KeyConflict):  # the re-put's time was kept across the reopen
            ds.delete(key, REPLICA_INDEX, decided_at=decided)
        # a delete decided before put times were kept at all cannot be checked: refused
        with pytest.raises(KeyConflict):
            ds.delete(key, REPLICA_INDEX, decided_at=clock.time() - 1000)
        assert ds.has(key, REPLICA_INDEX)
