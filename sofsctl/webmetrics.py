"""The supervisor page's ``/metrics``: the archive's verdict and its exports, for Prometheus.

What only the whole data directory knows, and no node or mount process does: the HEALTH_OK /
WARN / ERR verdict with its reasons, the chunk counts the health sweep found, each volume's
mount state, and each export's state, health probe and restarts (the exports are the exporters
layer's; each export's supervisor is its own process). Rendered from the same document as
``/status.json`` (``sofsctl status --json``), so the three never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

LEVELS = {"HEALTH_OK": 0, "HEALTH_WARN": 1, "HEALTH_ERR": 2}


class StatusCollector:
    """The families of one status document."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def collect(self) -> Iterable[Metric]:
        doc = self.doc
        health = doc["health"]
        yield _gauge("sofs_health_status", "The archive's verdict: 0 HEALTH_OK, 1 HEALTH_WARN, "
                     "2 HEALTH_ERR (sofsctl status's exit code).", LEVELS.get(health["status"], 2))
        reasons = GaugeMetricFamily("sofs_health_reasons", "Reasons for the verdict, by level.",
                                    labels=["level"])
        for level in ("HEALTH_WARN", "HEALTH_ERR"):
            reasons.add_metric([level], sum(r["level"] == level for r in health["reasons"]))
        yield reasons
        chunks = doc.get("chunks")
        if chunks is not None:  # None: the ring was busy with a job, nothing counted
            fam = GaugeMetricFamily("sofs_health_chunks", "Chunks by protection, as the last "
                                    "health sweep counted them.", labels=["state"])
            for state in ("protected", "degraded", "unrecoverable"):
                fam.add_metric([state], chunks[state])
            yield fam
        mounted = GaugeMetricFamily("sofs_volume_mounted", "1 when the volume is mounted and "
                                    "its mount process serves it.", labels=["volume"])
        for v in doc["volumes"]:
            mounted.add_metric([v["name"]], 1.0 if v["state"] == "mounted" else 0.0)
        yield mounted
        up = GaugeMetricFamily("sofs_export_up", "1 when the export's server runs.",
                               labels=["volume", "kind"])
        probe = GaugeMetricFamily("sofs_export_probe_ok", "1 when the export's last health "
                                  "probe (a real NFS or SMB client) succeeded.",
                                  labels=["volume", "kind"])
        restarts = CounterMetricFamily("sofs_export_restarts", "Restarts of the export's "
                                       "server by its supervisor.", labels=["volume", "kind"])
        for e in doc["exports"]:
            labels = [e["volume"], e["kind"]]
            up.add_metric(labels, 1.0 if e["state"] == "running" else 0.0)
            probe.add_metric(labels, 1.0 if e["probe_ok"] else 0.0)
            restarts.add_metric(labels, e["restarts"] or 0)
        yield from (up, probe, restarts)


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def render(doc: dict[str, Any]) -> bytes:
    """The Prometheus text exposition of a status document."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(doc))
    return generate_latest(registry)
