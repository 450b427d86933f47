"""``sofsctl disk add`` on an embedded RING: a new disk directory, then the rebalance onto it.

Thin: the disk is added by :meth:`chunkstore.ring.local.LocalRing.add_disk` and the pieces
whose owners changed are moved by :func:`chunkstore.healing.rebalance.rebalance` (the repair
sweep), here or, when a volume is mounted, in its mount process (which holds the ring); this
module draws the progress (bytes, rate, ETA; on a terminal only) and prints the summary.
The networked form is in :mod:`sofsctl.nodes`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from chunkstore import errors as cerr
from chunkstore.healing.rebalance import DiskAddReport, RebalancePlan, plan, rebalance
from chunkstore.ring.local import LocalRing
from chunkstore.ring.localcluster import load_config
from fuse_mount import control, runstate

from .common import fail, human
from .jobs import ring_job
from .progress import BYTES, ProgressLine, job_callback

EMBEDDED_FORM = "sofsctl disk add [ID] [--path PATH] [--weight W] [--no-rebalance]"


def _mounted(home: Path) -> list[runstate.MountState]:
    return [s for s in runstate.all_states(home) if s.alive]


def _add_online(home: Path, args: dict[str, Any]) -> None:
    """The mount process holds the embedded ring: it adds the disk and rebalances (admin op
    ``disk-add``, its own sweeps held off meanwhile); the progress comes from there."""
    line = ProgressLine("rebalancing", BYTES)
    try:
        with line:
            report = control.call(home, "disk-add", job_callback(line, BYTES), args=args)
    except KeyboardInterrupt:
        click.echo("interrupted: the disk add goes on in the mount process (sofsctl status "
                   "shows it; sofsctl repair --cancel stops the rebalance, which sofsctl "
                   "repair finishes later)", err=True)
        sys.exit(130)
    except control.MountError as e:
        raise fail(e) from None
    click.echo(_added_line(report["added"]))
    _summary(report, {})


def _added_line(added: dict) -> str:
    fs = ", its own filesystem" if added["own_fs"] else ""
    again = " (its directory was already initialised: accepted)" if added["resumed"] else ""
    return (f"disk {added['disk_id']} added: {added['path']} (weight {added['weight']:g}{fs})"
            f"{again}; ring epoch {added['epoch']}, {added['disks']} disks")


def _plan_line(p: RebalancePlan) -> str:
    if not p.pieces_to_move:
        return f"rebalance: nothing to move ({p.chunks} chunks already on their owners)"
    return (f"rebalance: {p.pieces_to_move} pieces ({human(p.bytes_to_move)}) of "
            f"{p.chunks_to_move} of {p.chunks} chunks move to their new owners")


def add_embedded(home: Path, disk_id: str | None, path: Path | None, weight: float,
                 rebalance_now: bool) -> None:
    """The whole embedded ``disk add``: add, rebalance, summarise (in the mount process when
    a volume is mounted: it holds the ring)."""
    args = {"disk_id": disk_id, "path": None if path is None else str(path.resolve()),
            "weight": weight, "rebalance_now": rebalance_now}
    if _mounted(home):
        _add_online(home, args)
        return
    try:
        before = {d.id for d in load_config(home).disks}
    except cerr.ChunkStoreError as e:  # no cluster here, or an unreadable one
        raise fail(e) from None
    shown: dict[str, Any] = {}
    line = ProgressLine("rebalancing", BYTES)
    progress = line.update

    def job(ring: LocalRing, chunks) -> DiskAddReport:
        for done in ring.completed:  # committed by a disk add that stopped before ring.json
            click.echo(f"disk {done}: completing the disk add that stopped after writing "
                       "cluster.json (its ring file is now written)")
        if ring.completed and disk_id in (None, *ring.completed):
            cfg = ring.config.disk(ring.completed[-1])
            added = {"disk_id": cfg.id, "path": ring.config.disk_path(ring.data_dir, cfg.id),
                     "weight": cfg.weight, "own_fs": cfg.own_fs, "resumed": True,
                     "epoch": ring.ring.epoch, "disks": len(ring.config.disks)}
        else:
            added = ring.add_disk(disk_id, None if path is None else str(path), weight).as_dict()
        shown["added"] = added
        click.echo(_added_line(added))
        if not rebalance_now:
            shown["waiting"] = plan(ring)
            return DiskAddReport(added, None)
        return DiskAddReport(added, rebalance(ring, progress, chunks=chunks,
                                              planned=lambda p: click.echo(_plan_line(p))))

    try:
        with line:
            report = ring_job(home, "disk-add", job, record=True, args=args)
    except KeyboardInterrupt:
        _interrupted(home, before, shown)
    except (cerr.ChunkStoreError, KeyError, OSError) as e:
        raise fail(e) from None
    _summary(report, shown)


def _interrupted(home: Path, before: set[str], shown: dict[str, Any]) -> None:
    try:
        new = sorted({d.id for d in load_config(home).disks} - before)
    except cerr.ChunkStoreError:
        new = []
    if new or "added" in shown:
        click.echo(f"\ninterrupted: disk {', '.join(new) or shown['added']['disk_id']} is in "
                   "the ring and every chunk stays readable; the chunks not moved yet are moved "
                   "by: sofsctl repair", err=True)
    else:
        click.echo("\ninterrupted before the disk was added: nothing changed (run the same "
                   "command again)", err=True)
    sys.exit(130)


def _summary(report: dict, shown: dict[str, Any]) -> None:
    if report.get("rebalance") is None:
        waiting: RebalancePlan | None = shown.get("waiting")
        left = f"{waiting.pieces_to_move} pieces ({human(waiting.bytes_to_move)}) wait" \
            if waiting is not None else "the pieces whose owners changed wait"
        click.echo(f"not rebalanced (--no-rebalance): {left} to move; sofsctl status counts "
                   "their chunks as degraded until sofsctl repair moves them")
        return
    r = report["rebalance"]
    click.echo(f"rebalanced: {r['pieces_moved']} pieces moved ({human(r['bytes_moved'])}), "
               f"{r['pieces_removed']} misplaced pieces removed, {human(r['traffic'])} read "
               f"and written, in {r['seconds']:.1f} s")
    for err in r["errors"][:20]:
        click.echo(f"error: {err}", err=True)
    for msg in r["disks_refused"]:
        click.echo(f"left out: {msg}", err=True)
    if r["unrecoverable"]:
        click.echo(f"UNRECOVERABLE chunks: {len(r['unrecoverable'])} (sofsctl chunk which "
                   "KEY... names the files)", err=True)
        for key in r["unrecoverable"][:20]:
            click.echo(f"  {key}", err=True)
    if r["unrecoverable"] or r["errors"]:
        click.echo("some chunks are not on their owners yet: run sofsctl repair", err=True)
        sys.exit(3)
    if r["disks_refused"]:
        click.echo("the chunks with pieces on these disks are not moved yet: fix the disks, "
                   "then run sofsctl repair", err=True)
        sys.exit(5)
    click.echo("all chunks on their owners and fully protected")
