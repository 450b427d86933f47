"""``sofsctl etcd init|run|status``: an etcd of its own for a networked cluster that has none.

Thin: the settings and certificates are :mod:`chunkstore.authority.settings`'s, the member's
command line :mod:`chunkstore.authority.etcdmember`'s, the status the client's."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import click

from chunkstore.authority import etcdmember, settings
from chunkstore.authority.etcd import EtcdClient
from chunkstore.errors import ConfigError, EtcdError, EtcdUnavailable

from .common import fail, human, pass_home, table


@click.group()
def etcd() -> None:
    """The cluster's etcd (its authority: map, liveness, leases): set up, run, check."""


@etcd.command("init")
@click.option("--member", "members", multiple=True, metavar="NAME=HOST[:PORT[:PEER_PORT]]",
              help="A member and the address it serves on (client port 2379 and peer port "
                   "2380 by default); give 1, 3 or 5. Default: one member e0=127.0.0.1.")
@click.option("--name", "cluster_name", default=None,
              help="Name in the cluster CA's certificate (default: the data directory's).")
@pass_home
def etcd_init(home: Path, members: tuple[str, ...], cluster_name: str | None) -> None:
    """Set up the etcd members of this cluster: the cluster CA (if there is none), a server
    certificate per member, the client certificate sofs processes present, and
    DATA/etcd/members.json. Then start each member on its host with `sofsctl etcd run NAME`
    (or the unit sofs-etcd@NAME)."""
    try:
        specs = [settings.parse_member(m) for m in members] or \
            [etcdmember.MemberSpec("e0", "127.0.0.1")]
        s = settings.init(home, specs, cluster_name or home.name or "sofs")
    except (ConfigError, OSError) as e:
        raise fail(e) from None
    click.echo(f"etcd of {len(s.members)} member(s) set up in {home} (token {s.token}):")
    for m in s.members:
        click.echo(f"  {m.name}: {m.client_url} (peers {m.peer_url})")
    if len(s.members) > 1:
        click.echo(f"copy {home}/etcd/members.json and {home}/pki (ca.key excepted) to each "
                   "member's host, then start every member there:")
    click.echo("  " + "\n  ".join(f"sofsctl --data-dir {home} etcd run {m.name}"
                                  for m in s.members))


@etcd.command("run")
@click.argument("name")
@click.option("--join", is_flag=True,
              help="Join a cluster that already runs (a replaced member) instead of starting "
                   "a new one.")
@pass_home
def etcd_run(home: Path, name: str, join: bool) -> None:
    """Run etcd member NAME in the foreground (replaces this process: for a service manager;
    its log goes to stderr). Its database is DATA/etcd/NAME (mode 0700)."""
    try:
        s = settings.load(home)
        me = s.member(name)
        etcdmember.prepare_member_dir(home, name)
        argv = etcdmember.etcd_argv(home, me, list(s.members), settings.member_tls(home, name),
                                    s.token, state="existing" if join else "new")
    except (ConfigError, OSError) as e:
        raise fail(e) from None
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        raise fail(f"cannot start {argv[0]}: {e} (scripts/install installs etcd-server)") \
            from None


@etcd.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per member.")
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=3.0, show_default=True,
              help="Seconds to wait for each member.")
@pass_home
def etcd_status(home: Path, as_json: bool, timeout: float) -> None:
    """Each member's health as it says itself: up, leader, version, database size. Exits 1
    unless a majority of the members answer and agree on a leader."""
    try:
        s = settings.load(home)
        with EtcdClient(s.endpoints, settings.client_tls(home), timeout=timeout) as client:
            status = client.status()
    except (ConfigError, EtcdError, EtcdUnavailable) as e:
        raise fail(e) from None
    up = [st for st in status if st.ok]
    leaders = {st.leader for st in up}
    healthy = len(up) > len(status) // 2 and len(leaders) == 1 and 0 not in leaders
    if as_json:
        click.echo(json.dumps([{**asdict(st), "name": m.name, "is_leader": st.is_leader}
                               for m, st in zip(s.members, status, strict=True)], indent=1))
    else:
        rows: list[tuple] = [("member", "endpoint", "state", "version", "db size", "")]
        for m, st in zip(s.members, status, strict=True):
            rows.append((m.name, st.endpoint, "leader" if st.is_leader else
                         "up" if st.ok else "DOWN", st.version or "-",
                         human(st.db_size) if st.ok else "-", st.error[:80]))
        table(rows)
        click.echo(f"{len(up)} of {len(status)} members up; " +
                   ("a leader is elected: the cluster's authority is available" if healthy else
                    "NO QUORUM: map changes, down-marking, rebuilds and GC wait until a "
                    "majority is back"))
    if not healthy:
        raise SystemExit(1)
