"""Wall-clock nanoseconds from a :class:`chunkstore.clock.Clock`, for the timestamps the file
layer stores: inode times, collector queue due times.

The system clock is read with ``time.time_ns()`` (full nanosecond precision, as POSIX file
times have had here from the start); any other clock (a test's ``FakeClock``, a mount's
``SteppedWallClock``, which is a SystemClock with another ``time()``) through its ``time()``.
"""

from __future__ import annotations

import time

from chunkstore.clock import Clock, SystemClock


def wall_ns(clock: Clock) -> int:
    """The clock's wall time in nanoseconds since the epoch."""
    if type(clock) is SystemClock:  # not a subclass: SteppedWallClock moves time()
        return time.time_ns()
    return int(clock.time() * 1e9)
