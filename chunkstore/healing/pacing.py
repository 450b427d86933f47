"""Pacing of a repair sweep (chunkstore.healing.sweep): its disk traffic kept under a rate."""

from __future__ import annotations

import threading
from typing import Callable

from chunkstore.clock import Clock


class Throttle:
    """Keeps a sweep's disk traffic (pieces read + written) under ``rate`` bytes/s, on the
    clock's monotonic time; a set ``cancel`` ends the wait."""

    def __init__(self, rate: float | Callable[[], float | None] | None, clock: Clock,
                 cancel: threading.Event) -> None:
        self.rate_of = rate if callable(rate) else (lambda: rate)
        self.clock = clock
        self.cancel = cancel
        self.start = clock.monotonic()

    def pace(self, done_bytes: int) -> None:
        rate = self.rate_of()  # read each time: the cap may change while the sweep runs
        if not rate:
            return
        ahead = done_bytes / rate - (self.clock.monotonic() - self.start)
        if ahead > 0:
            self.clock.wait(self.cancel, min(ahead, 5.0))
