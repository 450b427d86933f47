"""The node's byte budget: a bound on request and answer data held in memory at once.

:class:`ByteBudget` is a FIFO-fair weighted semaphore over bytes (``limits.max_inflight_bytes``);
a :class:`Reservation` is what one request holds of it. The node reserves a request's body
length before reading the body, and a GET's piece length before the disk reads the piece;
every reservation is given back once the answer is sent. Rule for callers: never wait for the
budget while holding part of it (:meth:`Reservation.resize` gives back first), or two waiters
could each hold what the other needs.

Both are trio objects: use them from the event loop (or through ``trio.from_thread``).
"""

from __future__ import annotations

import trio


class ByteBudget:
    """A FIFO-fair weighted semaphore over bytes held in memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._turn = trio.Lock()  # trio locks are fair: the head waiter goes first
        self._wake = trio.Event()

    async def acquire(self, n: int) -> int:
        """Reserve ``min(n, limit)`` bytes (waiting in line); returns the amount reserved.
        Callers must not wait here while holding a reservation (that could deadlock)."""
        n = min(n, self.limit)
        async with self._turn:
            while self.used + n > self.limit:
                self._wake = trio.Event()
                await self._wake.wait()
            self.used += n
        return n

    def release(self, n: int) -> None:
        """Give back exactly what :meth:`acquire` returned."""
        self.used -= n
        self._wake.set()


class Reservation:
    """The bytes of a :class:`ByteBudget` one request holds (``bytes``; 0 to start with)."""

    __slots__ = ("budget", "bytes")

    def __init__(self, budget: ByteBudget) -> None:
        self.budget = budget
        self.bytes = 0

    async def resize(self, n: int) -> None:
        """Hold ``min(n, limit)`` bytes instead of what is held now: gives that back first,
        then waits in line, so it never waits while holding any."""
        self.release()
        self.bytes = await self.budget.acquire(n)

    def release(self) -> None:
        """Give back everything held (idempotent)."""
        if self.bytes:
            n, self.bytes = self.bytes, 0
            self.budget.release(n)
