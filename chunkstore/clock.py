"""The clock every timer of sofs reads: a protocol, the system clock, and a fake for tests.

Durations (how long a node has been unreachable, when the next sweep is due, a retry's
back-off, a GC grace period measured in this process) are measured on ``monotonic()``, which
never jumps; ``time()`` is the wall clock, used only for timestamps that are stored or shown
to people. Code on threads takes a :class:`Clock` (default :data:`SYSTEM_CLOCK`) and calls
``clock.sleep``/``clock.wait`` instead of ``time.sleep``/``Event.wait``; tests pass a
:class:`FakeClock` and move time with :meth:`FakeClock.advance` instead of sleeping. Code on
the trio side uses trio's own clock (``trio.current_time``, ``trio.sleep``), which tests
replace with ``trio.testing.MockClock``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What a timer needs to know about time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back or jumps (for durations)."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for stored and displayed timestamps)."""

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds`` of this clock's time."""

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Block until ``event`` is set or ``seconds`` of this clock's time have passed;
        True if the event is set (like ``Event.wait``)."""


class SystemClock:
    """The machine's clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds))


SYSTEM_CLOCK: Clock = SystemClock()


class FakeClock:
    """A clock that moves only when a test calls :meth:`advance`.

    ``sleep`` and ``wait`` block the calling thread until enough fake time has passed (or the
    event is set), so a worker thread's timer fires exactly when the test advances past it.
    ``time()`` starts at ``wall_start`` and moves with ``monotonic()``; :meth:`step_wall`
    jumps the wall clock alone (an NTP step), which must not change any duration.
    :meth:`wait_for_sleepers` lets a test wait (in real time) until its worker threads are
    blocked on the clock, so that an advance is not lost on a thread that has not started
    its timer yet.
    """

    def __init__(self, start: float = 1000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._cond = threading.Condition()
        self._sleepers = 0

    def monotonic(self) -> float:
        with self._cond:
            return self._now

    def time(self) -> float:
        with self._cond:
            return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every sleeper whose time has come."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._cond:
            self._now += seconds
            self._cond.notify_all()

    def step_wall(self, seconds: float) -> None:
        """Jump the wall clock alone by ``seconds`` (either way); durations do not change."""
        with self._cond:
            self._wall_offset += seconds
            self._cond.notify_all()

    def sleep(self, seconds: float) -> None:
        with self._cond:
            deadline = self._now + seconds
            self._sleepers += 1
            self._cond.notify_all()
            try:
                while self._now < deadline:
                    self._cond.wait(0.05)
            finally:
                self._sleepers -= 1

    def wait(self, event: threading.Event, seconds: float) -> bool:
        with self._cond:
            deadline = self._now + seconds
            self._sleepers += 1
            self._cond.notify_all()
            try:
                while not event.is_set() and self._now < deadline:
                    self._cond.wait(0.05)  # Event.set does not notify us: look again soon
            finally:
                self._sleepers -= 1
        return event.is_set()

    def wait_for_sleepers(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Block (real time, at most ``timeout`` s) until ``count`` threads are in
        :meth:`sleep` or :meth:`wait`; True if they are."""
        with self._cond:
            return self._cond.wait_for(lambda: self._sleepers >= count, timeout)


WALL_STEP_ENV = "SOFS_WALL_STEP_FILE"


class SteppedWallClock(SystemClock):
    """The machine's clocks, with the wall clock moved by the number of seconds written in a
    file (0 while the file is missing or unreadable); durations are untouched.

    How a test steps the wall clock of a real mount process, as an NTP step or an operator's
    ``date -s`` would, without changing the machine's clock for everything else: the process
    is started with ``SOFS_WALL_STEP_FILE`` naming the file (:func:`clock_from_env`), and the
    test writes a new step there. Nothing else sets it."""

    def __init__(self, step_file: str) -> None:
        self._step_file = step_file

    def time(self) -> float:
        try:
            with open(self._step_file, encoding="ascii") as f:
                step = float(f.read().strip() or 0)
        except (OSError, ValueError):
            step = 0.0
        return time.time() + step


def clock_from_env(environ: dict[str, str] | None = None) -> Clock:
    """:data:`SYSTEM_CLOCK`, or a :class:`SteppedWallClock` when ``SOFS_WALL_STEP_FILE`` is
    set in the environment (tests of real processes)."""
    step_file = (os.environ if environ is None else environ).get(WALL_STEP_ENV)
    return SteppedWallClock(step_file) if step_file else SYSTEM_CLOCK
