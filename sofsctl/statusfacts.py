"""What ``sofsctl status`` (text or ``--json``) and the supervisor page show: the facts gathered
from the layers (the ring's health count, the disk directories, the mount run-states, the
mount processes' checkpoint figures, the exports, a networked cluster's nodes) and the verdict
they add up to (:func:`gather`).

The levels, the ring's reasons and how they combine are
:mod:`chunkstore.healing.verdict`'s. The few reasons about mounts, checkpoints and exports are
built here (:func:`dead_mount_reason` and the like, pure). :meth:`StatusFacts.to_json` is the
``status --json`` document: its schema (``format`` 1) is documented in sofsctl(8) and only
grows (new keys) between releases.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chunkstore import errors as cerr
from chunkstore.healing import verdict as hv
from chunkstore.healing.maintenance import read_maintenance
from chunkstore.healing.sweep import HealthReport
from chunkstore.healing.sweep import health as run_health
from chunkstore.protection.policy import parse_policy
from chunkstore.ring import mapadmin
from chunkstore.ring.hosted import running_host
from chunkstore.ring.localcluster import load_config
from chunkstore.ring.open import is_networked
from exporters.registry import ExportStatus, list_exports
from fuse_mount import control, runstate
from sofs.volume import VolumeConfig

from .common import fail
from .jobs import ring_job, running_job, volumes

JSON_FORMAT = 1
CHECKPOINT_STALE_AFTER = 3     # intervals without a checkpoint before it is a warning
EXPORT_BAD_STATES = ("failed", "dead", "mount-gone")


@dataclass(frozen=True)
class DiskFacts:
    """A disk directory of an embedded ring."""

    id: str
    path: str
    state: str                 # up, MISSING, NOT INITIALISED, UNREADABLE, UNAVAILABLE
    total: int | None = None
    free: int | None = None
    device: int | None = None  # st_dev: disks sharing a file system share its fill


@dataclass(frozen=True)
class VolumeFacts:
    """A volume and its mount: ``state`` is ``mounted``, ``not mounted``, ``dead`` (its
    process gone, the mount point left behind) or ``detached`` (its process still serving a
    mount point that is gone here). ``stats`` is what the mount process reported (None when
    it did not answer)."""

    config: VolumeConfig
    state: str
    mountpoint: str | None = None
    pid: int | None = None
    stats: dict[str, Any] | None = None


@dataclass(frozen=True)
class StatusFacts:
    home: Path
    networked: bool
    cluster_id: str
    verdict: hv.Verdict
    health: HealthReport
    disks: list[DiskFacts]
    problems: dict[str, str]   # disk id -> what is wrong with it
    volumes: list[VolumeFacts]
    exports: list[ExportStatus]
    nodes: list[dict[str, Any]]          # networked: the map's nodes and whether they answer
    cluster: dict[str, Any] | None       # networked: a mount process's view (healer, rebuild)
    rebuild: dict[str, Any] | None = None  # the sweep a mount process's healer runs (or ran)
    job: dict[str, Any] | None = None      # a sofsctl job holding the embedded ring
    counted: bool = True                   # False: the ring was busy, chunks not counted
    ring_host: dict[str, Any] | None = None  # embedded: the host serving the disks, if one runs
    etcd: dict[str, Any] | None = None     # networked with etcd: whether it answers, its epoch
    # the repair log's counts (chunkstore.ring.repairlog.RepairLog.counts): chunks that owe
    # pieces (quorum-only writes, degraded reads), deleted chunks with pieces left, and when
    # the oldest debt was noted; None when no process holding the ring answered
    repair_log: dict[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        h = self.health
        return {
            "format": JSON_FORMAT,
            "data_dir": str(self.home),
            "cluster_id": self.cluster_id,
            "networked": self.networked,
            "health": {"status": self.verdict.level.label, "exit": int(self.verdict.level),
                       "reasons": [{"level": r.level.label, "text": r.text}
                                   for r in self.verdict.reasons]},
            "chunks": None if not self.counted else {
                "total": h.chunks, "protected": h.protected, "degraded": h.degraded,
                "unrecoverable": h.unrecoverable, "pieces": h.pieces,
                "unrecoverable_keys": list(h.unrecoverable_keys)},
            "job": self.job,
            "disks": [{"id": d.id, "path": d.path, "state": d.state, "total_bytes": d.total,
                       "free_bytes": d.free, "problem": self.problems.get(d.id)}
                      for d in self.disks],
            "disks_unavailable": list(h.disks_unavailable),
            "nodes": self.nodes,
            "rebuild": self.rebuild,
            "ring_host": self.ring_host,
            "etcd": self.etcd,
            "repair_log": self.repair_log,
            "volumes": [_volume_json(v) for v in self.volumes],
            "exports": [{"volume": e.volume, "kind": e.kind, "state": e.state, "bind": e.bind,
                         "port": e.port, "clients": e.who, "restarts": e.restarts,
                         "message": e.message, "probe_ok": e.probe_ok}
                        for e in self.exports],
        }


def _volume_json(v: VolumeFacts) -> dict[str, Any]:
    st = v.stats or {}
    return {"name": v.config.name, "uuid": v.config.uuid, "large_policy": v.config.large_policy,
            "small_policy": v.config.small_policy, "state": v.state,
            "mountpoint": v.mountpoint, "pid": v.pid,
            "checkpoint": None if v.stats is None else {
                "seq": st.get("checkpoint_seq"), "at": st.get("checkpoint_at"),
                "interval_s": st.get("checkpoint_interval_s"),
                "error": st.get("checkpoint_error"), "gc_stopped": st.get("gc_stopped")},
            "lease": st.get("lease"), "journal": st.get("journal")}


def gather(home: Path) -> StatusFacts:
    """Everything ``status`` shows, and the verdict."""
    networked = is_networked(home)
    disks = [] if networked else local_disks(home)
    job = None if networked else running_job(home)
    h, repair_log = _health(home) if job is None else (_uncounted(home, disks), None)
    # a directory that looks right but does not open (a damaged index) is not "up"
    disks = [dataclasses.replace(d, state="UNAVAILABLE") if d.state == "up" and
             d.id in h.disks_unavailable else d for d in disks]
    vols = volumes(home)
    states = runstate.all_states(home)
    mounts = {s.volume: s for s in states if s.alive}
    fuse_points = {p for p, kind in _kernel_mounts().items() if kind.startswith("fuse")}
    dead = {s.volume: s for s in states
            if not s.alive and s.mountpoint in fuse_points and s.volume not in mounts}
    detached = {name for name, m in mounts.items() if m.mountpoint not in fuse_points}
    stats = {name: _mount_stats(home, name) for name in mounts}

    problems = {d.id: _problem(d) for d in disks if d.state != "up"}
    for disk_id in h.disks_unavailable:
        problems.setdefault(disk_id, "unavailable")
    policies = []
    for v in vols:
        try:
            policies += [parse_policy(v.large_policy), parse_policy(v.small_policy)]
        except cerr.ChunkStoreError:
            continue
    counted = set(problems) <= set(h.disks_unavailable)
    reasons: list[hv.Reason | None] = [*hv.disk_reasons(problems, hv.tolerance(policies), counted)]
    reasons += hv.chunk_reasons(h)
    reasons += _fill_reasons(disks)
    reasons += [dead_mount_reason(s.volume, s.mountpoint, s.pid) for s in dead.values()]
    reasons += [detached_mount_reason(name, mounts[name].mountpoint, mounts[name].pid)
                for name in sorted(detached)]
    now = time.time()
    for name, st in stats.items():
        if st is not None:
            reasons.append(checkpoint_reason(name, st, now, checkpoint_interval(st)))
            reasons.append(overtaken_reason(name, st))
            reasons.append(journal_reason(name, st))
    exports = list_exports(home)
    reasons += [export_reason(e.volume, e.kind, e.state, e.message) for e in exports]
    if job is not None:
        reasons.append(hv.Reason(hv.Level.WARN, f"chunks not counted: sofsctl {job['op']} "
                                                f"(pid {job['pid']}) holds the ring"))
    mnt = read_maintenance(home)
    if mnt is not None:
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(mnt.since))
        reasons.append(hv.Reason(hv.Level.WARN, f"maintenance mode since {since} ({mnt.reason}): "
                                                "no down-marking, no rebuild; sofsctl "
                                                "maintenance off"))
    etcd = mapadmin.etcd_view(home) if networked else None
    if etcd is not None and not etcd.reachable:
        reasons.append(hv.Reason(hv.Level.WARN, f"etcd is unreachable ({etcd.error}): data "
                                                "reads and writes go on with the last map; no "
                                                "map change can be made until it answers"))
    cluster = _cluster_view(home, states) if networked else None
    rebuild = (cluster or {}).get("rebuild") if networked else _sweep_view(home, mounts)

    facts = []
    for v in vols:
        m = mounts.get(v.name)
        if m is not None:
            facts.append(VolumeFacts(v, "detached" if v.name in detached else "mounted",
                                     m.mountpoint, m.pid, stats.get(v.name)))
        elif v.name in dead:
            facts.append(VolumeFacts(v, "dead", dead[v.name].mountpoint, dead[v.name].pid))
        else:
            facts.append(VolumeFacts(v, "not mounted"))
    return StatusFacts(
        home=home, networked=networked,
        cluster_id=mapadmin.load_map(home).cluster_id if networked else load_config(home).cluster_id,
        verdict=hv.combine(reasons), health=h, disks=disks, problems=problems,
        volumes=facts, exports=exports, nodes=node_facts(home) if networked else [],
        cluster=cluster, rebuild=rebuild, job=job, counted=job is None,
        ring_host=None if networked else _host_view(home), repair_log=repair_log,
        etcd=None if etcd is None else dataclasses.asdict(etcd))


# --- reasons of the layers above the RING (pure) -------------------------------------------

def dead_mount_reason(volume: str, mountpoint: str, pid: int) -> hv.Reason:
    return hv.Reason(hv.Level.WARN, f"volume {volume}: dead mount at {mountpoint} "
                                    f"(pid {pid} gone): run sofsctl umount {mountpoint}")


def detached_mount_reason(volume: str, mountpoint: str, pid: int) -> hv.Reason:
    """A mount process alive while its mount point is not mounted here: another mount
    namespace holds the mount (or it was detached by hand)."""
    return hv.Reason(hv.Level.WARN, f"volume {volume}: mount process {pid} still serves but "
                                    f"{mountpoint} is not mounted here (held by another mount "
                                    f"namespace?): run sofsctl umount {volume}")


def overtaken_reason(volume: str, st: dict) -> hv.Reason | None:
    """A warning when another host took the volume over from this mount (read-only, GC off)."""
    if not st.get("gc_stopped"):
        return None
    lost = (st.get("lease") or {}).get("lost")
    if lost:
        return hv.Reason(hv.Level.WARN, f"volume {volume}: read-only, garbage collection "
                                        f"stopped: {lost}; unmount it")
    return hv.Reason(hv.Level.WARN, f"volume {volume}: this copy was taken over by another "
                                    "host (read-only, garbage collection stopped): unmount it")


def journal_reason(volume: str, st: dict) -> hv.Reason | None:
    """A warning when the volume's journal in the RING (sofs.journal) is more than half full:
    the checkpoints that trim it are not being written, and once full nothing more can be
    acknowledged."""
    j = st.get("journal")
    if not isinstance(j, dict) or not j.get("slots"):
        return None
    backlog, slots = j.get("backlog", 0), j["slots"]
    if backlog * 2 <= slots:
        return None
    return hv.Reason(hv.Level.WARN, f"volume {volume}: its metadata journal is "
                                    f"{100 * backlog // slots}% full ({backlog} of {slots} "
                                    "entries since the last checkpoint): checkpoints fail?")


def checkpoint_reason(volume: str, st: dict, now: float, interval_s: float) -> hv.Reason | None:
    """A warning when the mount process's last metadata checkpoint failed, or is older than
    CHECKPOINT_STALE_AFTER intervals (never with checkpoints turned off: interval 0)."""
    if st.get("checkpoint_error"):
        return hv.Reason(hv.Level.WARN, f"volume {volume}: the last metadata checkpoint "
                                        f"failed: {st['checkpoint_error']}")
    at = st.get("checkpoint_at")
    if at is None or not interval_s > 0:
        return None
    age = now - at
    if age > CHECKPOINT_STALE_AFTER * interval_s:
        return hv.Reason(hv.Level.WARN, f"volume {volume}: last metadata checkpoint "
                                        f"{age / 60:.0f} min old (every {interval_s / 60:.0f} "
                                        "min expected)")
    return None


def export_reason(volume: str, kind: str, state: str, message: str) -> hv.Reason | None:
    if state not in EXPORT_BAD_STATES:
        return None
    why = f": {message}" if message else ""
    return hv.Reason(hv.Level.WARN, f"{kind.upper()} export of volume {volume} {state}{why}")


def checkpoint_interval(st: dict) -> float:
    """The mount's checkpoint interval as it reports it (0, turned off, if it does not)."""
    value = st.get("checkpoint_interval_s")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


