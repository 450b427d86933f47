"""``sofsctl snapshot``: take, list and delete the read-only snapshots of a volume.

A mounted volume is asked through its mount process (fuse_mount.snapshotops); a volume that is
not mounted is opened here for the moment of the command. Both run the same operation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from fuse_mount.snapshotops import run_snapshot_op
from sofs.snapshot.manager import Snapshots

from .common import human, pass_home, table, utc_ns
from .volumeop import volume_op


def snapshot_call(home: Path, volume: str, op: str, args: dict[str, Any]) -> Any:
    """Run the snapshot op on VOLUME: in its mount process, or on the volume opened here."""
    return volume_op(home, volume, op, args,
                     lambda fs, op, args: run_snapshot_op(Snapshots(fs), op, args))


@click.group()
def snapshot() -> None:
    """Snapshots: read-only point-in-time copies of a volume, browsable under /.snapshots."""


@snapshot.command("create")
@click.argument("volume")
@click.argument("name", required=False)
@pass_home
def snapshot_create(home: Path, volume: str, name: str | None) -> None:
    """Take a snapshot of VOLUME named NAME (default: @GMT-YYYY.MM.DD-HH.MM.SS, UTC, the
    name Samba shows as a Windows "previous version"). Buffered writes are stored first."""
    info = snapshot_call(home, volume, "snapshot-create", {"name": name} if name else {})
    click.echo(f"snapshot {info['name']} of volume {volume} taken "
               f"({human(info['meta_bytes'])} of metadata)")


@snapshot.command("list")
@click.argument("volume")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_home
def snapshot_list(home: Path, volume: str, as_json: bool) -> None:
    """List the snapshots of VOLUME, oldest first."""
    rows = snapshot_call(home, volume, "snapshot-list", {})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"volume {volume} has no snapshot")
        return
    table([("NAME", "CREATED", "METADATA"),
           *((r["name"], utc_ns(r["created_ns"]), human(r["meta_bytes"])) for r in rows)])


@snapshot.command("delete")
@click.argument("volume")
@click.argument("name")
@pass_home
def snapshot_delete(home: Path, volume: str, name: str) -> None:
    """Delete the snapshot NAME of VOLUME; the chunks only it kept go to the garbage
    collector (deleted after its grace period)."""
    done = snapshot_call(home, volume, "snapshot-delete", {"name": name})
    click.echo(f"snapshot {name} of volume {volume} deleted; {done['requeued']} chunk(s) only "
               "it kept go to the garbage collector")


@snapshot.command("schedule")
@click.argument("volume")
@click.option("--keep", metavar="KIND=N,...",
              help="Take and keep snapshots on a schedule, e.g. hourly=24,daily=30,monthly=12 "
                   "(kinds: hourly, daily, weekly, monthly); 'off' ends it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_home
def snapshot_schedule(home: Path, volume: str, keep: str | None, as_json: bool) -> None:
    """Show or set the snapshot schedule of VOLUME: its mount takes a snapshot each hour (or
    day, week, month: the finest kind kept) and deletes the scheduled ones no rule keeps."""
    got = snapshot_call(home, volume, "snapshot-schedule", {"keep": keep} if keep else {})
    if as_json:
        click.echo(json.dumps(got, indent=2))
    elif got is None:
        click.echo(f"volume {volume} has no snapshot schedule")
    else:
        rules = ",".join(f"{k}={n}" for k, n in got.items())
        click.echo(f"volume {volume} keeps scheduled snapshots: {rules}")
