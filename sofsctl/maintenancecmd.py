"""``sofsctl maintenance on|off|status`` and ``sofsctl scrub start|pause|resume|status``: the
healer's switches. Thin: the flag is :mod:`chunkstore.healing.maintenance`'s; the scrub
schedule lives in the mount process that runs the healer, asked over its admin socket."""

from __future__ import annotations

import getpass
import json
import socket
import time
from pathlib import Path

import click

from chunkstore.healing.maintenance import clear_maintenance, read_maintenance, set_maintenance
from chunkstore.ring.hosted import running_host
from chunkstore.ring.open import is_networked
from fuse_mount import runstate

from .common import fail, pass_home
from .jobs import ask_mount
from .repaircmd import repair


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@click.group()
def maintenance() -> None:
    """Suspend down-marking and rebuilds during a planned intervention (like Ceph's noout)."""


@maintenance.command("on")
@click.option("--reason", default="planned maintenance", show_default=True,
              help="Shown by status while it lasts.")
@pass_home
def maintenance_on(home: Path, reason: str) -> None:
    """Turn maintenance mode on: the healer marks no node down and starts no sweep (no
    rebuild, no scheduled scrub) until it is turned off; reads and writes go on."""
    m = set_maintenance(home, reason, f"{getpass.getuser()}@{socket.gethostname()}")
    click.echo(f"maintenance mode on since {_when(m.since)} ({m.reason}); turn it off with: "
               "sofsctl maintenance off")
    if is_networked(home):
        click.echo("note: the flag is this data directory's; give it to the data directory of "
                   "every client of the cluster", err=True)


@maintenance.command("off")
@pass_home
def maintenance_off(home: Path) -> None:
    """Turn maintenance mode off: the healer acts again at its next round (a rebuild starts
    if nodes stayed away or disks were replaced meanwhile)."""
    click.echo("maintenance mode off" if clear_maintenance(home) else
               "maintenance mode was not on")


@maintenance.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: null, or since/reason/by.")
@pass_home
def maintenance_status(home: Path, as_json: bool) -> None:
    """Whether maintenance mode is on, since when and why."""
    m = read_maintenance(home)
    if as_json:
        click.echo(json.dumps(None if m is None else
                              {"since": m.since, "reason": m.reason, "by": m.by}))
        return
    click.echo("maintenance mode off" if m is None else
               f"maintenance mode on since {_when(m.since)} by {m.by}: {m.reason}")


@click.group()
def scrub() -> None:
    """The healer's scrubs: full sweeps that read and verify every piece (weekly by default)."""


def _ask(home: Path, op: str) -> dict:
    """Ask the healer: an embedded ring's host (or --exclusive-ring mount), or on a networked
    data directory the first live mount."""
    st = next((s for s in runstate.all_states(home) if s.alive), None)
    if not is_networked(home) and running_host(home) is not None:
        return ask_mount(home, op)
    if st is None:
        raise fail("no process runs the healer here: scrubs run in the ring host of an "
                   "embedded ring (started by the first mount) or in the mounts of a "
                   "networked one (scrub start runs one now all the same: sofsctl repair)")
    return ask_mount(home, op, volume=st.volume if is_networked(home) else None)


@scrub.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema in sofsctl(8)).")
@pass_home
def scrub_status(home: Path, as_json: bool) -> None:
    """When the last full scrub ran, when the next is due, whether one runs or is paused."""
    st = _ask(home, "scrub-status")
    if as_json:
        click.echo(json.dumps(st))
        return
    state = ("running" if st["running"] else "paused" if st["paused"] else
             "suspended (maintenance mode)" if st["maintenance"] else "scheduled")
    click.echo(f"scrub: {state}; last full scrub {_when(st['last_full_sweep'])}, every "
               f"{st['interval_s'] / 86400:.1f} days"
               + ("" if st["next_in_s"] is None else
                  f", next in {st['next_in_s'] / 3600:.1f} h"))


@scrub.command("pause")
@pass_home
def scrub_pause(home: Path) -> None:
    """Stop a running scrub and start no scheduled one until scrub resume (rebuilds after a
    failure go on)."""
    stopped = _ask(home, "scrub-pause")["stopped"]
    click.echo("scrubs paused" + ("; the running one stops after the chunks in hand"
                                  if stopped else "") + ": sofsctl scrub resume")


@scrub.command("resume")
@pass_home
def scrub_resume(home: Path) -> None:
    """Scheduled scrubs again (one at once if it came due while paused)."""
    st = _ask(home, "scrub-resume")
    click.echo("scrubs resumed" + ("" if st["next_in_s"] is None else
                                   f": next in {st['next_in_s'] / 3600:.1f} h"))


@scrub.command("start")
@click.pass_context
def scrub_start(ctx: click.Context) -> None:
    """Scrub now: a full repair sweep, reading and verifying every piece (as sofsctl repair)."""
    ctx.invoke(repair)