# --- facts ---------------------------------------------------------------------------------

REPAIR_LOG_LIMIT = 100_000  # repair log entries read by one status, at most


def _health(home: Path) -> tuple[HealthReport, dict[str, int] | None]:
    """The ring's chunk counts, and its repair log's (read here with the ring, else asked of
    the process holding it; None if that does not answer)."""
    h = ring_job(home, "health", lambda ring, p: {
        **dataclasses.asdict(run_health(ring)),
        "repair_log": ring.repair_log.counts(REPAIR_LOG_LIMIT)})
    repair_log = h.get("repair_log")
    if repair_log is None:  # a mount process or the ring host ran the count
        try:
            repair_log = control.call(home, "healer-metrics", timeout=10).get("repair_log")
        except control.MountError:
            repair_log = None
    return _health_report(h), repair_log


def _health_report(h: dict) -> HealthReport:
    return HealthReport(chunks=h["chunks"], protected=h["protected"], degraded=h["degraded"],
                        unrecoverable=h["unrecoverable"], pieces=h["pieces"],
                        disks_total=h["disks_total"],
                        disks_unavailable=tuple(h["disks_unavailable"]),
                        unrecoverable_keys=tuple(h.get("unrecoverable_keys", ())))


def _uncounted(home: Path, disks: list[DiskFacts]) -> HealthReport:
    """Zero counts, for when a sofsctl job holds the ring (see ``counted``)."""
    return HealthReport(chunks=0, protected=0, degraded=0, unrecoverable=0, pieces=0,
                        disks_total=len(disks), disks_unavailable=())


