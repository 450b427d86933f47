"""One etcd member of a cluster's authority: its settings, certificates and command line.

A networked cluster that has no etcd of its own gets 1 or 3 members on its admin hosts
(``sofsctl etcd init``, to come, writes one :class:`MemberSpec` per member and issues its
certificate from the cluster CA, :mod:`chunkstore.authority.pki`); each member runs as
``etcd`` with the command line :func:`etcd_argv` builds, under a service manager. What it
always sets, and why:

* TLS on both the client and the peer port, with client-certificate authentication against
  the cluster CA (``--client-cert-auth``, ``--peer-client-cert-auth``): only holders of a
  certificate of this cluster can read or change the map, leases or liveness keys;
* ``--auto-compaction-retention`` (1 hour of history: the watch of the map needs only recent
  revisions) and a backend quota, so the database cannot grow without bound;
* the data directory ``DATA/etcd/NAME`` (mode 0700).

The member's own address is the one its certificate names (IP or DNS name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from chunkstore.authority.pki import TlsFiles
from chunkstore.errors import ConfigError

ETCD_DIR = "etcd"
CLIENT_PORT = 2379
PEER_PORT = 2380
QUOTA_BYTES = 2 << 30  # the map, leases and liveness keys are small; 2 GiB is etcd's default


@dataclass(frozen=True)
class MemberSpec:
    """One member: its name, the host it listens on, its ports and the initial cluster."""

    name: str
    host: str
    client_port: int = CLIENT_PORT
    peer_port: int = PEER_PORT

    @property
    def client_url(self) -> str:
        return f"https://{_url_host(self.host)}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://{_url_host(self.host)}:{self.peer_port}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def member_dir(data_dir: str | os.PathLike, name: str) -> str:
    """Where member ``name`` keeps its database: ``DATA/etcd/NAME``."""
    return os.path.join(os.fspath(data_dir), ETCD_DIR, name)


def check_members(members: list[MemberSpec]) -> None:
    """ConfigError unless the members form a cluster etcd can run: 1 or 3 (or 5), unique
    names and addresses."""
    if len(members) not in (1, 3, 5):
        raise ConfigError(f"{len(members)} etcd members: use 1 (no fault tolerance), 3 (one may "
                          "fail) or 5 (two may fail)")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ConfigError(f"etcd member names must be unique: {', '.join(names)}")
    urls = [u for m in members for u in (m.client_url, m.peer_url)]
    if len(set(urls)) != len(urls):
        raise ConfigError("two etcd members share an address and port")


def etcd_argv(data_dir: str | os.PathLike, me: MemberSpec, members: list[MemberSpec],
              tls: TlsFiles, cluster_token: str, *, state: str = "new",
              etcd: str = "etcd") -> list[str]:
    """The ``etcd`` command line of member ``me`` of ``members`` (module docstring);
    ``tls`` is the member's own certificate (server and client use), ``cluster_token`` keeps
    two clusters from joining by mistake, ``state`` is ``new`` for the first start of a new
    cluster and ``existing`` to join one that runs."""
    check_members(members)
    if me not in members:
        raise ConfigError(f"etcd member {me.name} is not one of the members")
    if state not in ("new", "existing"):
        raise ConfigError(f"initial cluster state {state!r}: new or existing")
    tls.check()
    return [
        etcd,
        "--name", me.name,
        "--data-dir", member_dir(data_dir, me.name),
        "--listen-client-urls", me.client_url,
        "--advertise-client-urls", me.client_url,
        "--listen-peer-urls", me.peer_url,
        "--initial-advertise-peer-urls", me.peer_url,
        "--initial-cluster", ",".join(f"{m.name}={m.peer_url}" for m in members),
        "--initial-cluster-state", state,
        "--initial-cluster-token", cluster_token,
        "--cert-file", tls.cert, "--key-file", tls.key,
        "--trusted-ca-file", tls.ca, "--client-cert-auth",
        "--peer-cert-file", tls.cert, "--peer-key-file", tls.key,
        "--peer-trusted-ca-file", tls.ca, "--peer-client-cert-auth",
        "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1h",
        "--quota-backend-bytes", str(QUOTA_BYTES),
        "--log-outputs", "stderr", "--logger", "zap",
    ]


def prepare_member_dir(data_dir: str | os.PathLike, name: str) -> str:
    """Make ``DATA/etcd`` and the member's directory, mode 0700 (etcd refuses a looser
    data directory with a warning, and its database holds the cluster's leases)."""
    path = member_dir(data_dir, name)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path
