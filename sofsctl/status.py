"""``sofsctl status``: the cluster's disks (or nodes), chunk health, volumes and mounts."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from chunkstore import errors as cerr
from chunkstore.healing.sweep import health as run_health
from chunkstore.ring.localcluster import load_config
from chunkstore.ring.open import is_networked
from fuse_mount import control, runstate

from .common import fail, human, pass_home, table
from .jobs import ring_job, volumes
from .nodes import show_cluster


@click.command()
@pass_home
def status(home: Path) -> None:
    """Show the cluster's disks (or nodes), chunk health, rebuilds, volumes and mounts."""
    if is_networked(home):
        show_cluster(home)
    else:
        _show_local_disks(home)
    h = ring_job(home, "health", lambda ring, p: run_health(ring))
    line = (f"chunks: {h['chunks']} ({h['protected']} fully protected, {h['degraded']} degraded, "
            f"{h['unrecoverable']} unrecoverable)")
    click.echo(line)
    if h["degraded"] or h["unrecoverable"]:
        click.echo("run: sofsctl repair", err=True)
    mounts = {s.volume: s for s in runstate.all_states(home) if s.alive}
    for v in volumes(home):
        m = mounts.get(v.name)
        where = f"mounted at {m.mountpoint} (pid {m.pid})" if m else "not mounted"
        click.echo(f"volume {v.name}: {v.large_policy}/{v.small_policy}, {where}"
                   + (_checkpoint_line(home, v.name) if m else ""))


def _checkpoint_line(home: Path, name: str) -> str:
    """', metadata checkpoint N taken M min ago' from the volume's mount process."""
    try:
        st = control.call(home, "stats", timeout=10,
                          volume=name if is_networked(home) else None)
    except control.MountError:
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


def _show_local_disks(home: Path) -> None:
    try:
        cfg = load_config(home)
    except cerr.ChunkStoreError as e:
        raise fail(e) from None
    click.echo(f"cluster {cfg.cluster_id} at {home}")
    rows = [("DISK", "PATH", "STATE", "SIZE", "FREE")]
    for d in cfg.disks:
        path = Path(cfg.disk_path(home, d.id))
        if not path.is_dir():
            rows.append((d.id, str(path), "MISSING", "-", "-"))
            continue
        usage = shutil.disk_usage(path)
        state = "up" if (path / "DISK").is_file() else "NOT INITIALISED"
        rows.append((d.id, str(path), state, human(usage.total), human(usage.free)))
    table(rows)
