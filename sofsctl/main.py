"""sofsctl: the storage admin's command line. Thin: parse, call the layers below, print.

Exit codes: 0 success; 1 the operation failed (the message says why and what to do); 2 bad
usage; 3 ``repair`` finished but some chunks could not be recovered.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import click

from chunkstore import errors as cerr
from chunkstore.metricsendpoint import MetricsEndpointError, format_address, parse_address
from chunkstore.protection.policy import parse_policy
from chunkstore.ring.localcluster import init_local_cluster, load_config, lock_holder
from chunkstore.ring.mapadmin import load_map, register_volume
from chunkstore.ring.open import has_cluster, is_networked
from exporters.errors import ExportError
from exporters.registry import stop_exports
from exporters.service import listen_problem
from fuse_mount import control, ringhost, runstate
from sofs import errors as ferr
from sofs.fsck import UNREFERENCED_CHUNK, FsckReport, Problem, check_volume
from sofs.volume import create_volume, protection_for
from sofs.worm.policy import DomainPolicy, format_duration

from .checkpoints import volume_checkpoint, volume_restore
from .common import Failure, FiniteFloat, default_data_dir, fail, human, parse_size, pass_home, table
from .etcdcmds import etcd
from .exports import export
from .inspect import chunk, file_group
from .jobs import open_ring_or_host, require_volume, volumes
from .maintenancecmd import maintenance, scrub
from .nodes import cluster_create, disk, node
from .progress import PhaseLines
from .repaircmd import repair
from .snapshotcmds import snapshot
from .status import status
from .supervise import supervise
from .takeover import volume_takeover
from .trashcmds import trash, trash_seconds
from .usage import df, volume_show
from .volumecmds import volume_delete, volume_set
from .wormcmds import make_domain, policy_options, worm


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where the cluster, volumes, logs and run state live "
                   "[default: $SOFS_HOME, else /var/lib/sofs as root, ~/.local/share/sofs].")
@click.version_option(package_name="sofs")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None) -> None:
    """Manage a sofs archive: the RING of disks, volumes, mounts and repair.

    \b
    A first archive on one machine:
      sofsctl cluster init --local /srv/sofs --disks 6
      sofsctl --data-dir /srv/sofs volume create pacs --ec 4+2
      sofsctl --data-dir /srv/sofs mount pacs /mnt/pacs
    """
    home = data_dir or default_data_dir()
    if home.exists() and not home.is_dir():
        raise Failure(f"the data directory {home} is not a directory (--data-dir or SOFS_HOME)")
    ctx.obj = home


# ---------------------------------------------------------------------------------------- cluster

@cli.group()
def cluster() -> None:
    """Create and inspect the RING."""


@cluster.command("init")
@click.option("--local", "local_dir", type=click.Path(path_type=Path), default=None,
              help="Create an embedded ring of disk directories under this data directory "
                   "[default: the --data-dir].")
@click.option("--disks", type=click.IntRange(1, 64), default=6, show_default=True,
              help="Number of disk directories (DATA_DIR/disks/d0 ...).")
@click.option("--vnodes", type=click.IntRange(1, 256), default=6, show_default=True,
              help="Virtual nodes per disk on the ring.")
@pass_home
def cluster_init(home: Path, local_dir: Path | None, disks: int, vnodes: int) -> None:
    """Create a local cluster: disk directories, the ring and its map. Safe to run twice."""
    data_dir = local_dir or home
    try:
        cfg = init_local_cluster(data_dir, disks=disks, vnodes=vnodes)
    except cerr.ChunkStoreError as e:
        raise fail(e) from None
    click.echo(f"cluster {cfg.cluster_id} in {data_dir}: {disks} disks, {vnodes} vnodes each")
    if local_dir and local_dir != home:
        click.echo(f"use it with: export SOFS_HOME={data_dir}  (or --data-dir {data_dir})")


# ---------------------------------------------------------------------------------------- volume

@cli.group()
def volume() -> None:
    """Create, list, checkpoint and restore volumes (POSIX namespaces with their protection)."""


@volume.command("create")
@click.argument("name")
@click.option("--ec", metavar="K+M", default=None,
              help="Erasure-code chunks above the small-object threshold as K data + M parity "
                   "fragments; smaller chunks get M+1 copies [default: 4+2].")
@click.option("--cos", type=click.IntRange(0, 5), default=None,
              help="Replicate every chunk with N+1 copies instead (class of service N).")
@click.option("--compress", type=click.Choice(["zstd", "none"]), default="zstd",
              show_default=True, help="Compress blocks (stored raw when they do not shrink).")
@click.option("--zstd-level", type=click.IntRange(1, 22), default=1, show_default=True,
              help="zstd level: 1 is fastest, 3 saves ~12% more on CT data at 2.3x the CPU.")
@click.option("--block-size", default="4M", show_default=True,
              help="File data block (chunk) size, a power of two from 64K to 64M.")
@click.option("--yes-i-really-mean-it", "single_copy_ok", is_flag=True,
              help="Accept a policy that keeps a single copy of some data (--cos 0, --ec K+0): "
                   "losing one disk then loses data.")
@click.option("--trash", "trash_time", default="7d", show_default=True, metavar="DURATION",
              help="Keep deleted files this long in the volume's trash (0 turns it off; "
                   "a WORM volume has none).")
@click.option("--worm", type=click.Choice(["compliance", "enterprise"]), default=None,
              help="Make the whole volume a WORM domain of this mode (see worm domain create; "
                   "the retention options below apply to it).")
@policy_options
@pass_home
def volume_create(home: Path, name: str, ec: str | None, cos: int | None, compress: str,
                  zstd_level: int, block_size: str, single_copy_ok: bool, trash_time: str,
                  worm: str | None, **retention: str) -> None:
    """Create volume NAME in the cluster."""
    if ec and cos is not None:
        raise Failure("choose either --ec or --cos, not both")
    if worm:
        try:  # a policy that cannot be is refused before anything is created
            DomainPolicy.parse(worm, retention["default_retention"], retention["min_retention"],
                               retention["max_retention"], retention["autocommit"])
        except ferr.FsError as e:
            raise fail(e) from None
    else:
        changed = [k for k, v in retention.items()
                   if click.get_current_context().get_parameter_source(k)
                   is not click.core.ParameterSource.DEFAULT]
        if changed:
            raise Failure(f"--{changed[0].replace('_', '-')} applies to a WORM volume: give "
                          "--worm compliance|enterprise too")
    if compress == "none" and zstd_level != 1:
        click.echo("note: --zstd-level has no effect with --compress none", err=True)
    try:
        ndisks = _placing_disks(home)
        try:
            small, large = protection_for(ec.strip() if ec else ec, cos)
        except (ferr.FsError, cerr.ChunkStoreError) as e:
            if ec is None:
                raise
            raise Failure(f"--ec takes K+M, K data and M parity fragments on K+M distinct "
                          f"disks, such as 4+2; this cluster fits {ndisks} pieces "
                          f"({_fitting(ndisks)}) ({e})") from None
        for spec in (small, large):
            policy = parse_policy(spec)
            if policy.width > ndisks:
                raise Failure(f"{spec} puts {policy.width} pieces on distinct disks, but the "
                              f"cluster has {ndisks} disks: choose at most {ndisks} pieces "
                              f"({_fitting(ndisks)}, or --cos {min(ndisks, 6) - 1})")
            if policy.width == policy.min_pieces and not single_copy_ok:
                raise Failure(f"{spec} survives no disk loss: losing one disk loses data. "
                              "Give --yes-i-really-mean-it if that is really meant (scratch "
                              "data only)")
        def announce(c) -> None:  # a cluster with etcd: its width, for every admin's checks
            if is_networked(home):
                register_volume(home, c.uuid, c.name, max(
                    parse_policy(c.small_policy).width, parse_policy(c.large_policy).width))

        cfg = create_volume(home, name, small_policy=small, large_policy=large,
                            zstd_level=zstd_level if compress == "zstd" else 0,
                            block_size=parse_size(block_size),
                            trash_s=0 if worm else trash_seconds(trash_time),
                            announce=announce)
    except (ferr.FsError, cerr.ChunkStoreError) as e:
        raise fail(e) from None
    click.echo(f"volume {cfg.name} created: large chunks {cfg.large_policy}, small chunks "
               f"{cfg.small_policy} (< {human(cfg.threshold)}), compression {cfg.compression}, "
               f"blocks of {human(cfg.block_size)}, "
               + (f"trash {format_duration(cfg.trash_s * 10**9)}" if cfg.trash_s else "no trash"))
    if worm:
        try:
            click.echo(make_domain(home, name, "/", worm, **retention))
        except click.ClickException as e:
            raise Failure(f"volume {name} was created, but not as WORM: {e.format_message()}; "
                          f"make it WORM with sofsctl worm domain create {name} / --mode "
                          f"{worm} before storing anything, or delete it") from None


@volume.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema in sofsctl(8)).")
@pass_home
def volume_list(home: Path, as_json: bool) -> None:
    """List volumes with their policies and where they are mounted."""
    vols = volumes(home)
    if not vols and not has_cluster(home):
        raise Failure(f"no cluster at {home}: give its data directory (--data-dir before the "
                      "command, or SOFS_HOME), or create one: sofsctl cluster init")
    mounts = {s.volume: s for s in runstate.all_states(home) if s.alive}
    if as_json:
        click.echo(json.dumps([{
            "name": v.name, "uuid": v.uuid, "created": v.created, "large_policy": v.large_policy,
            "small_policy": v.small_policy, "compression": v.compression,
            "block_size": v.block_size,
            "mountpoint": mounts[v.name].mountpoint if v.name in mounts else None,
            "pid": mounts[v.name].pid if v.name in mounts else None} for v in vols], indent=1))
        return
    if not vols:
        click.echo("no volumes (create one: sofsctl volume create NAME)")
        return
    rows = [("NAME", "LARGE", "SMALL", "COMPRESSION", "BLOCK", "MOUNTED AT")]
    for v in vols:
        m = mounts.get(v.name)
        rows.append((v.name, v.large_policy, v.small_policy, v.compression, human(v.block_size),
                     f"{m.mountpoint} (pid {m.pid})" if m else "-"))
    table(rows)


def _fitting(ndisks: int) -> str:
    """EC layouts of ``ndisks`` pieces with at least 2 parity, e.g. ``4+2, 3+3``."""
    shapes = [f"{k}+{ndisks - k}" for k in range(ndisks - 2, 0, -1) if ndisks - k >= 2][:3]
    return ", ".join(shapes) or "none: use --cos"


def _placing_disks(home: Path) -> int:
    if is_networked(home):
        return len(load_map(home).placing_disks())
    return len(load_config(home).disks)


# ---------------------------------------------------------------------------------------- mount

@cli.command()
@click.argument("name")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--foreground", "-f", is_flag=True, help="Serve in this process until unmounted.")
@click.option("--gc-grace", type=FiniteFloat(min=0), default=None, metavar="SECONDS",
              help="Keep unreferenced chunks this long before deleting them [default: 3600].")
@click.option("--gc-interval", type=FiniteFloat(min=0.1), default=None, metavar="SECONDS",
              help="Time between garbage-collection (and disk compaction) passes [default: 60].")
@click.option("--down-after", type=FiniteFloat(min=0), default=None, metavar="SECONDS",
              help="Networked RING: how long a node may be unreachable before it is marked "
                   "down and its data rebuilt on the others [default: 300].")
@click.option("--scrub-interval", type=FiniteFloat(min=60), default=None, metavar="SECONDS",
              help="Time between full sweeps that re-read, verify and repair every piece "
                   "[default: 604800, a week].")
@click.option("--rebuild-rate", type=FiniteFloat(min=0.1), default=None, metavar="MIB/S",
              help="Cap on rebuild, rebalance and scrub disk traffic [default: no cap].")
@click.option("--checkpoint-interval", type=FiniteFloat(min=0), default=None,
              metavar="SECONDS",
              help="Time between checkpoints of the volume's metadata into the RING, which "
                   "`sofsctl volume restore` brings back on a host that lost it; one is also "
                   "taken at unmount. 0 turns them off [default: 600].")
@click.option("--take-over", is_flag=True,
              help="Mount this copy of the volume's metadata even though another host wrote "
                   "newer checkpoints of it (refused otherwise: it would fork the volume), and "
                   "make it the one a restore brings back.")
@click.option("--lease-ttl", type=click.IntRange(2, 300), default=None, metavar="SECONDS",
              help="Networked RING with etcd: seconds of the volume's write lease; a mount "
                   "that cannot renew it in time turns read-only, and another host may then "
                   "mount the volume [default: 10].")
@click.option("--standby", is_flag=True,
              help="Networked RING with etcd: wait as a standby while another host holds the "
                   "volume's write lease; once it ends (that host is down or cut off), take "
                   "the volume over as the RING has it and mount it here (see `sofsctl volume "
                   "takeover`). Returns at once; stop a standby with kill PID.")
@click.option("--metrics", metavar="HOST:PORT", default=None,
              help="Serve Prometheus metrics of the mount (FUSE requests, cache, GC, healer, "
                   "disks) on http://HOST:PORT/metrics [default: off].")
@click.option("--exclusive-ring", is_flag=True,
              help="Embedded ring: hold it in the mount process itself instead of sharing the "
                   "data directory's ring host; no other volume can be mounted meanwhile "
                   "(what that saves: sofs(7) PERFORMANCE).")
@pass_home
def mount(home: Path, name: str, mountpoint: str, foreground: bool,
          gc_grace: float | None, gc_interval: float | None, down_after: float | None,
          scrub_interval: float | None, rebuild_rate: float | None,
          checkpoint_interval: float | None, take_over: bool, lease_ttl: int | None,
          standby: bool, metrics: str | None, exclusive_ring: bool) -> None:
    """Mount volume NAME at MOUNTPOINT (in the background unless --foreground).

    Several volumes of one data directory may be mounted at once: on an embedded ring the
    first mount starts the data directory's ring host, which serves the disks to every mount
    and runs the repairs and scrubs; it ends after the last unmount."""
    metrics_at = _metrics_address(metrics) if metrics is not None else None
    if standby and not is_networked(home):
        raise Failure("--standby is for a networked cluster with etcd")
    if not standby:  # a standby may have no copy of the volume yet: it comes from the RING
        require_volume(home, name)
    alive = [st for st in runstate.all_states(home) if st.alive]
    for st in alive:
        if st.volume == name:
            raise Failure(f"volume {name} is already mounted at {st.mountpoint} (pid {st.pid}); "
                          f"to mount it elsewhere: sofsctl umount {st.mountpoint}")
    if not is_networked(home) and alive:
        holder = lock_holder(home)
        owner = next((st for st in alive if st.pid == holder), None)
        if owner is not None:  # a mount holds the ring itself: nothing else can use it
            raise Failure(f"volume {owner.volume} is mounted at {owner.mountpoint} (pid "
                          f"{owner.pid}) holding the embedded ring itself (--exclusive-ring): "
                          f"unmount it first: sofsctl umount {owner.mountpoint}")
        if exclusive_ring:
            st = alive[0]
            raise Failure(f"volume {st.volume} is mounted at {st.mountpoint} (pid {st.pid}); "
                          "--exclusive-ring needs every other volume of the data directory "
                          f"unmounted first: sofsctl umount {st.mountpoint}")
    maintenance = []
    if scrub_interval is not None:
        maintenance += ["--scrub-interval", str(scrub_interval)]
    if rebuild_rate is not None:
        maintenance += ["--rebuild-rate", str(rebuild_rate)]
    if checkpoint_interval is not None:
        maintenance += ["--checkpoint-interval", str(checkpoint_interval)]
    if take_over:
        maintenance.append("--take-over")
    if lease_ttl is not None:
        maintenance += ["--lease-ttl", str(lease_ttl)]
    if standby:
        maintenance.append("--standby")
    if metrics_at is not None:
        maintenance += ["--metrics", format_address(*metrics_at)]
    if exclusive_ring:
        maintenance.append("--exclusive-ring")
    try:
        if foreground:
            control.check_mountpoint(mountpoint)
            # imported here, not at the top: pyfuse3 costs ~150 ms that no other command needs
            from fuse_mount.daemon import main as daemon_main
            args = ["--data-dir", str(home), name, mountpoint]
            if gc_grace is not None:
                args = ["--gc-grace", str(gc_grace)] + args
            if gc_interval is not None:
                args = ["--gc-interval", str(gc_interval)] + args
            if down_after is not None:
                args = ["--down-after", str(down_after)] + args
            sys.exit(daemon_main(maintenance + args))
        pid = control.start_background(home, name, mountpoint, gc_grace_s=gc_grace,
                                       gc_interval_s=gc_interval, down_after_s=down_after,
                                       daemon_args=maintenance, standby_ok=standby)
    except control.MountError as e:
        raise fail(e) from None
    if standby and not os.path.ismount(mountpoint):
        click.echo(f"volume {name}: standby (pid {pid}) waiting for the write lease; it mounts "
                   f"at {os.path.realpath(mountpoint)} when the holder's lease ends; log: "
                   f"{control.log_path(home, name)}")
        return
    click.echo(f"volume {name} mounted at {os.path.realpath(mountpoint)} (pid {pid}); "
               f"log: {control.log_path(home, name)}")
    click.echo(f"stop it with: sofsctl --data-dir {home} umount {mountpoint}")


def _metrics_address(text: str) -> tuple[str, int]:
    """``mount --metrics``: HOST:PORT that this host can listen on, or a usage error."""
    try:
        host, port = parse_address(text)
    except MetricsEndpointError as e:
        raise click.BadParameter(str(e), param_hint="--metrics") from None
    problem = listen_problem(host, port) if port else None
    if problem is not None:
        raise click.BadParameter(f"cannot serve metrics there: {problem}",
                                 param_hint="--metrics")
    return host, port


@cli.command()
@click.argument("mountpoint", type=click.Path())
@click.option("--timeout", type=FiniteFloat(min=0), default=120.0, show_default=True,
              help="Seconds to wait for the mount process to flush and exit.")
@pass_home
def umount(home: Path, mountpoint: str, timeout: float) -> None:
    """Unmount MOUNTPOINT cleanly (flushing everything), or clear a dead mount.

    MOUNTPOINT may also be the name of a mounted volume. NFS and SMB exports of the volume
    are stopped first. When other mount namespaces (containers, `ip netns exec` or `unshare`
    shells) still hold a copy of the mount, they are named with the command that clears them,
    and the mount process is ended."""
    st = runstate.find(home, mountpoint)
    if st is None and not os.path.exists(mountpoint):
        named = [s for s in runstate.all_states(home) if s.volume == mountpoint]
        if named:
            st, mountpoint = named[0], named[0].mountpoint
        elif mountpoint in {v.name for v in volumes(home)}:
            raise Failure(f"volume {mountpoint} is not mounted")
    if st is not None:
        try:
            for line in stop_exports(home, st.volume):
                click.echo(line)
        except ExportError as e:
            raise Failure(f"cannot stop the exports of volume {st.volume}: {e}") from None
    try:
        click.echo(control.unmount(home, mountpoint, timeout=timeout))
    except control.MountError as e:
        raise fail(e) from None
    if not is_networked(home):
        try:
            if ringhost.stop_if_unused(home):
                click.echo("no volume is mounted any more: the ring host stopped")
        except control.MountError as e:
            click.echo(f"warning: {e}", err=True)


# ---------------------------------------------------------------------------------------- fsck

# what fsck's phases count (sofs.fsck: progress(phase, done, total_or_0))
FSCK_UNITS = {"inodes": "inodes", "keys": "keys", "blocks": "blocks", "refcounts": "chunks",
              "unreferenced": "chunks",
              "entries": "entries", "repair": "fixes"}


def _report_from_json(d: dict) -> FsckReport:
    return FsckReport(**{**d, "problems": tuple(Problem(**p) for p in d["problems"]),
                         "open_orphans": tuple(d["open_orphans"])})


def _echo_unreferenced(report: FsckReport, verbose: bool) -> None:
    """``unreferenced chunks: 3 (1.2 MiB), queued for the collector: KEY KEY KEY``."""
    if not report.unreferenced:
        return
    chunks = [p for p in report.problems if p.kind == UNREFERENCED_CHUNK]
    keys = [p.detail.split()[1].rstrip(":") for p in chunks]
    shown = keys if verbose else keys[:5]
    more = "" if len(shown) == len(keys) else f" (and {len(keys) - len(shown)} more: --verbose)"
    fate = (", queued for the collector (deleted after its grace period)"
            if all(p.repaired for p in chunks) else
            ", reclaimed by --repair (through the collector)")
    click.echo(f"unreferenced chunks: {report.unreferenced} ({human(report.unreferenced_bytes)})"
               f"{fate}: {' '.join(shown)}{more}")


def _check_offline(home: Path, name: str, repair: bool, bars: PhaseLines) -> FsckReport:
    ring = None
    try:
        ring = open_ring_or_host(home)
    except cerr.ClusterInUse:
        click.echo("note: the ring is held by a volume mounted with --exclusive-ring; chunks "
                   "are not checked", err=True)
    except cerr.ChunkStoreError as e:
        raise fail(e) from None
    try:
        return check_volume(home, name, ring, repair=repair, progress=bars)
    except ferr.FsError as e:
        raise fail(e) from None
    finally:
        if ring is not None:
            ring.close()


@cli.command()
@click.argument("name")
@click.option("--repair", is_flag=True,
              help="Fix what can be fixed (orphans to /lost+found, link counts, refcounts, "
                   "stale keys; unreferenced chunks go to the collector, deleted after its "
                   "grace period); referenced data is never deleted. Needs the volume "
                   "unmounted.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report as JSON (schema in sofsctl(8)); same exit status.")
@click.option("--verbose", is_flag=True,
              help="List every unreferenced chunk (by default the count, bytes and a few keys).")
@pass_home
def fsck(home: Path, name: str, repair: bool, as_json: bool, verbose: bool) -> None:
    """Check volume NAME's metadata against itself and the chunk store.

    A mounted volume is checked in place: its mount process checks a consistent checkpoint
    of the metadata (the garbage collector waits meanwhile) and users keep working. Repairs
    need the volume unmounted. Exit status: 0 the volume is clean (after --repair, if given),
    4 problems remain, 1 the check could not run.
    """
    require_volume(home, name)
    mounted = next((st for st in runstate.all_states(home) if st.alive and st.volume == name),
                   None)
    bars = PhaseLines(FSCK_UNITS)
    try:
        if mounted is None:
            report = _check_offline(home, name, repair, bars)
        elif repair:
            raise Failure(f"volume {name} is mounted at {mounted.mountpoint}; --repair needs it "
                          f"unmounted: sofsctl umount {mounted.mountpoint}")
        else:
            click.echo(f"volume {name} is mounted at {mounted.mountpoint}: checking a "
                       "checkpoint of its metadata", err=True)
            try:
                report = _report_from_json(control.call(
                    home, "fsck", lambda done, total, *rest, phase="": bars(phase, done, total),
                    volume=name))
            except control.MountError as e:
                raise fail(e) from None
    except BaseException as e:
        bars.finish(ok=False, note="interrupted" if isinstance(e, KeyboardInterrupt) else "failed")
        raise
    bars.finish()
    shown = [p for p in report.problems if not (p.kind == "orphan-inode"
                                                 and p.ino in report.open_orphans)]
    if as_json:
        click.echo(json.dumps({"format": 1, "volume": name, **dataclasses.asdict(report)},
                              indent=1))
        sys.exit(0 if all(p.repaired or p.kind == UNREFERENCED_CHUNK for p in shown) else 4)
    click.echo(f"volume {name}: {report.inodes} inodes ({report.files} files, "
               f"{report.directories} directories, {report.symlinks} symlinks), "
               f"{report.blocks} blocks in {report.chunks} chunks, {human(report.bytes)}")
    listed = [p for p in shown if p.kind != UNREFERENCED_CHUNK]
    for p in listed[:50]:
        where = f"inode {p.ino}: " if p.ino is not None else ""
        fixed = " [repaired]" if p.repaired else ""
        click.echo(f"{p.kind}: {where}{p.detail}{fixed}")
    if len(listed) > 50:
        click.echo(f"... and {len(listed) - 50} more")
    _echo_unreferenced(report, verbose)
    if report.open_orphans:
        click.echo(f"{len(report.open_orphans)} files unlinked while open: freed at next mount")
    # unreferenced chunks are space to reclaim (a crash leaves some), not an inconsistency
    left = [p for p in shown if not p.repaired and p.kind != UNREFERENCED_CHUNK]
    if not left:
        click.echo(f"clean ({report.repaired} problems repaired)" if report.repaired else "clean")
        return
    hint = "" if repair else ("; unmount it and run again with --repair" if mounted
                              else "; run again with --repair")
    click.echo(f"{len(left)} problems remain{hint}", err=True)
    sys.exit(4)


cluster.add_command(cluster_create)
volume.add_command(volume_checkpoint)
volume.add_command(volume_restore)
volume.add_command(volume_takeover)
volume.add_command(volume_show)
volume.add_command(volume_delete)
volume.add_command(volume_set)
cli.add_command(node)
cli.add_command(etcd)
cli.add_command(disk)
cli.add_command(export)
cli.add_command(status)
cli.add_command(supervise)
cli.add_command(repair)
cli.add_command(maintenance)
cli.add_command(scrub)
cli.add_command(df)
cli.add_command(chunk)
cli.add_command(file_group)
cli.add_command(worm)
cli.add_command(snapshot)
cli.add_command(trash)


def main() -> None:
    cli(args=data_dir_first(sys.argv[1:]), prog_name="sofsctl")


def data_dir_first(argv: list[str]) -> list[str]:
    """``--data-dir DIR`` is an option of sofsctl itself; given after the command
    (``sofsctl status --data-dir DIR``), it is moved before it, where click reads it."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if i > 0 and arg == "--data-dir" and i + 1 < len(argv):
            return [arg, argv[i + 1], *argv[:i], *argv[i + 2:]]
        if i > 0 and arg.startswith("--data-dir="):
            return [arg, *argv[:i], *argv[i + 1:]]
    return argv


if __name__ == "__main__":
    main()