def _host_view(home: Path) -> dict | None:
    """The ring host serving an embedded ring (pid, port, epoch, connections), if it runs."""
    if running_host(home) is None:
        return None
    try:
        return control.call(home, "host", timeout=10)
    except control.MountError:
        return None


def _sweep_view(home: Path, mounts: dict[str, runstate.MountState]) -> dict | None:
    """The sweep of the process that holds an embedded ring: its ring host, or a mount
    with --exclusive-ring (or None)."""
    if not mounts and running_host(home) is None:
        return None
    try:
        return control.call(home, "sweep", timeout=10)
    except control.MountError:
        return None


def local_disks(home: Path) -> list[DiskFacts]:
    """The disk directories of an embedded ring, as the filesystem shows them."""
    try:
        cfg = load_config(home)
    except cerr.ChunkStoreError as e:
        raise fail(e) from None
    out = []
    for d in cfg.disks:
        path = cfg.disk_path(home, d.id)
        if not os.path.isdir(path):
            out.append(DiskFacts(d.id, path, "MISSING"))
            continue
        try:
            os.listdir(path)
            usage = shutil.disk_usage(path)
            device = os.stat(path).st_dev
        except OSError:
            out.append(DiskFacts(d.id, path, "UNREADABLE"))
            continue
        state = "up" if os.path.isfile(os.path.join(path, "DISK")) else "NOT INITIALISED"
        out.append(DiskFacts(d.id, path, state, usage.total, usage.free, device))
    return out


