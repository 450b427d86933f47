"""``sofsctl worm``: WORM domains of a volume (create, list) and the WORM state of a file.

A mounted volume is asked through its mount process (fuse_mount.wormops); a volume that is not
mounted is opened here for the moment of the command. Both run the same operation.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from fuse_mount.wormops import run_worm_op
from sofs.worm.policy import format_duration

from .common import Failure, pass_home, table, utc_ns
from .inspect import locate_path
from .volumeop import volume_op


def _worm_call(home: Path, volume: str, op: str, args: dict[str, Any]) -> Any:
    return volume_op(home, volume, op, args, run_worm_op)


@click.group()
def worm() -> None:
    """WORM retention: domains whose files cannot be changed or deleted once committed."""


@worm.group()
def domain() -> None:
    """WORM domains: directory trees of a volume whose files become immutable."""


def policy_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The retention options of a domain, shared by ``worm domain create`` and ``volume create
    --worm``."""
    options = [
        click.option("--default-retention", default="20y", show_default=True,
                     metavar="DURATION",
                     help="Retention of a file whose atime asks for none (e.g. 20y, 6mo, 30d)."),
        click.option("--min-retention", default="1d", show_default=True, metavar="DURATION"),
        click.option("--max-retention", default="70y", show_default=True, metavar="DURATION"),
        click.option("--autocommit", default="15m", show_default=True, metavar="DURATION",
                     help="A file unchanged this long is committed (at least 5m)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def make_domain(home: Path, volume: str, path: str, mode: str, default_retention: str,
                min_retention: str, max_retention: str, autocommit: str) -> str:
    """Make PATH of VOLUME a WORM domain; the line to print."""
    d = _worm_call(home, volume, "worm-domain-create", {
        "path": path, "mode": mode, "default": default_retention,
        "minimum": min_retention, "maximum": max_retention, "autocommit": autocommit})
    return (f"WORM domain {d['path']} created on volume {volume} ({d['mode']} mode, "
            f"default retention {format_duration(d['default_ns'])}, autocommit "
            f"{format_duration(d['autocommit_ns'])})")


@domain.command("create")
@click.argument("volume")
@click.argument("path")
@click.option("--mode", type=click.Choice(["compliance", "enterprise"]), required=True,
              help="compliance: nothing removes a file before its retention ends; "
                   "enterprise: a recorded privileged delete may. Never changes.")
@policy_options
@pass_home
def domain_create(home: Path, volume: str, path: str, mode: str, default_retention: str,
                  min_retention: str, max_retention: str, autocommit: str) -> None:
    """Make PATH (a directory of VOLUME, empty or new) a WORM domain.

    A file in it is committed when its last write bit is removed (chmod a-w; over SMB the
    read-only attribute) or after AUTOCOMMIT without change. Its retention is what its atime
    asks (touch -a -d DATE), clamped to the minimum and maximum, else the default.
    """
    click.echo(make_domain(home, volume, path, mode, default_retention, min_retention,
                           max_retention, autocommit))


@domain.command("list")
@click.argument("volume")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_home
def domain_list(home: Path, volume: str, as_json: bool) -> None:
    """List the WORM domains of VOLUME with their policies."""
    rows = _worm_call(home, volume, "worm-domains", {})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"volume {volume} has no WORM domain")
        return
    out = [("PATH", "MODE", "DEFAULT", "MIN", "MAX", "AUTOCOMMIT", "CREATED")]
    for d in rows:
        out.append((d["path"], d["mode"], format_duration(d["default_ns"]),
                    format_duration(d["minimum_ns"]), format_duration(d["maximum_ns"]),
                    format_duration(d["autocommit_ns"]), utc_ns(d["created_ns"])))
    table(out)


def _locate(home: Path, path: str) -> tuple[str, dict[str, Any]]:
    """(volume, the op's args naming the file) for PATH on a mount or VOLUME:/PATH."""
    volume, inner, ino = locate_path(home, path)
    return volume, ({"ino": ino} if ino is not None else {"path": inner})


