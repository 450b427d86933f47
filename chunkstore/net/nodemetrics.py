"""What a storage node tells Prometheus (``sofs-node --metrics``): a collector over the
requests it served and the state it keeps.

:class:`NodeMetrics` is counted into by the node's server (:mod:`chunkstore.net.server`), only
from its trio thread, so the hot path is plain integer additions plus one histogram
observation per request (prometheus_client's own small lock); at scrape time, from the metrics
server's thread, it copies those counts and asks the node for its gauges (connections, budget,
map epoch) and each disk for its usage (:mod:`chunkstore.disk.diskmetrics`).

Metrics (``op`` is the wire operation, lower case: put, get, delete, has, piece, pieces, stats,
compact, check, root_put, root_get, root_list, ping, map_get, map_put)::

    sofs_node_requests_total{op}            requests answered
    sofs_node_request_seconds{op}           histogram: from the whole request read to the
                                            answer sent
    sofs_node_request_errors_total{op,kind} requests answered with an error, by its class
                                            (ChunkNotFound, DiskFull, StaleMap, WireError,
                                            internal, ...)
    sofs_node_received_bytes_total{op}      request frames read (headers and bodies)
    sofs_node_sent_bytes_total{op}          answer frames sent
    sofs_node_auth_failures_total           connections refused at the handshake
    sofs_node_malformed_frames_total        connections closed for an unusable frame
    sofs_node_connections                   open connections
    sofs_node_requests_in_flight            requests being served
    sofs_node_inflight_bytes                bytes held by the byte budget
    sofs_node_map_epoch                     epoch of the cluster map the node holds
    sofs_node_max_seen_epoch                highest epoch a client's heartbeat carried
    sofs_node_info{node}                    1
    sofs_disk_checksum_errors_total{disk}   pieces that failed their checksum on this disk
    sofs_disk_*{disk}                       usage, see chunkstore.disk.diskmetrics
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chunkstore.disk.diskmetrics import DiskReport, disk_families
from chunkstore.metricsendpoint import LATENCY_BUCKETS
from chunkstore.net.wire.frames import Op

log = logging.getLogger("sofs.metrics")

REQUEST_OPS = tuple(o.name.lower() for o in Op if o not in (Op.NONE, Op.HELLO, Op.AUTH))
_OP_NAMES = {int(o): o.name.lower() for o in Op}


@dataclass(frozen=True)
class NodeGauges:
    """The node's state at scrape time (:meth:`chunkstore.net.server.Node.gauges`)."""

    connections: int
    active_requests: int
    inflight_bytes: int
    map_epoch: int
    max_seen_epoch: int
    disks: list[DiskReport]


def op_name(op: int) -> str:
    """The ``op`` label of a wire operation code."""
    return _OP_NAMES.get(op, "none")


class NodeMetrics(Collector):
    """The counts of one node (see the module docstring). Register it in the process's
    registry; :meth:`watch` gives it the node's gauges once the node exists."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.requests = dict.fromkeys(REQUEST_OPS, 0)
        self.received_bytes = dict.fromkeys(REQUEST_OPS, 0)
        self.sent_bytes = dict.fromkeys(REQUEST_OPS, 0)
        self.errors: dict[tuple[str, str], int] = {}
        self.checksum_errors: dict[str, int] = {}
        self.auth_failures = 0
        self.malformed_frames = 0
        self._latency = Histogram("sofs_node_request_seconds",
                                  "Seconds from a request read to its answer sent.", ["op"],
                                  registry=None, buckets=LATENCY_BUCKETS)
        self._timers = {op: self._latency.labels(op) for op in REQUEST_OPS}
        self._gauges: Callable[[], NodeGauges] | None = None

    def watch(self, gauges: Callable[[], NodeGauges]) -> None:
        """Ask GAUGES for the node's state at every scrape (called from the scrape thread)."""
        self._gauges = gauges

    # -- counting (the node's trio thread) -------------------------------------------------

    def request(self, op: str, seconds: float, received: int, error: str | None = None) -> None:
        """One request answered: its op, duration, request frame bytes, error class if any."""
        if op not in self.requests:
            return  # not a request op (a frame refused before it was decoded)
        self.requests[op] += 1
        self.received_bytes[op] += received
        self._timers[op].observe(seconds)
        if error is not None:
            key = (op, error)
            self.errors[key] = self.errors.get(key, 0) + 1

    def sent(self, op: str, nbytes: int) -> None:
        if op in self.sent_bytes:
            self.sent_bytes[op] += nbytes

    def checksum_error(self, disk: str) -> None:
        self.checksum_errors[disk] = self.checksum_errors.get(disk, 0) + 1

    # -- scraping (the metrics server's thread) ----------------------------------------------

    def collect(self) -> Iterable[Metric]:
        yield _counter("sofs_node_requests", "Requests answered, by wire operation.", "op",
                       self.requests)
        yield from self._latency.collect()
        errors = CounterMetricFamily("sofs_node_request_errors", "Requests answered with an "
                                     "error, by operation and error class.", labels=["op", "kind"])
        for (op, kind), n in sorted(self.errors.copy().items()):
            errors.add_metric([op, kind], n)
        yield errors
        yield _counter("sofs_node_received_bytes", "Bytes of request frames read, by operation.",
                       "op", self.received_bytes)
        yield _counter("sofs_node_sent_bytes", "Bytes of answer frames sent, by operation.", "op",
                       self.sent_bytes)
        yield CounterMetricFamily("sofs_node_auth_failures", "Connections refused at the "
                                  "handshake.", value=self.auth_failures)
        yield CounterMetricFamily("sofs_node_malformed_frames", "Connections closed for an "
                                  "unusable frame.", value=self.malformed_frames)
        yield _counter("sofs_disk_checksum_errors", "Pieces of this disk that failed their "
                       "checksum.", "disk", self.checksum_errors)
        info = GaugeMetricFamily("sofs_node_info", "The node's id.", labels=["node"])
        info.add_metric([self.node_id], 1.0)
        yield info
        if self._gauges is None:
            return
        try:
            g = self._gauges()
        except Exception as e:  # a scrape must not fail: the counters above still count
            log.warning("node gauges unavailable: %s: %s", type(e).__name__, e)
            return
        for name, text, value in (
            ("sofs_node_connections", "Open client connections.", g.connections),
            ("sofs_node_requests_in_flight", "Requests being served.", g.active_requests),
            ("sofs_node_inflight_bytes", "Bytes held by the node's byte budget.", g.inflight_bytes),
            ("sofs_node_map_epoch", "Epoch of the cluster map the node holds.", g.map_epoch),
            ("sofs_node_max_seen_epoch", "Highest map epoch a client's heartbeat carried.",
             g.max_seen_epoch),
        ):
            yield GaugeMetricFamily(name, text, value=float(value))
        yield from disk_families(g.disks)


def _counter(name: str, text: str, label: str, counts: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, text, labels=[label])
    for key, n in sorted(counts.copy().items()):
        family.add_metric([key], n)
    return family
