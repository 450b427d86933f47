"""Issue 13: DELETE's optional decided_ago field (a conditional delete) on the wire and through
a node: a put of the piece on the node since the delete was decided makes it refuse
(KeyConflict), whatever the difference between the client's and the node's clocks."""

import struct

import pytest

from chunkstore.clock import FakeClock
from chunkstore.errors import KeyConflict, WireError
from chunkstore.net import wire
from chunkstore.net.server import DELETE_DELAY_MARGIN_S
from chunkstore.net.wire import Kind, Op
from chunkstore.placement.keys import chunk_key
from chunkstore.protection.policy import REPLICA_INDEX

from .test_node_inproc import REP, node  # noqa: F401 - the fixture

KEY = bytes(range(20))


def test_a_conditional_delete_round_trips():
    req = wire.Delete("d0", KEY, 3, 12.25)
    f = wire.decode_frame(wire.join(wire.encode_request(5, req)))
    assert (f.kind, f.op, f.body) == (Kind.REQUEST, Op.DELETE, req)


def test_a_delete_without_the_field_is_unconditional_as_before():
    frame = wire.join(wire.encode_request(5, wire.Delete("d0", KEY, 3)))
    f = wire.decode_frame(frame)
    assert f.body == wire.Delete("d0", KEY, 3) and f.body.decided_ago is None
    assert len(frame) == 12 + 3 + 21  # the body of the previous release, byte for byte


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_a_decided_ago_that_is_not_a_duration_is_refused(bad):
    with pytest.raises(WireError):
        wire.encode_request(5, wire.Delete("d0", KEY, 3, bad))
    frame = bytearray(wire.join(wire.encode_request(5, wire.Delete("d0", KEY, 3, 1.0))))
    struct.pack_into(">d", frame, len(frame) - 8, bad)
    with pytest.raises(WireError):
        wire.decode_frame(bytes(frame))


def test_a_node_refuses_a_delete_decided_before_the_piece_was_put_again(node):  # noqa: F811
    data = b"the same bytes, written twice"
    key = chunk_key(data)
    disk_clock = node.store._clock = FakeClock(wall_start=2e9)  # the node's clock, driven here
    client_clock = FakeClock(wall_start=1e9)  # far from the node's: only durations cross the wire
    with node.remote(clock=client_clock) as rd:
        rd.put(key, REPLICA_INDEX, REP, len(data), data)
        decided = client_clock.time()
        for c in (disk_clock, client_clock):
            c.advance(2 * DELETE_DELAY_MARGIN_S)
        rd.put(key, REPLICA_INDEX, REP, len(data), data)  # an idempotent re-put, since the decision
        with pytest.raises(KeyConflict):
            rd.delete(key, REPLICA_INDEX, decided_at=decided)
        assert rd.has(key, REPLICA_INDEX)
        for c in (disk_clock, client_clock):
            c.advance(2 * DELETE_DELAY_MARGIN_S)
        rd.delete(key, REPLICA_INDEX, decided_at=client_clock.time())  # decided after the last put
        assert not rd.has(key, REPLICA_INDEX)
