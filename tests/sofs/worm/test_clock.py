"""The compliance clock: initialised once, monotonic, catching up with the system clock by at
most 7 days a year, never backwards across restarts and crashes, and persisted in the RING.
Time is a FakeClock: the tests move the wall clock and elapsed time apart."""

from __future__ import annotations

import uuid

import pytest

from chunkstore import errors as cerr
from chunkstore.clock import FakeClock
from chunkstore.ring.memory import MemoryChunkStore
from sofs.errors import DataUnavailable
from sofs.worm.clock import CATCH_UP_RATE, NS, ComplianceClock, clock_record_id

DAY = 86400.0
VOL = str(uuid.uuid4())


@pytest.fixture
def store():
    s = MemoryChunkStore()
    yield s
    s.close()


def test_initialised_once_from_the_system_clock_then_kept_in_the_ring(store):
    clock = FakeClock()
    first = ComplianceClock.open(store, VOL, clock=clock)
    assert first.now() == pytest.approx(clock.time())
    assert store.get_root(clock_record_id(VOL)) is not None
    clock.step_wall(-30 * DAY)  # the host's clock set back: a reopen does not start over
    again = ComplianceClock.open(store, VOL, clock=clock)
    assert again.record.initialised_ns == first.record.initialised_ns
    assert again.now() >= first.now()
    other = ComplianceClock.open(store, str(uuid.uuid4()), clock=clock)
    assert other.record.initialised_ns != first.record.initialised_ns  # one clock per volume


def test_a_wall_clock_moved_forward_is_caught_up_with_at_7_days_a_year_at_most(store):
    clock = FakeClock()
    c = ComplianceClock.open(store, VOL, clock=clock)
    start = c.now()
    clock.step_wall(365 * DAY)  # someone sets the host a year ahead to expire everything
    assert c.now() == pytest.approx(start, abs=1)  # nothing moves at once
    for _ in range(10):
        clock.advance(DAY)
        c.now()
    elapsed = 10 * DAY
    assert c.now() == pytest.approx(start + elapsed * (1 + CATCH_UP_RATE), rel=1e-9)
    assert c.now() < clock.time() - 300 * DAY  # nowhere near the host's wall clock


def test_a_wall_clock_moved_back_never_moves_it_back(store):
    clock = FakeClock()
    c = ComplianceClock.open(store, VOL, clock=clock)
    clock.advance(100)
    before = c.now()
    clock.step_wall(-10 * DAY)
    clock.advance(5)
    assert c.now() == pytest.approx(before + 5)


def test_a_clock_behind_the_system_catches_up_and_then_follows_it(store):
    clock = FakeClock()
    c = ComplianceClock.open(store, VOL, clock=clock)
    clock.step_wall(3600)  # an hour behind (time spent unmounted looks like this)
    hours = 3600 / (CATCH_UP_RATE * 3600)  # hours of running to make up one hour
    for _ in range(int(hours) + 2):
        clock.advance(3600)
        c.now()
    assert c.now() == pytest.approx(clock.time(), abs=1)  # caught up, not ahead
    clock.advance(60)
    assert c.now() == pytest.approx(clock.time(), abs=1)


def test_a_crash_never_shows_an_earlier_time_and_restarts_do_not_push_it(store):
    clock = FakeClock()
    c = ComplianceClock.open(store, VOL, clock=clock, lease_s=60, margin_s=15)
    shown = []
    for _ in range(200):  # 200 s of readings: the lease is extended on the way
        clock.advance(1)
        shown.append(c.now_ns())
    assert shown == sorted(shown)
    lease = c.record.lease_ns
    # a crash: nothing written since the last lease; whatever was shown, a restart shows no less
    for _ in range(50):  # and restarting again and again moves nothing
        again = ComplianceClock.open(store, VOL, clock=clock, lease_s=60, margin_s=15)
        assert max(shown) <= again.now_ns() <= lease
    # once real time passes the lease, it runs on from its last record (time lost, not gained)
    clock.advance(120)
    assert again.now_ns() >= lease
    assert again.now_ns() <= max(shown) + int(120 * NS * (1 + CATCH_UP_RATE)) + 60 * NS


def test_a_clean_unmount_records_where_it_is(store):
    clock = FakeClock()
    c = ComplianceClock.open(store, VOL, clock=clock, lease_s=60, margin_s=15)
    clock.advance(30)
    t = c.now_ns()
    assert c.persist()
    again = ComplianceClock.open(store, VOL, clock=clock, lease_s=60, margin_s=15)
    assert again.record.at_ns == pytest.approx(t, abs=NS)
    assert again.now_ns() >= t


class FlakyRoots(MemoryChunkStore):
    """A RING whose root-record writes fail while ``down``."""

    down = False

    def put_root(self, volume_id: bytes, seq: int, body: bytes) -> int:
        if self.down:
            raise cerr.NotEnoughDisks("2 of 5 disks answered, quorum 3")
        return super().put_root(volume_id, seq, body)


def test_a_ring_that_cannot_take_the_record_stops_the_clock_at_its_lease():
    store = FlakyRoots()
    clock = FakeClock()
    c = ComplianceClock.open(store, VOL, clock=clock, lease_s=60, margin_s=15)
    lease = c.record.lease_ns
    store.down = True
    for _ in range(10):
        clock.advance(30)
        assert c.now_ns() <= lease  # nothing can expire past what the RING knows
    store.down = False
    clock.advance(1)
    assert c.now_ns() > lease  # the record is written again, and the clock goes on
    assert c.record.lease_ns > lease
    store.close()


def test_a_damaged_or_foreign_record_is_refused(store):
    clock = FakeClock()
    store.put_root(clock_record_id(VOL), 1, b"{not json")
    with pytest.raises(DataUnavailable, match="damaged"):
        ComplianceClock.open(store, VOL, clock=clock)
    other = str(uuid.uuid4())
    body = ComplianceClock.open(store, other, clock=clock).record.to_body()
    store.put_root(clock_record_id(VOL), 2, body)  # another volume's record under this id
    with pytest.raises(DataUnavailable, match="belongs to volume"):
        ComplianceClock.open(store, VOL, clock=clock)


def test_a_ring_that_cannot_be_read_is_an_error_not_a_new_clock(store):
    class Unreadable(MemoryChunkStore):
        def get_root(self, volume_id):
            raise cerr.NotEnoughDisks("no disk answers")

    s = Unreadable()
    with pytest.raises(DataUnavailable, match="cannot read the compliance clock"):
        ComplianceClock.open(s, VOL, clock=FakeClock())
    s.close()
