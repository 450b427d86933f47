"""``sofsctl volume takeover``: mount on this host a volume whose connector is gone, as the RING
has it (newest checkpoint plus journal, fuse_mount.journaling)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from chunkstore.ring.open import is_networked
from exporters import adopt
from exporters.errors import ExportError
from fuse_mount import control, runstate

from .common import Failure, fail, pass_home
from .exports import report_adopted

DEFAULT_WAIT_S = 60.0


@click.command("takeover")
@click.argument("name")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=DEFAULT_WAIT_S,
              show_default=True, metavar="SECONDS",
              help="How long to wait for the current holder's write lease to end (it ends "
                   "by itself once that connector stopped renewing it).")
@click.option("--lease-ttl", type=click.IntRange(2, 300), default=None, metavar="SECONDS",
              help="Seconds of the write lease this host takes [default: 10].")
@pass_home
def volume_takeover(home: Path, name: str, mountpoint: str, wait_s: float,
                    lease_ttl: int | None) -> None:
    """Take volume NAME over on this host and mount it at MOUNTPOINT.

    For a networked cluster with etcd whose connector of NAME is down, cut off or hung: this
    waits for that connector's write lease to end, takes it (the storage nodes then refuse
    everything the old connector still sends), restores the volume's newest checkpoint from
    the RING, replays the journal written after it, and mounts: every change the old
    connector acknowledged is there. A local copy of the volume's metadata on this host is
    set aside (in the data directory's superseded/), never deleted. The volume's NFS exports
    recorded in the cluster start here too; an SMB export needs its users' passwords here.
    """
    if not is_networked(home):
        raise Failure("volume takeover is for a networked cluster with etcd (sofsctl cluster "
                      "create --etcd); an embedded ring has one host, nothing to take over")
    for st in runstate.all_states(home):
        if st.alive and st.volume == name:
            raise Failure(f"volume {name} is mounted here already at {st.mountpoint} (pid "
                          f"{st.pid})")
    args = ["--takeover", "--takeover-wait", str(wait_s)]
    if lease_ttl is not None:
        args += ["--lease-ttl", str(lease_ttl)]
    try:
        pid = control.start_background(home, name, mountpoint, daemon_args=args,
                                       timeout=wait_s + 600.0)
    except control.MountError as e:
        raise fail(e) from None
    click.echo(f"volume {name} taken over and mounted at {os.path.realpath(mountpoint)} "
               f"(pid {pid}); log: {control.log_path(home, name)}")
    try:  # its exports come along (those recorded in etcd: sofsctl export adopt)
        report_adopted(home, adopt.adopt(home, name))
    except ExportError as e:
        click.echo(f"warning: its exports were not started: {e}; once that is solved: "
                   f"sofsctl export adopt {name}", err=True)
    click.echo(f"stop it with: sofsctl --data-dir {home} umount {mountpoint}")
