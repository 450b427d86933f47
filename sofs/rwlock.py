"""A shared/exclusive lock for threads: many flushes at once, or one garbage-collection pass.

Flushes hold the shared side from storing a chunk until its reference is committed; the garbage
collector holds the exclusive side while it deletes unreferenced chunks, so a chunk can never be
deleted between being (re)written and being referenced. Writers are preferred: once the collector
waits, new flushes wait behind it, so it cannot starve.
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

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive or self._waiting_exclusive:
                self._cond.wait()
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
            while self._exclusive or self._shared:
                self._cond.wait()
            self._waiting_exclusive -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()
