"""Fencing enforced by the storage node (issue 13): FENCE on the wire, and a real node process
that refuses the writes and deletes of a connection whose lease token was overtaken, keeps the
highest token per volume across a restart, and leaves other volumes and reads alone."""

from __future__ import annotations

import json
import threading

import pytest

from chunkstore.errors import ConfigError, StaleEpoch, WireError
from chunkstore.net import wire
from chunkstore.net.fences import FENCES_FILE, FenceBook
from chunkstore.net.wire import Kind, Op
from chunkstore.placement.keys import chunk_key
from chunkstore.protection.policy import REPLICA_INDEX

from .test_node import REP, make_node  # noqa: F401 - the fixture

VOL = bytes(range(16))
OTHER = bytes(range(16, 32))


def test_fence_round_trips_and_bounds():
    req = wire.Fence(VOL, 7)
    f = wire.decode_frame(wire.join(wire.encode_request(3, req)))
    assert (f.kind, f.op, f.body) == (Kind.REQUEST, Op.FENCE, req)
    f = wire.decode_frame(wire.join(wire.encode_response(3, Op.FENCE, wire.FenceHeld(9))))
    assert f.body == wire.FenceHeld(9)
    for bad in (wire.Fence(VOL, 0), wire.Fence(VOL[:15], 1), wire.Fence(VOL, 2**63)):
        with pytest.raises(WireError):
            wire.encode_request(3, bad)
    assert wire.ERROR_CODES[17] is StaleEpoch


def test_the_book_is_kept_and_a_damaged_one_refuses_to_start(tmp_path):
    path = str(tmp_path / FENCES_FILE)
    book = FenceBook(path)
    assert book.raise_to(VOL, 5) == 5 and book.raise_to(VOL, 3) == 5
    assert FenceBook(path).held(VOL) == 5 and FenceBook(path).held(OTHER) == 0
    (tmp_path / FENCES_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="cannot know which connectors are fenced"):
        FenceBook(path)


def _put(rd, data: bytes) -> bytes:
    key = chunk_key(data)
    rd.put(key, REPLICA_INDEX, REP, len(data), data)
    return key


def test_a_newer_token_waits_for_the_writes_checked_under_the_older(tmp_path):
    book = FenceBook(str(tmp_path / FENCES_FILE))
    vol = bytes(range(16))
    book.raise_to(vol, 5)
    in_write, raised = threading.Event(), threading.Event()
    finish = threading.Event()

    def old_writer() -> None:  # a root-record write of token 5, checked and landing
        with book.holding(vol, 5, refuse=StaleEpoch):
            in_write.set()
            finish.wait(10)

    t = threading.Thread(target=old_writer)
    t.start()
    in_write.wait(10)
    r = threading.Thread(target=lambda: (book.raise_to(vol, 6), raised.set()))
    r.start()
    assert not raised.wait(0.3)  # the FENCE answer waits for the write in flight
    finish.set()
    t.join(10)
    r.join(10)
    assert raised.is_set() and book.held(vol) == 6
    with pytest.raises(StaleEpoch):
        with book.holding(vol, 5, refuse=StaleEpoch):
            pass  # never reached: token 5 writes nothing any more
    with book.holding(vol, 6, refuse=StaleEpoch):
        pass


def test_an_overtaken_connector_can_change_nothing_even_after_a_restart(make_node):  # noqa: F811
    node = make_node()
    old = node.remote(fence=(VOL, 5))
    kept = _put(old, b"written while the lease was ours")
    assert old.put_root(VOL, 1, b"root 1") == 1

    new = node.remote(fence=(VOL, 7))  # the takeover declares a higher token
    assert new.set_fence(VOL, 7) == 7
    _put(new, b"the new owner writes")

    refused = 0
    with pytest.raises(StaleEpoch, match="token 7"):
        _put(old, b"a late write of the old owner")
    refused += 1
    with pytest.raises(StaleEpoch):
        old.delete(kept, REPLICA_INDEX)
    refused += 1
    with pytest.raises(StaleEpoch):
        old.put_root(VOL, 2, b"root 2 from the old owner")
    refused += 1
    assert refused == 3
    assert not new.has(chunk_key(b"a late write of the old owner"), REPLICA_INDEX)
    assert new.has(kept, REPLICA_INDEX) and new.get_root(VOL).seq == 1
    assert old.get(kept, REPLICA_INDEX) == b"written while the lease was ours"  # reads go on
    assert old.set_fence(VOL, 5) == 7  # a lower declaration learns the higher token

    other = node.remote(fence=(OTHER, 1))  # another volume's owner is not concerned
    _put(other, b"another volume")

    node.stop()
    assert json.loads((node.root / FENCES_FILE).read_text())["fences"][VOL.hex()] == 7
    node.start()
    late = node.remote(fence=(VOL, 5))
    assert late.ping(0).node_id == "n1"
    assert late.node_fence == 7
    with pytest.raises(StaleEpoch):
        _put(late, b"the old owner, after the node restarted")
    _put(node.remote(fence=(VOL, 7)), b"the new owner, after the restart")