def _problem(d: DiskFacts) -> str:
    what = {"MISSING": "missing", "NOT INITIALISED": "not initialised",
            "UNREADABLE": "unreadable", "UNAVAILABLE": "unavailable: it does not open"}[d.state]
    return f"{what} ({d.path})"


def _fill_reasons(disks: list[DiskFacts]) -> list[hv.Reason | None]:
    by_device: dict[int, list[DiskFacts]] = {}
    for d in disks:
        if d.device is not None:
            by_device.setdefault(d.device, []).append(d)
    out = []
    for group in by_device.values():
        total, free = group[0].total or 0, group[0].free or 0
        if total > 0:
            out.append(hv.fill_reason([d.id for d in group], (total - free) / total))
    return out


def _kernel_mounts() -> dict[str, str]:
    try:
        return runstate.kernel_mounts()
    except OSError:
        return {}


def _mount_stats(home: Path, name: str) -> dict | None:
    try:
        return control.call(home, "stats", timeout=10, volume=name)
    except control.MountError:
        return None


def _cluster_view(home: Path, states: list[runstate.MountState]) -> dict | None:
    """The healer's view of a networked cluster from one of the mount processes (the one
    rebuilding, if one is), or None when none answers."""
    info = None
    for st in states:
        if not st.alive:
            continue
        try:
            candidate = control.call(home, "cluster", volume=st.volume, timeout=30)
        except control.MountError:
            continue
        info = candidate
        if candidate["rebuild"]["state"] != "standby":
            break
    return info


def node_facts(home: Path) -> list[dict[str, Any]]:
    """The map's nodes, whether each answers and its map epoch."""
    try:
        cmap = mapadmin.load_map(home)
        reach = mapadmin.node_reachability(home)
    except cerr.ChunkStoreError as e:
        raise fail(e) from None
    out = []
    for n in cmap.nodes:
        ok, epoch = reach.get(n.id, (False, "?"))
        out.append({"id": n.id, "address": n.address, "site": n.site, "state": n.state,
                    "answers": ok, "epoch": epoch if ok else None,
                    "error": None if ok else str(epoch),
                    "disks": [{"id": d.id, "state": d.state} for d in cmap.disks
                              if d.node == n.id]})
    return out
