"""``sofsctl trash``: the files deleted from a volume that its trash keeps (list, restore,
purge); see :mod:`sofs.trash`.

A mounted volume is asked through its mount process (fuse_mount.trashops); a volume that is not
mounted is opened here for the moment of the command.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import click

from fuse_mount.trashops import run_trash_op
from sofs import errors as ferr
from sofs.worm.policy import format_duration, parse_duration

from .common import Failure, fail, human, pass_home, table, utc_ns
from .jobs import require_volume
from .volumeop import volume_op


def _call(home: Path, volume: str, op: str, args: dict[str, Any]) -> Any:
    return volume_op(home, volume, op, args, run_trash_op)


def _duration(text: str, what: str) -> int:
    try:
        return parse_duration(text)
    except ferr.FsError as e:
        raise fail(f"{what}: {e}") from None


def trash_seconds(text: str) -> int:
    """A trash time as given to volume create/set (``7d``, ``12h``; ``0`` or ``off``: no
    trash) in seconds; InvalidArgument otherwise."""
    if text.strip().lower() in ("0", "off"):
        return 0
    return parse_duration(text.strip()) // 10**9


@click.group()
def trash() -> None:
    """Files deleted from a volume, kept by its trash for a while (volume set trash=...)."""


@trash.command("list")
@click.argument("volume")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_home
def trash_list(home: Path, volume: str, as_json: bool) -> None:
    """List the files in VOLUME's trash, oldest first: ID, when deleted, when purged, size,
    owner and the path it had."""
    config = require_volume(home, volume)
    rows = _call(home, volume, "trash-list", {})
    for r in rows:
        r["purge_after_ns"] = r["deleted_ns"] + config.trash_s * 10**9
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        kept = (f"keeps deleted files {format_duration(config.trash_s * 10**9)}"
                if config.trash_s else "is off")
        click.echo(f"the trash of volume {volume} is empty (it {kept})")
        return
    table([("ID", "DELETED", "PURGED AFTER", "SIZE", "OWNER", "MODE", "PATH"),
           *((r["ino"], utc_ns(r["deleted_ns"]), utc_ns(r["purge_after_ns"]), human(r["size"]),
              f"{r['uid']}:{r['gid']}", stat.filemode(r["mode"]), r["path"]) for r in rows)])


def _pick(home: Path, volume: str, what: str) -> int:
    """The ID of a trashed file: WHAT is its ID, or the path it had (its latest delete)."""
    if what.isdigit():
        return int(what)
    found = [r for r in _call(home, volume, "trash-list", {}) if r["path"] == what]
    if not found:
        raise Failure(f"nothing deleted from {what} is in the trash of volume {volume} "
                      "(sofsctl trash list)")
    return int(max(found, key=lambda r: r["deleted_ns"])["ino"])


@trash.command("restore")
@click.argument("volume")
@click.argument("what", metavar="ID|PATH")
@click.option("--to", "to", metavar="PATH",
              help="Restore under this path of the volume instead of the old one.")
@pass_home
def trash_restore(home: Path, volume: str, what: str, to: str | None) -> None:
    """Restore a trashed file of VOLUME (by its ID, or by the path it had: the latest delete
    of it) to its old path or to --to, with the same bytes, owner, mode, times and xattrs.
    Missing directories are made; an existing file is never replaced."""
    ino = _pick(home, volume, what)
    done = _call(home, volume, "trash-restore",
                 {"ino": ino, **({"to": to} if to is not None else {})})
    click.echo(f"restored {done['path']} on volume {volume}")


@trash.command("purge")
@click.argument("volume")
@click.argument("ids", nargs=-1, type=int, metavar="[ID]...")
@click.option("--older-than", metavar="DURATION",
              help="Every file deleted longer ago than this (e.g. 2d).")
@click.option("--all", "everything", is_flag=True, help="Every file in the trash.")
@click.option("--yes", is_flag=True, help="Required with --older-than or --all.")
@pass_home
def trash_purge(home: Path, volume: str, ids: tuple[int, ...], older_than: str | None,
                everything: bool, yes: bool) -> None:
    """Delete trashed files of VOLUME for good (they cannot be restored any more; their
    space comes back after the collector's grace period): the IDs given, those deleted
    longer ago than --older-than, or --all."""
    if sum(map(bool, (ids, older_than, everything))) != 1:
        raise click.UsageError("give IDs, or --older-than DURATION, or --all")
    if not ids and not yes:
        raise Failure("not confirmed: nothing purged (give --yes)")
    args: dict[str, Any] = {}
    if ids:
        args["inos"] = list(ids)
    elif older_than:
        args["before_ns"] = time.time_ns() - _duration(older_than, "--older-than")
    click.echo(f"{_call(home, volume, 'trash-purge', args)['purged']} file(s) purged from "
               f"the trash of volume {volume}")
