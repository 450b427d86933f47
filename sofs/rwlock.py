"""A shared/exclusive lock for threads: many holders of the shared side, or one exclusive one.

Used twice in the SOFS layer. Volume-wide: flushes hold the shared side from storing a chunk
until its reference is committed, and the garbage collector holds the exclusive side while it
deletes unreferenced chunks, so a chunk is never deleted between being (re)written and being
referenced. Per file: background flushes of full blocks share it, close/fsync/truncate take it
exclusively to see every earlier flush committed. Exclusive waiters are preferred, so they cannot
starve.
"""

import contextlib
import threading
from collections.abc import Iterator


class SharedExclusiveLock:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0
        self._waiting_shared = 0
        # shared waiters let in when an exclusive holder leaves, before the next one enters:
        # an exclusive user that re-acquires in a loop cannot starve them either
        self._handoff = 0

    def idle(self) -> bool:
        with self._cond:
            return not (self._shared or self._exclusive or self._waiting_exclusive
                        or self._waiting_shared)

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._waiting_shared += 1
            while self._exclusive or (self._waiting_exclusive and not self._handoff):
                self._cond.wait()
            self._waiting_shared -= 1
            if self._handoff:
                self._handoff -= 1
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                if not self._shared:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting_exclusive += 1
            while self._exclusive or self._shared or self._handoff:
                self._cond.wait()
            self._waiting_exclusive -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._handoff = self._waiting_shared
                self._cond.notify_all()
