"""``sofsctl status``: a health verdict first, then the cluster's disks (or nodes), chunk
health, volumes and mounts.

The first line is ``HEALTH_OK``, ``HEALTH_WARN: reasons`` or ``HEALTH_ERR: reasons`` and the
exit status is 0, 1 or 2 (what a Nagios or Zabbix check expects). This module only gathers
the facts (the ring's health count, the disk directories, the mount run-states, the mount
processes' checkpoint figures, the exports) and prints; the levels, the ring's reasons and
how they combine are :mod:`chunkstore.healing.verdict`'s. The few reasons about mounts,
checkpoints and exports are built here (:func:`dead_mount_reason` and the like, pure).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import click

from chunkstore import errors as cerr
from chunkstore.healing import verdict as hv
from chunkstore.healing.sweep import HealthReport
from chunkstore.healing.sweep import health as run_health
from chunkstore.protection.policy import parse_policy
from chunkstore.ring.localcluster import load_config
from chunkstore.ring.open import is_networked
from exporters.registry import list_exports
from fuse_mount import control, runstate

from .common import fail, human, pass_home, table
from .jobs import ring_job, volumes
from .nodes import show_cluster

CHECKPOINT_STALE_AFTER = 3     # intervals without a checkpoint before it is a warning
EXPORT_BAD_STATES = ("failed", "dead", "mount-gone")


@dataclass(frozen=True)
class _Disk:
    id: str
    path: str
    state: str                 # up, MISSING, NOT INITIALISED, UNREADABLE, UNAVAILABLE
    total: int | None = None
    free: int | None = None
    device: int | None = None  # st_dev: disks sharing a file system share its fill


@click.command()
@pass_home
@click.pass_context
def status(ctx: click.Context, home: Path) -> None:
    """Show a health verdict (exit 0 OK, 1 WARN, 2 ERR), then the cluster's disks (or
    nodes), chunk health, rebuilds, volumes and mounts."""
    networked = is_networked(home)
    disks = [] if networked else _local_disks(home)
    h = _health(home)
    # a directory that looks right but does not open (a damaged index) is not "up"
    disks = [dataclasses.replace(d, state="UNAVAILABLE") if d.state == "up" and
             d.id in h.disks_unavailable else d for d in disks]
    vols = volumes(home)
    states = runstate.all_states(home)
    mounts = {s.volume: s for s in states if s.alive}
    fuse_points = {p for p, kind in _kernel_mounts().items() if kind.startswith("fuse")}
    dead = {s.volume: s for s in states
            if not s.alive and s.mountpoint in fuse_points and s.volume not in mounts}
    stats = {name: _mount_stats(home, name, networked) for name in mounts}

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
    detached = {name: m for name, m in mounts.items() if m.mountpoint not in fuse_points}
    reasons += [detached_mount_reason(m.volume, m.mountpoint, m.pid) for m in detached.values()]
    now = time.time()
    for name, st in stats.items():
        if st is not None:
            reasons.append(checkpoint_reason(
                name, st, now, _checkpoint_interval(st)))
            reasons.append(overtaken_reason(name, st))
    reasons += [export_reason(e.volume, e.kind, e.state, e.message) for e in list_exports(home)]
    verdict = hv.combine(reasons)

    click.echo(verdict.line())
    if networked:
        show_cluster(home)
    else:
        _show_local_disks(home, disks)
    click.echo(hv.chunk_line(h, [d.id for d in disks if d.state != "up"]))
    if h.unrecoverable_keys:
        shown = " ".join(h.unrecoverable_keys)
        more = f" (and {h.unrecoverable - len(h.unrecoverable_keys)} more)" \
            if h.unrecoverable > len(h.unrecoverable_keys) else ""
        click.echo(f"unrecoverable: {shown}{more}", err=True)
        click.echo("which files lose data: sofsctl chunk which KEY...", err=True)
    if h.degraded or h.unrecoverable or problems:
        new = [d for d, why in problems.items()
               if why.startswith(("missing", "not initialised", "unavailable: it does not open"))]
        click.echo("run: sofsctl repair" + (
            f" (a disk replaced by a new, empty drive: sofsctl repair --init-disk {new[0]})"
            if new and not networked else ""), err=True)
    for v in vols:
        m = mounts.get(v.name)
        if m and v.name in detached:
            where = (f"DETACHED from {m.mountpoint} (pid {m.pid} still serving): "
                     f"run sofsctl umount {v.name}")
        elif m:
            where = f"mounted at {m.mountpoint} (pid {m.pid})" + _checkpoint_text(v.name, stats[v.name])
        elif v.name in dead:
            gone = dead[v.name]
            where = (f"DEAD mount at {gone.mountpoint} (pid {gone.pid} gone): "
                     f"run sofsctl umount {gone.mountpoint}")
        else:
            where = "not mounted"
        click.echo(f"volume {v.name}: {v.large_policy}/{v.small_policy}, {where}")
    ctx.exit(int(verdict.level))


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
    return hv.Reason(hv.Level.WARN, f"volume {volume}: this copy was taken over by another "
                                    "host (read-only, garbage collection stopped): unmount it")


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


# --- facts ---------------------------------------------------------------------------------

def _health(home: Path) -> HealthReport:
    h = ring_job(home, "health", lambda ring, p: run_health(ring))
    return HealthReport(chunks=h["chunks"], protected=h["protected"], degraded=h["degraded"],
                        unrecoverable=h["unrecoverable"], pieces=h["pieces"],
                        disks_total=h["disks_total"],
                        disks_unavailable=tuple(h["disks_unavailable"]),
                        unrecoverable_keys=tuple(h.get("unrecoverable_keys", ())))


def _local_disks(home: Path) -> list[_Disk]:
    try:
        cfg = load_config(home)
    except cerr.ChunkStoreError as e:
        raise fail(e) from None
    out = []
    for d in cfg.disks:
        path = cfg.disk_path(home, d.id)
        if not os.path.isdir(path):
            out.append(_Disk(d.id, path, "MISSING"))
            continue
        try:
            os.listdir(path)
            usage = shutil.disk_usage(path)
            device = os.stat(path).st_dev
        except OSError:
            out.append(_Disk(d.id, path, "UNREADABLE"))
            continue
        state = "up" if os.path.isfile(os.path.join(path, "DISK")) else "NOT INITIALISED"
        out.append(_Disk(d.id, path, state, usage.total, usage.free, device))
    return out


def _problem(d: _Disk) -> str:
    what = {"MISSING": "missing", "NOT INITIALISED": "not initialised",
            "UNREADABLE": "unreadable", "UNAVAILABLE": "unavailable: it does not open"}[d.state]
    return f"{what} ({d.path})"


def _fill_reasons(disks: list[_Disk]) -> list[hv.Reason | None]:
    by_device: dict[int, list[_Disk]] = {}
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


def _mount_stats(home: Path, name: str, networked: bool) -> dict | None:
    try:
        return control.call(home, "stats", timeout=10, volume=name if networked else None)
    except control.MountError:
        return None


def _checkpoint_interval(st: dict) -> float:
    """The mount's checkpoint interval as it reports it (0, turned off, if it does not)."""
    value = st.get("checkpoint_interval_s")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _checkpoint_text(name: str, st: dict | None) -> str:
    """', metadata checkpoint N taken M min ago' from the volume's mount process."""
    if st is None:
        return ""
    if st.get("checkpoint_error"):
        click.echo(f"volume {name}: the last metadata checkpoint failed: "
                   f"{st['checkpoint_error']}", err=True)
    if st.get("gc_stopped"):
        click.echo(f"volume {name}: this copy is read-only and its garbage collection is "
                   "stopped (another host has taken the volume over); unmount it", err=True)
    if st.get("checkpoint_at"):
        age = max(0.0, time.time() - st["checkpoint_at"])
        return f", metadata checkpoint {st['checkpoint_seq']} taken {age / 60:.0f} min ago"
    return ", no metadata checkpoint yet"


def _show_local_disks(home: Path, disks: list[_Disk]) -> None:
    cfg = load_config(home)
    click.echo(f"cluster {cfg.cluster_id} at {home}")
    rows = [("DISK", "PATH", "STATE", "SIZE", "FREE")]
    for d in disks:
        if d.total is None or d.free is None:
            rows.append((d.id, d.path, d.state, "-", "-"))
        else:
            rows.append((d.id, d.path, d.state, human(d.total), human(d.free)))
    table(rows)
