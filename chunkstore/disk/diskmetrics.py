"""The ``sofs_disk_*`` gauges: each disk's usage report (:class:`DiskStats`) as Prometheus
metric families, made at scrape time.

Shared by the storage node (its DiskStores, :mod:`chunkstore.net.nodemetrics`) and the mount
of an embedded RING (its local disks, :mod:`fuse_mount.mountmetrics`), so one dashboard panel
shows the disks of either. Every family has one label, ``disk`` (the disk id); a disk that
cannot report (unavailable, failing) has ``sofs_disk_up 0`` and no usage samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric

from .records import DiskStats

# name suffix -> (help, the DiskStats field it shows)
_USAGE = {
    "used_bytes": ("Bytes of the disk's containers (live and dead records).", "used_bytes"),
    "live_bytes": ("Bytes of the pieces the disk's index holds.", "live_bytes"),
    "dead_bytes": ("Container bytes no live piece uses (reclaimed by compaction).", "dead_bytes"),
    "pieces": ("Pieces (chunk copies and fragments) the disk holds.", "live_pieces"),
    "containers": ("Container files of the disk.", "containers"),
    "fs_size_bytes": ("Size of the file system the disk directory is on.", "fs_total_bytes"),
    "fs_free_bytes": ("Free bytes of that file system (for unprivileged users).", "fs_free_bytes"),
}
DISK_METRICS = ("sofs_disk_up", "sofs_disk_fill_ratio", *(f"sofs_disk_{k}" for k in _USAGE))


@dataclass(frozen=True)
class DiskReport:
    """One disk at scrape time: its usage, or why there is none (``stats`` None)."""

    disk: str
    stats: DiskStats | None
    problem: str | None = None  # a disk that answers but failed a recent request

    @property
    def up(self) -> bool:
        return self.stats is not None and self.problem is None


def fill_ratio(stats: DiskStats) -> float:
    """How full the disk's file system is, 0 to 1 (what a ``DiskFull`` follows)."""
    if stats.fs_total_bytes <= 0:
        return 0.0
    return 1.0 - stats.fs_free_bytes / stats.fs_total_bytes


def disk_families(reports: Iterable[DiskReport]) -> list[Metric]:
    """The ``sofs_disk_*`` families of REPORTS (see the module docstring)."""
    up = GaugeMetricFamily("sofs_disk_up", "1 when the disk answers and its last request "
                           "succeeded, else 0.", labels=["disk"])
    fill = GaugeMetricFamily("sofs_disk_fill_ratio", "Used share of the disk's file system, "
                             "0 to 1.", labels=["disk"])
    usage = {k: GaugeMetricFamily(f"sofs_disk_{k}", text, labels=["disk"])
             for k, (text, _) in _USAGE.items()}
    for r in reports:
        up.add_metric([r.disk], 1.0 if r.up else 0.0)
        if r.stats is None:
            continue
        fill.add_metric([r.disk], fill_ratio(r.stats))
        for k, (_, field) in _USAGE.items():
            usage[k].add_metric([r.disk], float(getattr(r.stats, field)))
    return [up, fill, *usage.values()]
