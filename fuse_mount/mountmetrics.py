"""What a mount tells Prometheus (``sofsctl mount --metrics``): the mount's registry, a
collector that reads the volume's, the healer's and the RING's state at scrape time, and the
endpoint's lifetime inside the mount process (:func:`serve`, :func:`close_at_exit`).

Nothing here counts in the hot path: the FUSE request counts are :mod:`fuse_mount.opmetrics`'
(registered alongside); :class:`MountCollector` only reads what the layers below already
keep, from the metrics server's thread. A section that cannot be read (the RING closing at
unmount, a disk that fails its statvfs) is logged and left out of that scrape, the others
are still served.

Metrics (besides ``sofs_fuse_*`` and the standard ``process_*``)::

    sofs_mount_info{volume,uuid}               1
    sofs_open_files, sofs_dirty_bytes, sofs_cached_inodes
    sofs_block_cache_hits_total, sofs_block_cache_misses_total, sofs_block_cache_capacity_bytes
    sofs_gc_queued_chunks, sofs_gc_due_chunks  the collector's queue, and the part of it due
                                               now (its backlog); counted up to GC_SCAN_LIMIT
    sofs_checkpoint_last_timestamp_seconds, sofs_checkpoint_age_seconds, sofs_checkpoint_seq,
    sofs_checkpoint_failing, sofs_volume_overtaken
    sofs_degraded_chunks                       chunks the repair log says need repair
    sofs_pending_piece_delete_chunks           deleted chunks with pieces left on disks that
                                               could not be reached
    sofs_unrecoverable_chunks                  chunks the last sweep could not rebuild
    sofs_healer_state{state}                   1 for the healer's state (idle, rebuilding,
                                               standby, maintenance), 0 for the others
    sofs_rebuild_chunks_done, sofs_rebuild_chunks_total, sofs_rebuild_progress_ratio,
    sofs_rebuild_bytes_done, sofs_rebuild_eta_seconds, sofs_rebuild_map_epoch,
    sofs_healer_sweeps_total, sofs_last_sweep_{pieces_rebuilt,bytes_rebuilt,failed_chunks,
    seconds,end_timestamp_seconds}
    sofs_ring_disks, sofs_ring_disks_unavailable
    sofs_cluster_map_epoch, sofs_cluster_nodes{state}, sofs_cluster_nodes_unreachable
                                               a networked RING
    sofs_disk_*{disk}                          an embedded RING's disks (a networked RING's
                                               are their nodes')
    sofs_metrics_collect_errors_total          sections left out of a scrape
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.disk.diskmetrics import DiskReport, disk_families
from chunkstore.healing.healer import Healer, RebuildStatus
from chunkstore.metricsendpoint import MetricsEndpoint, MetricsEndpointError, new_registry, serve_metrics
from chunkstore.placement.clustermap import NODE_STATES
from chunkstore.protection.codectimes import EC_TIMES
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.diskusage import disk_usage
from sofs import schema
from sofs.fs import Filesystem
from sofs.metacheckpoint import Checkpointer
from sofs.timestamps import wall_ns

from .opmetrics import FuseMetrics

log = logging.getLogger("sofs.metrics")

GC_SCAN_LIMIT = 100_000  # queue entries (and repair log entries) counted per scrape, at most
HEALER_STATES = ("idle", "rebuilding", "standby", "maintenance")
_GC_PREFIX = schema.gc_key(0, b"")[:1]


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=float(value))


class MountCollector(Collector):
    """The scrape-time state of one mount (see the module docstring). HEALER and
    CHECKPOINTER may be None (their sections are then left out)."""

    def __init__(self, fs: Filesystem, ring: RingStore, healer: Healer | None = None,
                 checkpointer: Checkpointer | None = None, *, clock: Clock = SYSTEM_CLOCK,
                 gc_scan_limit: int = GC_SCAN_LIMIT,
                 host_view: Callable[[], dict] | None = None) -> None:
        self.fs = fs
        self.ring = ring
        self.healer = healer
        # a mount of an embedded ring served by its host: the healer and the repair log are
        # the host's, asked at scrape time (its "healer-metrics" admin op)
        self.host_view = host_view
        self.checkpointer = checkpointer
        self.clock = clock
        self.gc_scan_limit = gc_scan_limit
        self.collect_errors = 0

    def collect(self) -> Iterable[Metric]:
        sections: list[Callable[[], Iterable[Metric]]] = [self._volume, self._gc, self._ring,
                                                          self._codec]
        if self.checkpointer is not None:
            sections.append(self._checkpoint)
        if self.healer is not None:
            sections += [self._repair_log, self._healer]
        elif self.host_view is not None:
            sections.append(self._host_healer)
        for section in sections:
            try:
                families = list(section())
            except Exception as e:
                self.collect_errors += 1
                log.warning("metrics: %s left out of this scrape: %s: %s",
                            section.__name__.strip("_"), type(e).__name__, e)
                continue
            yield from families
        yield CounterMetricFamily("sofs_metrics_collect_errors", "Sections of the mount's "
                                  "metrics left out of a scrape because they could not be read.",
                                  value=self.collect_errors)

    # -- sections --------------------------------------------------------------------------

    def _codec(self) -> Iterable[Metric]:
        for kind, t in EC_TIMES.totals().items():
            what = "payload bytes encoded" if kind == "encode" else "fragment bytes decoded"
            yield CounterMetricFamily(f"sofs_ec_{kind}_seconds", f"Seconds spent in EC {kind}s "
                                      "(ISA-L through pyeclib) by this process.", value=t.seconds)
            yield CounterMetricFamily(f"sofs_ec_{kind}_calls", f"EC {kind} calls.",
                                      value=t.calls)
            yield CounterMetricFamily(f"sofs_ec_{kind}_bytes", f"EC {what}.",
                                      value=t.payload_bytes)

    def _volume(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("sofs_mount_info", "The mounted volume.",
                                 labels=["volume", "uuid"])
        info.add_metric([self.fs.config.name, self.fs.config.uuid], 1.0)
        yield info
        st = self.fs.statistics()
        yield _gauge("sofs_open_files", "Open file handles.", st.open_files)
        yield _gauge("sofs_dirty_bytes", "Bytes written and not yet stored in the RING.",
                     st.dirty_bytes)
        yield _gauge("sofs_cached_inodes", "Inodes held in memory.", st.cached_inodes)
        yield CounterMetricFamily("sofs_block_cache_hits", "Block reads served by the block "
                                  "cache.", value=st.cache_hits)
        yield CounterMetricFamily("sofs_block_cache_misses", "Block reads the block cache "
                                  "could not serve.", value=st.cache_misses)
        yield _gauge("sofs_block_cache_capacity_bytes", "Size of the block cache.",
                     self.fs.cache.capacity)

    def _gc(self) -> Iterable[Metric]:
        queued, due = gc_backlog(self.fs, wall_ns(self.clock), self.gc_scan_limit)
        yield _gauge("sofs_gc_queued_chunks", "Unreferenced chunks queued for deletion "
                     f"(counted up to {self.gc_scan_limit}).", queued)
        yield _gauge("sofs_gc_due_chunks", "Queued chunks whose grace period is over: the "
                     f"collector's backlog (counted up to {self.gc_scan_limit}).", due)

    def _checkpoint(self) -> Iterable[Metric]:
        cp = self.checkpointer
        assert cp is not None
        last = cp.last
        if last is not None:
            yield _gauge("sofs_checkpoint_last_timestamp_seconds", "When the last metadata "
                         "checkpoint of this mount was taken (unix time).", last.created)
            yield _gauge("sofs_checkpoint_age_seconds", "Seconds since that checkpoint.",
                         max(0.0, self.clock.time() - last.created))
            yield _gauge("sofs_checkpoint_seq", "Sequence number of that checkpoint.", last.seq)
        yield _gauge("sofs_checkpoint_failing", "1 when the last checkpoint attempt failed.",
                     1.0 if cp.last_error else 0.0)
        yield _gauge("sofs_volume_overtaken", "1 when another host took the volume over (this "
                     "copy is read-only, its GC stopped).", 1.0 if cp.overtaken else 0.0)

    def _repair_log(self) -> Iterable[Metric]:
        yield from _repair_log_metrics(self.ring.repair_log.counts(self.gc_scan_limit))

    def _healer(self) -> Iterable[Metric]:
        assert self.healer is not None
        yield from _healer_metrics(self.healer.status)

    def _host_healer(self) -> Iterable[Metric]:
        assert self.host_view is not None
        view = self.host_view()
        yield from _repair_log_metrics(view["repair_log"])
        yield from _healer_metrics(RebuildStatus.from_dict(view["status"]))

    def _ring(self) -> Iterable[Metric]:
        ring = self.ring
        down = ring.unavailable_disks()
        yield _gauge("sofs_ring_disks", "Disks of the RING.", len(ring.disk_ids()))
        yield _gauge("sofs_ring_disks_unavailable", "Disks this mount cannot use now.",
                     len(down))
        members = ring.membership
        if members is None:  # an embedded RING: its disks are this process's
            yield from disk_families(DiskReport(u.id, u.stats, None if u.stats else u.error)
                                     for u in disk_usage(ring))
            return
        cmap = members.cmap
        yield _gauge("sofs_cluster_map_epoch", "Epoch of the cluster map this mount holds.",
                     cmap.epoch)
        nodes = GaugeMetricFamily("sofs_cluster_nodes", "Storage nodes by state in the map.",
                                  labels=["state"])
        for state in NODE_STATES:
            nodes.add_metric([state], float(sum(1 for n in cmap.nodes if n.state == state)))
        yield nodes
        yield _gauge("sofs_cluster_nodes_unreachable", "Nodes this mount cannot reach now.",
                     len(members.unreachable_for()))


def gc_backlog(fs: Filesystem, now_ns: int, limit: int) -> tuple[int, int]:
    """(queued, due by NOW_NS) entries of the volume's GC queue, each counted up to LIMIT.
    The queue is ordered by due time, so the due ones come first."""
    queued = due = 0
    for gkey, _ in fs.meta.scan(_GC_PREFIX):
        if queued >= limit:
            break
        queued += 1
        if schema.parse_gc_key(gkey)[0] <= now_ns:
            due += 1
    return queued, due


def progress_ratio(done: int, total: int) -> float:
    return min(1.0, done / total) if total > 0 else 1.0


def _repair_log_metrics(counts: dict[str, int]) -> Iterable[Metric]:
    yield _gauge("sofs_degraded_chunks", "Chunks the repair log names as missing or "
                 "corrupt pieces (repaired by the next sweep).", counts["needs_repair"])
    yield _gauge("sofs_pending_piece_delete_chunks", "Deleted chunks whose pieces are "
                 "left on disks that could not be reached.", counts["deleted"])


def _healer_metrics(st: RebuildStatus) -> Iterable[Metric]:
    state = GaugeMetricFamily("sofs_healer_state", "1 for the healer's current state.",
                              labels=["state"])
    for name in HEALER_STATES:
        state.add_metric([name], 1.0 if st.state == name else 0.0)
    yield state
    yield _gauge("sofs_rebuild_chunks_done", "Chunks the running (or last) sweep has "
                 "checked.", st.chunks_done)
    yield _gauge("sofs_rebuild_chunks_total", "Chunks that sweep has to check.",
                 st.chunks_total)
    yield _gauge("sofs_rebuild_progress_ratio", "chunks_done / chunks_total of that sweep "
                 "(1 when it had nothing to check).", progress_ratio(st.chunks_done,
                                                                     st.chunks_total))
    yield _gauge("sofs_rebuild_bytes_done", "Disk traffic of that sweep (pieces read and "
                 "written).", st.bytes_done)
    yield _gauge("sofs_rebuild_map_epoch", "Cluster map epoch that sweep works for.",
                 st.epoch)
    eta = st.eta_s()
    if eta is not None:
        yield _gauge("sofs_rebuild_eta_seconds", "Estimated seconds left in the running "
                     "sweep.", eta)
    yield CounterMetricFamily("sofs_healer_sweeps", "Sweeps run by this mount's healer.",
                              value=st.sweeps)
    report = st.last_report
    yield _gauge("sofs_unrecoverable_chunks", "Chunks the last finished sweep could not "
                 "rebuild (too few pieces left).", report.unrecoverable if report else 0)
    if report is not None:
        yield _gauge("sofs_last_sweep_pieces_rebuilt", "Pieces the last sweep rebuilt.",
                     report.pieces_rebuilt)
        yield _gauge("sofs_last_sweep_bytes_rebuilt", "Bytes the last sweep rebuilt.",
                     report.bytes_rebuilt)
        yield _gauge("sofs_last_sweep_failed_chunks", "Chunks whose repair failed in the "
                     "last sweep for another reason than too few pieces.", report.errors)
        yield _gauge("sofs_last_sweep_seconds", "Duration of the last sweep.",
                     report.seconds)
        yield _gauge("sofs_last_sweep_end_timestamp_seconds", "When the last sweep ended "
                     "(unix time).", st.finished)


def mount_registry(fs: Filesystem, ring: RingStore, healer: Healer | None,
                   checkpointer: Checkpointer | None, fuse: FuseMetrics | None,
                   host_view: Callable[[], dict] | None = None) -> CollectorRegistry:
    """The mount's own registry: its FUSE counts, its state, the process's metrics."""
    registry = new_registry()
    if fuse is not None:
        registry.register(fuse)
    registry.register(MountCollector(fs, ring, healer, checkpointer, host_view=host_view))
    return registry


def serve(address: tuple[str, int], fs: Filesystem, ring: RingStore, healer: Healer | None,
          checkpointer: Checkpointer | None, fuse: FuseMetrics | None,
          host_view: Callable[[], dict] | None = None) -> MetricsEndpoint:
    """Serve the mount's metrics on ADDRESS (host, port) from a thread. RuntimeError (what
    the mount process reports as a failed mount) when it cannot listen there."""
    try:
        return serve_metrics(mount_registry(fs, ring, healer, checkpointer, fuse, host_view),
                             *address)
    except MetricsEndpointError as e:
        raise RuntimeError(str(e)) from None


async def close_at_exit(endpoint: MetricsEndpoint) -> None:
    """A task of the mount's nursery: keep ENDPOINT until cancelled (the FUSE session ended),
    then stop it, before the volume and the RING are closed."""
    try:
        await trio.sleep_forever()
    finally:
        endpoint.close()  # at most one poll interval (0.5 s) of the server's thread
