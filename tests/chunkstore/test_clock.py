"""The injectable clock: FakeClock moves only when told, releases sleepers and waiters on
advance, and a wall-clock step leaves durations alone."""

import threading
import time

import pytest

from chunkstore.clock import SYSTEM_CLOCK, FakeClock, SteppedWallClock, clock_from_env


def _in_thread(fn):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("result", fn()), daemon=True)
    t.start()
    return t, out


def test_sleep_is_released_by_advance_only():
    clock = FakeClock()
    t, _ = _in_thread(lambda: clock.sleep(10))
    assert clock.wait_for_sleepers(1)
    clock.advance(9.5)
    t.join(0.2)
    assert t.is_alive()  # 9.5 of 10 s: still asleep
    clock.advance(0.5)
    t.join(5)
    assert not t.is_alive()


def test_wait_returns_false_on_timeout_and_true_when_the_event_is_set():
    clock = FakeClock()
    event = threading.Event()
    t, out = _in_thread(lambda: clock.wait(event, 30))
    assert clock.wait_for_sleepers(1)
    clock.advance(30)
    t.join(5)
    assert out == {"result": False}

    t, out = _in_thread(lambda: clock.wait(event, 30))
    assert clock.wait_for_sleepers(1)
    event.set()  # no time passes
    t.join(5)
    assert out == {"result": True}
    assert clock.wait(event, 30) is True  # already set: at once


def test_step_wall_moves_the_wall_clock_alone():
    clock = FakeClock(start=50.0, wall_start=1_000_000.0)
    assert (clock.monotonic(), clock.time()) == (50.0, 1_000_000.0)
    clock.advance(10)
    assert (clock.monotonic(), clock.time()) == (60.0, 1_000_010.0)
    clock.step_wall(1200)
    clock.step_wall(-7200)
    assert (clock.monotonic(), clock.time()) == (60.0, 1_000_010.0 - 6000)


def test_a_wall_step_releases_no_sleeper():
    clock = FakeClock()
    t, _ = _in_thread(lambda: clock.sleep(5))
    assert clock.wait_for_sleepers(1)
    clock.step_wall(3600)
    t.join(0.2)
    assert t.is_alive()
    clock.advance(5)
    t.join(5)
    assert not t.is_alive()


def test_time_does_not_go_back():
    with pytest.raises(ValueError):
        FakeClock().advance(-1)


def test_wait_for_sleepers_times_out():
    assert FakeClock().wait_for_sleepers(1, timeout=0.05) is False


def test_the_system_clock():
    event = threading.Event()
    event.set()
    assert SYSTEM_CLOCK.wait(event, 60) is True
    assert SYSTEM_CLOCK.wait(threading.Event(), 0) is False
    a = SYSTEM_CLOCK.monotonic()
    SYSTEM_CLOCK.sleep(0.01)
    assert SYSTEM_CLOCK.monotonic() > a
    assert SYSTEM_CLOCK.time() > 1_600_000_000


def test_a_stepped_wall_clock_reads_its_step_from_the_file(tmp_path):
    step = tmp_path / "step"
    assert clock_from_env({}) is SYSTEM_CLOCK
    clock = clock_from_env({"SOFS_WALL_STEP_FILE": str(step)})
    assert isinstance(clock, SteppedWallClock)
    assert abs(clock.time() - time.time()) < 5  # no file yet: no step
    step.write_text("86400\n")
    assert 86395 < clock.time() - time.time() < 86405
    step.write_text("not a number")
    assert abs(clock.time() - time.time()) < 5
    before = clock.monotonic()
    step.write_text("-3600")
    assert clock.time() - time.time() < -3595 and clock.monotonic() >= before
