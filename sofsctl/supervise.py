"""``sofsctl supervise``: serve the supervisor page, a read-only web view of the archive made
from the same facts as ``sofsctl status --json``, until SIGTERM or SIGINT.

Thin: parses the options, makes or checks the password file (:mod:`sofsctl.webauth`), binds
the address, then hands over to :mod:`sofsctl.webserver`.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import click

from chunkstore.ring.open import has_cluster

from .common import Failure, pass_home
from .webauth import ADMIN_USER, PasswordFileError, default_password_file, load_or_create
from .webserver import (
    FactsCache,
    ListenError,
    SupervisorApp,
    in_thread,
    listen_socket,
    run,
    status_gatherer,
)

DEFAULT_LISTEN = "127.0.0.1:7780"  # scripts/systemd/sofs-supervise.service says the same
DEFAULT_REFRESH_S = 30
_LISTEN_RE = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+)):(?P<port>[0-9]{1,5})")


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT or [IPv6]:PORT -> (host, port); port 0 takes any free port.
    click.BadParameter when it is neither."""
    m = _LISTEN_RE.fullmatch(text.strip())
    port = int(m["port"]) if m else -1
    if m is None or not 0 <= port <= 65535:
        raise click.BadParameter(f"{text!r} is not HOST:PORT (for example 127.0.0.1:7780, "
                                 "0.0.0.0:7780 or [::1]:7780)")
    if m["v6"] is not None:
        try:
            ipaddress.IPv6Address(m["v6"])
        except ValueError:
            raise click.BadParameter(f"{m['v6']!r} is not an IPv6 address") from None
        return m["v6"], port
    return m["host"], port


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              help="Where to serve the page ([IPv6]:PORT too; port 0 takes a free port).")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The password of user admin, on its first line; made with a random password "
                   "(mode 0600) if it does not exist, refused if group or others may read it "
                   "[default: DATA_DIR/supervise.password].")
@click.option("--refresh", type=click.IntRange(0, 3600), default=DEFAULT_REFRESH_S,
              show_default=True, metavar="SECONDS",
              help="How often the page reloads itself (0: never).")
@pass_home
def supervise(home: Path, listen: str, password_file: Path | None, refresh: int) -> None:
    """Serve the supervisor page: health, ring, capacity, chunks, rebuilds, volumes and
    exports, read-only, behind HTTP Basic authentication (user admin), until SIGTERM."""
    host, port = parse_listen(listen)
    if not has_cluster(home):
        raise Failure(f"no cluster at {home}: give its data directory (--data-dir before the "
                      "command, or SOFS_HOME), or create one: sofsctl cluster init")
    path = password_file or default_password_file(home)
    try:
        credentials, created = load_or_create(path)
        sock = listen_socket(host, port)
    except (PasswordFileError, ListenError) as e:
        raise Failure(str(e)) from None
    if created:
        click.echo(f"made {path} with a random password for user {ADMIN_USER} (mode 0600)")
    if not _loopback(host):
        click.echo(f"warning: {host} is not a loopback address and the page is plain HTTP: "
                   "the password crosses the network readable by anyone on the way; prefer "
                   "127.0.0.1 with an SSH tunnel or a TLS reverse proxy", err=True)
    app = SupervisorApp(FactsCache(in_thread(status_gatherer(home))), credentials, refresh or None)

    def listening(urls: list[str]) -> None:
        click.echo(f"supervisor page of {home} on {', '.join(u + '/' for u in urls)} "
                   f"(user {ADMIN_USER}, password in {path})")
    run(app, sock, listening)
