"""FUSE request metrics of a mount: :func:`measured` wraps each handler of
:class:`fuse_mount.operations.SofsOperations` and counts into its :class:`FuseMetrics`.

Every handler runs on the mount's trio thread, so the counts are plain integers (no lock);
only the latency histogram is prometheus_client's (a small lock per observation). A mount
without ``--metrics`` has ``metrics = None`` and :func:`measured` costs one attribute test.
:meth:`FuseMetrics.collect` runs in the metrics server's thread and copies the counts.

Metrics (``op`` is the handler's name: lookup, getattr, read, write, flush, release, ...)::

    sofs_fuse_operations_total{op}        requests answered (successfully or not)
    sofs_fuse_operation_seconds{op}       histogram: time in the handler; the sum over ops,
                                          per second, is the mean number of requests in flight
    sofs_fuse_errors_total{op,errno}      requests answered with an error (ENOENT, EIO, ...)
    sofs_fuse_requests_in_flight          requests the mount is serving now (its queue depth:
                                          what the kernel handed over and awaits an answer for)
    sofs_fuse_read_bytes_total            bytes returned by read
    sofs_fuse_written_bytes_total         bytes accepted by write

Errors are seen as they leave :func:`fuse_mount.errno_map.fuse_errors` (the errno mapping
stays there): :func:`measured` must be the outer decorator.
"""

from __future__ import annotations

import errno
import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import pyfuse3
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chunkstore.metricsendpoint import LATENCY_BUCKETS

T = TypeVar("T")

# the handlers that are measured (those that answer through fuse_errors)
FUSE_OPS = ("lookup", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink", "rmdir",
            "symlink", "rename", "link", "opendir", "readdir", "fsyncdir", "statfs", "access",
            "getxattr", "setxattr", "listxattr", "removexattr", "open", "create", "read",
            "write", "flush", "fsync", "fallocate", "release")


class FuseMetrics(Collector):
    """The FUSE counts of one mount (see the module docstring)."""

    def __init__(self) -> None:
        self.calls = dict.fromkeys(FUSE_OPS, 0)
        self.errors: dict[tuple[str, str], int] = {}
        self.in_flight = 0
        self.read_bytes = 0
        self.written_bytes = 0
        self._latency = Histogram("sofs_fuse_operation_seconds", "Seconds a FUSE request spent "
                                  "in its handler.", ["op"], registry=None, buckets=LATENCY_BUCKETS)
        self._timers = {op: self._latency.labels(op) for op in FUSE_OPS}

    def done(self, op: str, seconds: float, result: Any = None, errno_value: int | None = None
             ) -> None:
        """One request of OP answered after SECONDS: with RESULT, or with ERRNO_VALUE."""
        self.calls[op] = self.calls.get(op, 0) + 1
        timer = self._timers.get(op)
        if timer is not None:
            timer.observe(seconds)
        if errno_value is not None:
            key = (op, errno.errorcode.get(errno_value, str(errno_value)))
            self.errors[key] = self.errors.get(key, 0) + 1
        elif op == "read":
            self.read_bytes += len(result)
        elif op == "write":
            self.written_bytes += result

    def collect(self) -> Iterable[Metric]:
        calls = CounterMetricFamily("sofs_fuse_operations", "FUSE requests answered, by "
                                    "operation.", labels=["op"])
        for op, n in sorted(self.calls.copy().items()):
            calls.add_metric([op], n)
        yield calls
        yield from self._latency.collect()
        errors = CounterMetricFamily("sofs_fuse_errors", "FUSE requests answered with an "
                                     "error, by operation and errno.", labels=["op", "errno"])
        for (op, name), n in sorted(self.errors.copy().items()):
            errors.add_metric([op, name], n)
        yield errors
        yield GaugeMetricFamily("sofs_fuse_requests_in_flight", "FUSE requests being served "
                                "(the mount's queue depth).", value=self.in_flight)
        yield CounterMetricFamily("sofs_fuse_read_bytes", "Bytes returned by FUSE reads.",
                                  value=self.read_bytes)
        yield CounterMetricFamily("sofs_fuse_written_bytes", "Bytes accepted by FUSE writes.",
                                  value=self.written_bytes)


def measured(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Decorate a handler of an object with a ``metrics`` attribute (a FuseMetrics or None):
    count and time each request (the handler's name is the ``op``)."""
    op = fn.__name__

    @functools.wraps(fn)
    async def handler(self: Any, *args: Any, **kwargs: Any) -> T:
        m: FuseMetrics | None = self.metrics
        if m is None:
            return await fn(self, *args, **kwargs)
        m.in_flight += 1
        started = time.perf_counter()
        try:
            result = await fn(self, *args, **kwargs)
        except pyfuse3.FUSEError as e:
            m.in_flight -= 1
            m.done(op, time.perf_counter() - started, errno_value=e.errno)
            raise
        except BaseException:  # cancelled (the session ends): not an answer
            m.in_flight -= 1
            raise
        m.in_flight -= 1
        m.done(op, time.perf_counter() - started, result)
        return result

    return handler
