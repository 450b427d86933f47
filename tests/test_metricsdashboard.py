"""The metrics' documents against the code, so they cannot rot: every metric the Grafana
dashboard (scripts/grafana/sofs-dashboard.json) queries is one the code exposes, every
sofs metric the code exposes is listed in sofs(7), METRICS, and the sample Prometheus config
scrapes nodes, mounts and the supervisor page.

The exposed names are found by collecting every collector with all its optional parts
filled (a node with gauges and errors, a mount with a healer mid-sweep, a checkpoint and a
networked RING's membership)."""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

import pytest

from chunkstore.disk.diskmetrics import DiskReport
from chunkstore.disk.records import DiskStats
from chunkstore.healing.healer import SweepSummary
from chunkstore.net.nodemetrics import NodeGauges, NodeMetrics
from chunkstore.ring.localcluster import init_local_cluster
from chunkstore.ring.open import open_ring
from fuse_mount.mountmetrics import MountCollector
from fuse_mount.opmetrics import FuseMetrics
from sofs.fs import Filesystem
from sofs.volume import create_volume
from sofsctl.webmetrics import StatusCollector

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "scripts" / "grafana" / "sofs-dashboard.json"
SCRAPE_CONFIG = ROOT / "scripts" / "prometheus" / "prometheus.yml"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def _node_families():
    m = NodeMetrics("n1")
    m.request("get", 0.001, 30, "ChunkNotFound")
    m.checksum_error("d0")
    stats = DiskStats(1, 1, 1, 0, 1, 10, 5, 1)
    m.watch(lambda: NodeGauges(1, 0, 0, 1, 1, [DiskReport("d0", stats)]))
    return list(m.collect())


def _fuse_families():
    return list(FuseMetrics().collect())


def _mount_families(tmp_path):
    data = tmp_path / "data"
    init_local_cluster(data, disks=6, vnodes=2)
    create_volume(data, "v")
    ring = open_ring(data)
    fs = Filesystem.open_volume(data, "v", ring)
    try:
        report = SweepSummary(1, 1, 0, 0, 0, 1.0, True)
        status = types.SimpleNamespace(state="rebuilding", chunks_done=1, chunks_total=2,
                                       bytes_done=1, epoch=1, sweeps=1, finished=1.0,
                                       last_report=report, eta_s=lambda: 1.0)
        checkpointer = types.SimpleNamespace(last=types.SimpleNamespace(created=1.0, seq=1),
                                             last_error="", overtaken=False)
        healer = types.SimpleNamespace(status=status)
        embedded = list(MountCollector(fs, ring, healer, checkpointer).collect())
        node = types.SimpleNamespace(state="up")
        networked = types.SimpleNamespace(
            repair_log=ring.repair_log, disk_ids=lambda: ["n1.d0"], unavailable_disks=dict,
            membership=types.SimpleNamespace(cmap=types.SimpleNamespace(epoch=2, nodes=[node]),
                                             unreachable_for=dict))
        return embedded + list(MountCollector(fs, networked, healer, checkpointer).collect())
    finally:
        fs.close()
        ring.close()


def _supervisor_families():
    from tests.sofsctl.test_supervise import embedded_doc
    return list(StatusCollector(embedded_doc()).collect())


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    fams = (_node_families() + _fuse_families() + _mount_families(tmp_path_factory.mktemp("m"))
            + _supervisor_families())
    return {f.name: f.type for f in fams if f.name.startswith("sofs_")}


def _exposed(families) -> set[str]:
    return {name + suffix for name, kind in families.items() for suffix in SUFFIXES[kind]}


def _exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append(target["expr"])
    return out


def test_the_dashboard_is_a_grafana_dashboard():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        grid = p["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["targets"], p["title"]
            assert all(t["refId"] and t["expr"] for t in p["targets"]), p["title"]


def test_every_metric_the_dashboard_queries_exists(families):
    exposed = _exposed(families)
    used = {name for expr in _exprs() for name in re.findall(r"\bsofs_[a-z0-9_]+", expr)}
    assert used, "the dashboard queries no sofs metric"
    assert used <= exposed, f"not exposed by the code: {sorted(used - exposed)}"


def test_the_dashboard_shows_what_the_issue_asks_for():
    text = " ".join(_exprs())
    for name in ("sofs_node_requests_total", "sofs_node_request_seconds_bucket",
                 "sofs_node_received_bytes_total", "sofs_node_sent_bytes_total",
                 "sofs_disk_fill_ratio", "sofs_degraded_chunks", "sofs_unrecoverable_chunks",
                 "sofs_rebuild_progress_ratio", "sofs_fuse_requests_in_flight",
                 "sofs_block_cache_hits_total", "sofs_gc_due_chunks",
                 "sofs_fuse_operation_seconds_bucket"):
        assert name in text, name


def test_every_exposed_metric_is_in_the_man_page(families):
    lines = (ROOT / "man" / "sofs.7").read_text().split(".SH METRICS", 1)[1].split("\n.SH ", 1)[0]
    documented = set(re.findall(r"\bsofs_[a-z0-9_]+", lines.replace("\\", "")))
    exposed = {name + ("_total" if kind == "counter" else "") for name, kind in families.items()}
    assert exposed - documented == set(), "exposed but not in sofs(7) METRICS"
    assert documented - exposed == set(), "in sofs(7) METRICS but not exposed"


def test_the_sample_scrape_config_scrapes_nodes_and_mounts():
    text = SCRAPE_CONFIG.read_text()
    jobs = re.findall(r"^\s*- job_name:\s*(\S+)", text, re.M)
    assert jobs == ["sofs-node", "sofs-mount", "sofs-supervise"]
    assert "scrape_configs:" in text and re.search(r"^\s+- \d+\.\d+\.\d+\.\d+:\d+", text, re.M)
