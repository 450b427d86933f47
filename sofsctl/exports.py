"""sofsctl ``export`` commands: NFS and SMB exports of mounted volumes.

Thin: parse, call :mod:`exporters.registry`, print. Each export runs under its own supervisor
(:mod:`exporters.supervisor`), which restarts the service when it crashes and stops it when the
volume's FUSE mount goes away. The group is added to the CLI with
``cli.add_command(exports.export)``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from exporters import adopt, exportspec, registry
from exporters.errors import ExportError
from exporters.samba import ENCRYPT, PROTOCOLS, SmbUser

from .common import Failure, FiniteFloat, fail, pass_home, table


@click.group()
def export() -> None:
    """Export mounted volumes over NFS (PACS) and SMB (Windows workstations).

    \b
    Each export is served by NFS-Ganesha or Samba re-exporting the volume's FUSE mount,
    watched by a supervisor that restarts a crashed server and stops the export when the
    mount goes away (clients then get errors, never the empty mount-point directory).
    Logs: DATA_DIR/log/export-VOLUME-KIND.log. Stop exports before unmounting.

    \b
      sofsctl mount pacs /mnt/pacs
      sofsctl export nfs pacs --clients 10.1.2.0/24 --clients 10.1.9.7:ro
      sofsctl export smb pacs --user radiology:2001 --password-file /root/smb.pw
      sofsctl export list
      sofsctl export stop pacs
    """


def _started(st: registry.ExportStatus, log: Path) -> None:
    service = exportspec.SERVICE_NAMES[st.kind]
    click.echo(f"volume {st.volume} exported over {st.kind.upper()} on {st.bind} port {st.port} "
               f"(supervisor pid {st.pid}, {service} pid {st.service_pid}); log: {log}")


@export.command("nfs")
@click.argument("volume")
@click.option("--clients", "clients", multiple=True, required=True, metavar="CIDR[:ro|rw]",
              help="Clients allowed, as a network or address with its access (rw unless "
                   "--ro); repeat it or separate with commas. First match wins; anyone else "
                   "is refused. Required: nobody may connect by default.")
@click.option("--ro", "read_only", is_flag=True, help="Read-only for every client.")
@click.option("--port", type=click.IntRange(1, 65535), default=2049, show_default=True,
              help="NFS TCP port.")
@click.option("--bind", default="0.0.0.0", show_default=True, metavar="ADDR",
              help="Address to listen on (an interface's address to serve one network only).")
@click.option("--no-root-squash", is_flag=True,
              help="Let client root act as root on the volume [default: root is squashed "
                   "to nobody (65534)].")
@click.option("--v3", is_flag=True,
              help="Also serve NFSv3 (needs rpcbind running; NLM is off: clients mount with "
                   "nolock) [default: NFSv4.0 and v4.1 only].")
@click.option("--v42", is_flag=True,
              help="Also serve NFSv4.2 (ALLOCATE/DEALLOCATE for fallocate, SEEK, READ_PLUS); "
                   "Linux clients then use 4.2 by default [default: v4.0 and v4.1].")
@click.option("--mount-port", type=click.IntRange(1, 65535), default=None,
              help="NFSv3 MOUNT port [default: --port + 1].")
@click.option("--grace", type=click.IntRange(0, 180), default=90, show_default=True,
              metavar="SECONDS",
              help="NFSv4 grace period after a (re)start, during which clients reclaim their "
                   "locks and opens; 0 starts without one (Graceless: for tests).")
@click.option("--attr-cache", type=click.IntRange(0, 3600), default=0, show_default=True,
              metavar="SECONDS",
              help="How long the NFS server trusts the attributes and directory entries it "
                   "cached. 0 asks the mount every time, so files written over SMB or on the "
                   "mount are seen at once (close-to-open across protocols). A few seconds "
                   "make small-file writes about a third faster; use it only when NFS clients "
                   "are the volume's only writers.")
@click.option("--timeout", type=FiniteFloat(min=0), default=90.0, show_default=True, hidden=True)
@pass_home
def export_nfs(home: Path, volume: str, clients: tuple[str, ...], read_only: bool, port: int,
               bind: str, no_root_squash: bool, v3: bool, v42: bool, mount_port: int | None,
               grace: int,
               attr_cache: int, timeout: float) -> None:
    """Export mounted volume VOLUME over NFS (pseudo path /VOLUME).

    File handles stay valid across remounts and server restarts: the filesystem id is
    derived from the volume's UUID. Clients mount with, e.g.:

    \b
      mount -t nfs4 -o vers=4.1,port=PORT SERVER:/VOLUME /mnt/VOLUME
    """
    if mount_port is not None and not v3:
        raise click.UsageError("--mount-port is only used with --v3")
    try:
        rules = tuple(exportspec.parse_client(c, read_only)
                      for arg in clients for c in arg.split(",") if c.strip())
        spec = exportspec.ExportSpec(kind="nfs", volume=volume, options=exportspec.NfsOptions(
            clients=rules, read_only=read_only,
            squash="no_root_squash" if no_root_squash else "root_squash",
            port=port, bind=bind, v3=v3, v42=v42, mount_port=mount_port, grace=grace,
            attr_cache=attr_cache,
        ))
        st = registry.create_export(home, spec, timeout=timeout)
    except ExportError as e:
        raise fail(e) from None
    _started(st, registry.log_path(home, volume, "nfs"))


def _read_passwords(names: list[str], password_file: str | None) -> dict[str, str]:
    if password_file is None:
        return {n: click.prompt(f"SMB password for {n}", hide_input=True,
                                confirmation_prompt=True) for n in names}
    try:
        text = sys.stdin.read() if password_file == "-" else Path(password_file).read_text()
    except OSError as e:
        raise Failure(f"cannot read {password_file}: {e.strerror}") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(names) == 1 and len(lines) == 1 and not lines[0].startswith(f"{names[0]}:"):
        return {names[0]: lines[0]}
    out = {}
    for ln in lines:
        name, sep, pw = ln.partition(":")
        if sep and name in names:
            out[name] = pw
    missing = [n for n in names if n not in out]
    if missing:
        raise Failure(f"{password_file}: no NAME:PASSWORD line for {', '.join(missing)}")
    return out


@export.command("smb")
@click.argument("volume")
@click.option("--user", "users", multiple=True, required=True, metavar="NAME[:UID]",
              help="A user allowed to connect (repeat it). Samba acts as the POSIX user NAME; "
                   "a user that does not exist yet is created with UID (and a group of the "
                   "same id).")
@click.option("--password-file", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              metavar="FILE",
              help="NAME:PASSWORD lines (a single user's file may hold just the password); "
                   "'-' reads stdin [default: prompt for each user].")
@click.option("--ro", "read_only", is_flag=True, help="Read-only share.")
@click.option("--port", type=click.IntRange(1, 65535), default=445, show_default=True,
              help="SMB TCP port.")
@click.option("--bind", default="0.0.0.0", show_default=True, metavar="ADDR",
              help="Address to listen on (an interface's address to serve one network only).")
@click.option("--min-protocol", type=click.Choice(PROTOCOLS), default="SMB2_02",
              show_default=True,
              help="Oldest protocol accepted (SMB2_02 lets pysmb-based tools in; SMB3 refuses "
                   "all but SMB3 clients). Signing is always mandatory.")
@click.option("--encrypt", type=click.Choice(ENCRYPT), default="desired", show_default=True,
              help="SMB3 encryption: used when the client can (desired), demanded (required: "
                   "SMB2 clients are refused) or off.")
@click.option("--owner", default=None, metavar="USER[:GROUP]",
              help="Make USER (and GROUP, else USER's group) the owner of the volume's root "
                   "before sharing it, so that USER can write there (a new volume's root is "
                   "root:root 0755: nobody else can). USER may be one of the --user users.")
@click.option("--timeout", type=FiniteFloat(min=0), default=90.0, show_default=True, hidden=True)
@pass_home
def export_smb(home: Path, volume: str, users: tuple[str, ...], password_file: str | None,
               read_only: bool, port: int, bind: str, min_protocol: str, encrypt: str,
               owner: str | None, timeout: float) -> None:
    """Share mounted volume VOLUME over SMB (share name VOLUME).

    DOS attributes and Windows ACLs are kept in the volume's xattrs; internal names are
    hidden. Windows: \\\\SERVER\\VOLUME (a port other than 445 needs a client that can
    choose it).

    Says which POSIX users it created (and which existed), and warns about each user that
    cannot write to the share root (judged from its mode, owner, group and ACL).
    """
    try:
        resolved = tuple(exportspec.resolve_smb_user(u) for u in users)
        names = [a.name for a in resolved]
        if len(set(names)) != len(names):
            raise Failure("a user is given twice")
        passwords = _read_passwords(names, password_file)
        smb_users = [SmbUser(a.name, passwords[a.name], a.uid, a.gid) for a in resolved]
        spec = exportspec.ExportSpec(kind="smb", volume=volume, options=exportspec.SmbOptions(
            users=resolved, read_only=read_only, port=port, bind=bind,
            min_protocol=min_protocol, encrypt=encrypt,
        ))
        done = registry.create_smb_export(home, spec, users=smb_users, owner=owner,
                                          timeout=timeout)
    except ExportError as e:
        raise fail(e) from None
    for user in done.users:
        click.echo(user.line())
    if done.owner is not None:
        click.echo(done.owner.line())
    _started(done.status, registry.log_path(home, volume, "smb"))
    for warning in done.warnings:
        click.echo(f"warning: {warning}", err=True)


@export.command("list")
@click.option("--json", "as_json", is_flag=True, help="Everything known, as JSON.")
@pass_home
def export_list(home: Path, as_json: bool) -> None:
    """List the exports, their state, supervisor and server pids, restarts and who may connect.

    \b
    STATE: running, starting, restarting, stopped, failed (could not start or crashed too
    often), mount-gone (the volume's mount went away: the export was stopped), dead (the
    supervisor was killed).
    """
    exports = registry.list_exports(home)
    if as_json:
        click.echo(json.dumps([asdict(e) for e in exports], indent=1))
        return
    if not exports:
        click.echo("no exports")
        return
    rows: list[tuple[object, ...]] = [("VOLUME", "KIND", "PORT", "STATE", "PID", "SERVER-PID", "RESTARTS",
             "CLIENTS/USERS", "PROBE")]
    for e in exports:
        probe = "-" if e.probe_ok is None else ("ok" if e.probe_ok else "FAILING")
        rows.append((e.volume, e.kind, e.port, e.state, e.pid or "-", e.service_pid or "-",
                     e.restarts, e.who, probe))
    table(rows)
    for e in exports:
        if e.state in ("failed", "mount-gone", "dead") and e.message:
            click.echo(f"{e.volume} {e.kind}: {e.message}")
        elif e.probe_ok is False and e.probe_message:
            click.echo(f"{e.volume} {e.kind}: health probe: {e.probe_message}")


def _kinds(kind: str | None) -> tuple[str, ...]:
    return (kind,) if kind else exportspec.KINDS


@export.command("stop")
@click.argument("volume")
@click.option("--kind", type=click.Choice(exportspec.KINDS), default=None,
              help="Stop only this export [default: every export of VOLUME].")
@click.option("--timeout", type=FiniteFloat(min=0), default=60.0, show_default=True,
              help="Seconds to wait for the supervisor to stop its server.")
@pass_home
def export_stop(home: Path, volume: str, kind: str | None, timeout: float) -> None:
    """Stop the exports of VOLUME (their clients get disconnected)."""
    done = 0
    try:
        for k in _kinds(kind):
            if not (registry.export_dir(home, volume, k) / "spec.json").is_file():
                continue
            click.echo(registry.stop_export(home, volume, k, timeout=timeout))
            done += 1
    except ExportError as e:
        raise fail(e) from None
    if not done:
        raise Failure(f"volume {volume} has no {kind + ' ' if kind else ''}export")


@export.command("remove")
@click.argument("volume")
@click.option("--kind", type=click.Choice(exportspec.KINDS), default=None,
              help="Remove only this export [default: every export of VOLUME].")
@pass_home
def export_remove(home: Path, volume: str, kind: str | None) -> None:
    """Forget the stopped exports of VOLUME (saved settings, config, run directory); refused
    while one runs. The SMB users they created stay (userdel removes them)."""
    done = 0
    try:
        for k in _kinds(kind):
            if not (registry.export_dir(home, volume, k) / "spec.json").is_file():
                continue
            click.echo(registry.remove_export(home, volume, k))
            done += 1
    except ExportError as e:
        raise fail(e) from None
    if not done:
        raise Failure(f"volume {volume} has no {kind + ' ' if kind else ''}export")


@export.command("adopt")
@click.argument("volume")
@pass_home
def export_adopt(home: Path, volume: str) -> None:
    """Start here the exports VOLUME had on the host it was taken over from.

    For a networked cluster with etcd, where every export created is recorded:
    `sofsctl volume takeover` does this by itself; run it after a standby mount
    (`sofsctl mount --standby`) took the volume over. An SMB export needs its users'
    passwords on this host: the command says how to give them."""
    try:
        results = adopt.adopt(home, volume)
    except ExportError as e:
        raise fail(e) from None
    report_adopted(home, results)
    if any(r.status is None and r.problem != "already running here" for r in results):
        raise SystemExit(1)


def report_adopted(home: Path, results: list[adopt.Adopted]) -> None:
    """One line per export adopt() started or could not start."""
    if not results:
        click.echo("no export of this volume is recorded in the cluster")
    for r in results:
        if r.status is not None:
            _started(r.status, registry.log_path(home, r.volume, r.kind))
        else:
            click.echo(f"the {r.kind} export of {r.volume} was not started: {r.problem}",
                       err=True)


@export.command("start")
@click.argument("volume")
@click.option("--kind", type=click.Choice(exportspec.KINDS), default=None,
              help="Start only this export [default: every saved export of VOLUME].")
@pass_home
def export_start(home: Path, volume: str, kind: str | None) -> None:
    """Start saved exports of VOLUME again, as last configured (after a stop or a reboot;
    SMB passwords are kept)."""
    done = 0
    try:
        for k in _kinds(kind):
            edir = registry.export_dir(home, volume, k)
            if not (edir / "spec.json").is_file():
                continue
            done += 1
            if registry.supervisor_pid(edir) is not None:
                click.echo(f"the {k} export of {volume} is already running")
                continue
            st = registry.start_export(home, volume, k)
            _started(st, registry.log_path(home, volume, k))
    except ExportError as e:
        raise fail(e) from None
    if not done:
        raise Failure(f"volume {volume} has no saved {kind + ' ' if kind else ''}export; "
                      "create one with sofsctl export nfs|smb")

