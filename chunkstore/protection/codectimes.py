"""How long this process spent erasure-coding: the totals behind the ``sofs_ec_*`` metrics.

:class:`~chunkstore.protection.policy.ECPolicy` adds every encode and decode it runs (calls,
bytes of payload, seconds on a monotonic high-resolution clock) to the process-wide
:data:`EC_TIMES`; a mount's or a node's metrics collector reads it at scrape time. Adding is
a few nanoseconds under a lock taken only for the addition, next to pyeclib work of microseconds
to milliseconds per chunk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class CodecTotals:
    calls: int
    payload_bytes: int
    seconds: float


class CodecTimes:
    """Totals of one kind of codec work ("encode", "decode"). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, list[float]] = {"encode": [0, 0, 0.0], "decode": [0, 0, 0.0]}

    @contextmanager
    def timed(self, kind: str, payload_bytes: int) -> Iterator[None]:
        """Time the block it wraps as one ``kind`` call over ``payload_bytes`` (failed calls
        count too: their time was spent)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - t0
            with self._lock:
                t = self._totals[kind]
                t[0] += 1
                t[1] += payload_bytes
                t[2] += spent

    def totals(self) -> dict[str, CodecTotals]:
        with self._lock:
            return {k: CodecTotals(int(v[0]), int(v[1]), v[2]) for k, v in self._totals.items()}


EC_TIMES = CodecTimes()
