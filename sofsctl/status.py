"""``sofsctl status``: a health verdict first, then the cluster's disks (or nodes), chunk
health, volumes and mounts; ``--json`` prints the same facts as one document.

The first line is ``HEALTH_OK``, ``HEALTH_WARN: reasons`` or ``HEALTH_ERR: reasons`` and the
exit status is 0, 1 or 2 (what a Nagios or Zabbix check expects), with ``--json`` too. The
facts and the verdict are :mod:`sofsctl.statusfacts`'s; this module only prints them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from chunkstore.healing import verdict as hv
from chunkstore.ring.localcluster import load_config

from .common import human, pass_home, table
from .nodes import print_cluster_view, print_nodes
from .statusfacts import StatusFacts, VolumeFacts, gather


@click.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print the facts and the verdict as JSON (schema in sofsctl(8)); the exit "
                   "status is the verdict's all the same.")
@pass_home
@click.pass_context
def status(ctx: click.Context, home: Path, as_json: bool) -> None:
    """Show a health verdict (exit 0 OK, 1 WARN, 2 ERR), then the cluster's disks (or
    nodes), chunk health, rebuilds, volumes and mounts."""
    facts = gather(home)
    if as_json:
        click.echo(json.dumps(facts.to_json(), indent=1))
    else:
        _print(facts)
    ctx.exit(int(facts.verdict.level))


def _print(facts: StatusFacts) -> None:
    h, disks, problems = facts.health, facts.disks, facts.problems
    click.echo(facts.verdict.line())
    if facts.etcd is not None:
        e = facts.etcd
        if e["reachable"]:
            click.echo(f"etcd {','.join(e['endpoints'])}: answers, holds map epoch "
                       f"{e['map_epoch']}")
        else:
            click.echo(f"etcd {','.join(e['endpoints'])}: UNREACHABLE ({e['error']})")
    if facts.networked:
        if facts.cluster is None:
            click.echo("no mount process serves this data directory: node states from here")
            print_nodes(facts.home)
        else:
            print_cluster_view(facts.cluster)
    else:
        _show_local_disks(facts)
    if facts.job is not None:
        j = facts.job
        click.echo(f"chunks: not counted while sofsctl {j['op']} (pid {j['pid']}) holds the "
                   f"ring: {j.get('done', 0)}/{j.get('total', 0)} chunks done since "
                   f"{time.strftime('%H:%M:%S', time.localtime(j.get('started', 0)))}")
    else:
        click.echo(hv.chunk_line(h, [d.id for d in disks if d.state != "up"]))
    if facts.repair_log and facts.repair_log.get("needs_repair"):
        click.echo(repair_debt_line(facts.repair_log, time.time()))
    if not facts.networked and facts.rebuild and facts.rebuild.get("state") == "rebuilding":
        click.echo(_sweep_line(facts.rebuild))
    if facts.ring_host is not None:
        rh = facts.ring_host
        ends = ("it ends after the last unmount" if rh.get("idle_exit_s", 1) > 0
                else "it runs until stopped (systemd)")
        click.echo(f"ring host: pid {rh['pid']} serves the disks on 127.0.0.1:{rh['port']} "
                   f"(ring epoch {rh['epoch']}, {rh['connections']} connections); {ends}")
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
            if new and not facts.networked else ""), err=True)
    for v in facts.volumes:
        click.echo(f"volume {v.config.name}: {v.config.large_policy}/{v.config.small_policy}, "
                   f"{_where(v)}")


def repair_debt_line(counts: dict[str, int], now: float) -> str:
    """``repair debt: 3 chunks owe pieces (oldest noted 12 min ago); ...`` from the repair
    log's counts (:meth:`chunkstore.ring.repairlog.RepairLog.counts`): chunks written with
    only the write quorum, or read with a piece missing, that the repair sweep completes."""
    n = counts["needs_repair"]
    oldest = counts.get("oldest_needs_repair") or 0
    age = f" (oldest noted {_age(max(0.0, now - oldest))} ago)" if oldest else ""
    owe = "chunk owes" if n == 1 else "chunks owe"
    return (f"repair debt: {n} {owe} pieces{age}; the repair "
            "sweep completes them (a running mount's healer on its own while every disk is "
            "up, or now: sofsctl repair)")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def _sweep_line(rb: dict) -> str:
    """``repair: 1200/5000 chunks, 34.0 MiB read and written at 12.0 MiB/s (cap ...), since
    10:02:11, ETA 80 s`` for the sweep a mount process runs."""
    cap = rb.get("rate_cap")
    eta = rb.get("eta_s")
    since = time.strftime("%H:%M:%S", time.localtime(rb.get("started", 0)))
    return (f"repair: {rb['chunks_done']}/{rb['chunks_total']} chunks, "
            f"{human(rb.get('bytes_done', 0))} read and written at "
            f"{human(rb.get('rate_bytes_s', 0))}/s"
            + (f" (cap {human(cap)}/s)" if cap else " (no cap)")
            + f", since {since}" + (f", ETA {eta:.0f} s" if eta is not None else "")
            + " (stop it: sofsctl repair --cancel)")


def _where(v: VolumeFacts) -> str:
    if v.state == "detached":
        return (f"DETACHED from {v.mountpoint} (pid {v.pid} still serving): "
                f"run sofsctl umount {v.config.name}")
    if v.state == "mounted":
        return f"mounted at {v.mountpoint} (pid {v.pid})" + _checkpoint_text(v.config.name, v.stats)
    if v.state == "dead":
        return f"DEAD mount at {v.mountpoint} (pid {v.pid} gone): run sofsctl umount {v.mountpoint}"
    return "not mounted"


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


def _show_local_disks(facts: StatusFacts) -> None:
    cfg = load_config(facts.home)
    click.echo(f"cluster {cfg.cluster_id} at {facts.home}")
    rows = [("DISK", "PATH", "STATE", "SIZE", "FREE")]
    for d in facts.disks:
        if d.total is None or d.free is None:
            rows.append((d.id, d.path, d.state, "-", "-"))
        else:
            rows.append((d.id, d.path, d.state, human(d.total), human(d.free)))
    table(rows)