@worm.command("show")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_home
def worm_show(home: Path, path: str, as_json: bool) -> None:
    """Show the WORM state of PATH (a file on a mount, or VOLUME:/path): its domain, whether
    it is committed, when and how, and until when it is retained."""
    volume, where = _locate(home, path)
    st = _worm_call(home, volume, "worm-show", where)
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    rows = [("domain", st["domain"] or "(none)"), ("mode", st["mode"] or "-"),
            ("state", st["state"]), ("committed", utc_ns(st["committed_ns"])),
            ("rule", st["rule"] or "-"), ("retain until", utc_ns(st["retain_until_ns"])),
            ("holds", ", ".join(st["holds"]) or "-")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k:<{width}}  {v}")


@worm.group()
def hold() -> None:
    """Legal holds: a held file cannot be deleted, even after its retention ends."""


def _hold(home: Path, path: str, name: str, add: bool, recursive: bool) -> None:
    volume, where = _locate(home, path)
    res = _worm_call(home, volume, "worm-hold",
                     {**where, "name": name, "add": add, "recursive": recursive})
    verb = "placed on" if add else "released from"
    click.echo(f"legal hold {name} {verb} {res['changed']} file(s)")


@hold.command("add")
@click.option("--name", required=True, help="The case the hold is for (holds stack by name).")
@click.option("--recursive", "-r", is_flag=True, help="Every file under the directory PATH.")
@click.argument("path")
@pass_home
def hold_add(home: Path, name: str, recursive: bool, path: str) -> None:
    """Place the legal hold NAME on PATH (a file of a WORM domain, on a mount or as
    VOLUME:/path)."""
    _hold(home, path, name, True, recursive)


@hold.command("release")
@click.option("--name", required=True, help="The case whose hold ends.")
@click.option("--recursive", "-r", is_flag=True, help="Every file under the directory PATH.")
@click.argument("path")
@pass_home
def hold_release(home: Path, name: str, recursive: bool, path: str) -> None:
    """Release the legal hold NAME from PATH; other holds stay."""
    _hold(home, path, name, False, recursive)


@hold.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.argument("path")
@pass_home
def hold_list(home: Path, as_json: bool, path: str) -> None:
    """List the held files under PATH (a directory, recursively, or a file) and their holds."""
    volume, where = _locate(home, path)
    rows = _worm_call(home, volume, "worm-held", where)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no held file")
        return
    table([("PATH", "HOLDS"), *((r["path"], ", ".join(r["holds"])) for r in rows)])


@worm.command("delete")
@click.option("--privileged", is_flag=True,
              help="Required: say that this removes a retained file, and is recorded.")
@click.option("--reason", required=True, help="Why (kept in the domain's log).")
@click.argument("path")
@pass_home
def worm_delete(home: Path, privileged: bool, reason: str, path: str) -> None:
    """Remove PATH, a file of an ENTERPRISE domain, even before its retention ends (never a
    file under a legal hold). Who, when, why and what are first recorded in the domain's
    append-only log, DOMAIN/.worm-log/, as a new WORM file. Compliance domains have no such
    delete."""
    if not privileged:
        raise Failure("a privileged delete needs --privileged")
    volume, inner, _ = locate_path(home, path)
    who = f"{os.environ.get('SUDO_USER') or _user(os.getuid())} (uid {os.getuid()})"
    rec = _worm_call(home, volume, "worm-privileged-delete",
                     {"path": inner, "reason": reason, "who": who,
                      "host": socket.gethostname()})
    click.echo(f"{rec['path']} deleted from volume {volume}; recorded in {rec['record']}")


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def retained_line(home: Path, volume: str) -> str | None:
    """Why VOLUME may not be deleted (its WORM domains still retain files), or None."""
    r = _worm_call(home, volume, "worm-retained", {})  # one opening of the volume
    if not r["files"] and not r["held"]:
        return None
    return (f"volume {volume} retains WORM files: {r['files']} committed file(s) before their "
            f"retention ends (the last on {utc_ns(r['last_until_ns'])}) and {r['held']} under a "
            "legal hold; it is deleted only once nothing is retained")
