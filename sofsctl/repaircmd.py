"""``sofsctl repair``: the full repair sweep (rebuild what is missing or corrupt), here or in
the mount process that holds the embedded ring; ``--attach`` follows the sweep a mount process
runs, ``--cancel`` stops it, ``--rate`` caps its disk traffic while it runs. Thin: the sweep is
:func:`chunkstore.healing.sweep.repair`, or the mount's healer through its admin socket."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from chunkstore import errors as cerr
from chunkstore.healing.sweep import repair as run_repair
from chunkstore.ring.hosted import running_host
from chunkstore.ring.localcluster import init_disk_dir, load_config
from chunkstore.ring.open import is_networked
from fuse_mount import runstate

from .common import FiniteFloat, fail, human, pass_home
from .jobs import ask_mount, ring_job
from .progress import ProgressLine, is_terminal

MIB = 1 << 20


def _mount_process(home: Path) -> int | None:
    """The pid of the process that runs repairs here (it holds the embedded ring: its ring
    host, or a mount with --exclusive-ring), if any."""
    if is_networked(home):
        return None  # each networked client sweeps through its own ring handle
    host = running_host(home)
    if host is not None:
        return host.pid
    return next((s.pid for s in runstate.all_states(home) if s.alive), None)


@click.command()
@click.option("--init-disk", "init_disks", multiple=True, metavar="ID",
              help="Initialise disk ID's missing or empty directory and rebuild onto it "
                   "(repeatable). Without it such a disk is left out: it may be a drive "
                   "that failed to mount. A disk that does not open (a damaged index) has its "
                   "contents moved to DISK/damaged-TIME and is rebuilt from the other disks.")
@click.option("--rate", type=FiniteFloat(min=0), default=None, metavar="MIB/S",
              help="Cap the sweep's disk traffic (pieces read + written), 0 for no cap. With a "
                   "mounted volume it applies at once to the sweep running, and to later ones.")
@click.option("--attach", is_flag=True,
              help="Follow the sweep the mount process runs (after Ctrl-C on a repair) until "
                   "it ends.")
@click.option("--cancel", is_flag=True,
              help="Stop the sweep the mount process runs, between chunks (the next one "
                   "does what it left).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report as JSON (schema in sofsctl(8)); same exit status.")
@pass_home
def repair(home: Path, init_disks: tuple[str, ...], rate: float | None, attach: bool,
           cancel: bool, as_json: bool) -> None:
    """Check every chunk and rebuild missing or corrupt copies and fragments.

    Works online (a mounted volume's process runs it; Ctrl-C leaves it running there) or
    offline.
    """
    mount = _mount_process(home)
    if attach or cancel:
        if mount is None:
            raise fail("no process serves this ring and runs a repair here (an offline repair runs in its own "
                       "sofsctl process: Ctrl-C stops it)")
        if cancel:
            done = ask_mount(home, "repair-cancel")["cancelled"]
            click.echo("the running sweep stops after the chunks in hand" if done
                       else "no sweep is running")
            return
        _follow(home)
        return
    if rate is not None and mount is not None:
        cap = ask_mount(home, "repair-rate", bytes_per_s=rate * MIB or None)["rate_cap"]
        click.echo(f"repair rate capped at {cap / MIB:.0f} MiB/s" if cap else "repair rate: no cap")
        if ask_mount(home, "sweep")["state"] == "rebuilding":
            return  # the running sweep takes the new cap; nothing more to start
    if init_disks and is_networked(home):
        raise fail("--init-disk is for an embedded ring; on a networked one replace the disk "
                   "on its storage node (see STORAGE NODES in sofsctl(8))")
    for disk_id in dict.fromkeys(init_disks):
        try:
            path = init_disk_dir(home, disk_id)
        except KeyError:
            ids = ", ".join(d.id for d in load_config(home).disks)
            raise fail(f"--init-disk {disk_id}: no such disk; the disks are {ids}") from None
        except cerr.ChunkStoreError as e:
            raise fail(f"--init-disk {disk_id}: {e}") from None
        click.echo(f"disk {disk_id}: initialised {path}")
    try:
        report = ring_job(
            home, "repair",
            lambda ring, p: run_repair(ring, progress_sized=p, init_disks=init_disks,
                                       max_bytes_per_s=rate * MIB if rate else None),
            label=None if as_json else "repair", record=True,
            args={"init_disks": list(init_disks)} if init_disks else None,
            succeeded=lambda r: not r.get("cancelled"))
    except KeyboardInterrupt:
        # the progress line ended its line; without one, get off the ^C the terminal echoed
        nl = "\n" if as_json and is_terminal(sys.stderr) else ""
        if mount is None:
            click.echo(f"{nl}repair interrupted: the next repair does what this one left", err=True)
            sys.exit(130)
        click.echo(f"{nl}the repair goes on in the process that holds the ring (pid {mount}): follow it "
                   "with sofsctl repair --attach, stop it with sofsctl repair --cancel; "
                   "sofsctl status shows it", err=True)
        sys.exit(130)
    _report(report, as_json)


def _follow(home: Path) -> None:
    """Draw the mount's running sweep until it ends, then its summary."""
    st = ask_mount(home, "sweep")
    if st["state"] != "rebuilding":
        click.echo("no sweep is running" + (f"; the last: {_summary(st)}" if st.get("last_report")
                                             else ""))
        return
    started = st["started"]
    line = ProgressLine("repair", "chunks", initial_done=st["chunks_done"])
    try:
        while st["state"] == "rebuilding" and st["started"] == started:
            line.update(st["chunks_done"], st["chunks_total"])
            time.sleep(1.0)
            st = ask_mount(home, "sweep")
    except KeyboardInterrupt:
        line.finish(ok=False, note="stopped following")
        click.echo("stopped following; the repair goes on (sofsctl repair --cancel stops it)",
                   err=True)
        sys.exit(130)
    except BaseException:
        line.finish(ok=False, note="failed")
        raise
    last = st.get("last_report") or {}
    line.finish(ok=not last.get("cancelled"), note="cancelled")
    click.echo(f"sweep finished: {_summary(st)}")


def _summary(st: dict) -> str:
    r = st["last_report"]
    return (f"{r['pieces_rebuilt']} pieces rebuilt ({human(r['bytes_rebuilt'])}), "
            f"{r['pieces_removed']} removed, {r['unrecoverable']} unrecoverable, "
            f"in {r['seconds']:.1f} s" + (" (cancelled)" if r.get("cancelled") else ""))


def _report(report: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"format": 1, **report}, indent=1))
        sys.exit(3 if report["unrecoverable"] or report.get("errors") else
                 5 if report.get("disks_refused") else 1 if report.get("cancelled") else 0)
    if report.get("cancelled"):
        click.echo(f"repair cancelled after {report['chunks_checked']} chunks "
                   f"({report['pieces_rebuilt']} pieces rebuilt); run it again to finish",
                   err=True)
        sys.exit(1)
    click.echo(f"chunks checked: {report['chunks_checked']}")
    click.echo(f"pieces rebuilt: {report['pieces_rebuilt']} ({human(report['bytes_rebuilt'])})")
    click.echo(f"pieces removed: {report['pieces_removed']}")
    if report.get("roots_refreshed"):
        click.echo(f"volume checkpoint records rewritten to their disks: "
                   f"{report['roots_refreshed']}")
    for msg in report.get("disks_set_aside", []):
        click.echo(msg)
    if report.get("disks_revived"):
        click.echo(f"disks back in use: {', '.join(report['disks_revived'])}")
    if report.get("deleted_meanwhile"):
        click.echo(f"chunks deleted while the sweep ran (not lost): {report['deleted_meanwhile']}")
    for msg in report.get("abandoned", [])[:20]:  # puts that failed below quorum, not lost data
        click.echo(msg)
    for err in report.get("errors", [])[:20]:
        click.echo(f"error: {err}", err=True)
    for msg in report.get("disks_refused", []):
        click.echo(f"left out: {msg}", err=True)
    if report["unrecoverable"]:
        click.echo(f"UNRECOVERABLE chunks: {len(report['unrecoverable'])}", err=True)
        for key in report["unrecoverable"][:20]:
            click.echo(f"  {key}", err=True)
        click.echo("the files that use them: sofsctl chunk which KEY...", err=True)
        sys.exit(3)
    if report.get("errors"):
        click.echo("some chunks are still degraded; run repair again", err=True)
        sys.exit(3)
    if report.get("disks_refused"):
        click.echo("the chunks with pieces on these disks are still degraded", err=True)
        sys.exit(5)
    click.echo("all chunks fully protected")
