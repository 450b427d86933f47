"""Where a data directory finds its etcd: ``DATA/etcd/members.json`` and the client certificate.

Written by ``sofsctl etcd init`` (members it set up) and read by every process that asks etcd
something (``sofsctl etcd status`` now; the map, liveness and lease code of the networked ring
next). The file::

    {"token": "sofs-3f9c...", "members": [{"name": "e0", "host": "10.0.0.1",
                                           "client_port": 2379, "peer_port": 2380}, ...]}

``token`` is etcd's initial cluster token (two clusters cannot join by mistake). The TLS files
are in ``DATA/pki`` (:mod:`chunkstore.authority.pki`): ``etcd-NAME.crt/.key`` per member
(server and peer), ``etcd-client.crt/.key`` for sofs's own processes (role admin for now; the
roles of the mutual-TLS issue narrow it).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass

from chunkstore.atomicfile import atomic_write
from chunkstore.authority import pki
from chunkstore.authority.etcd import EtcdClient
from chunkstore.authority.etcdmember import ETCD_DIR, MemberSpec, check_members
from chunkstore.errors import ConfigError

SETTINGS_FILE = "members.json"
CLIENT_CERT = "etcd-client"


@dataclass(frozen=True)
class EtcdSettings:
    """The members of a data directory's etcd and its cluster token."""

    token: str
    members: tuple[MemberSpec, ...]

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def member(self, name: str) -> MemberSpec:
        for m in self.members:
            if m.name == name:
                return m
        raise ConfigError(f"no etcd member {name!r} here (members: "
                          f"{', '.join(m.name for m in self.members)})")


def settings_path(data_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(data_dir), ETCD_DIR, SETTINGS_FILE)


def member_tls(data_dir: str | os.PathLike, name: str) -> pki.TlsFiles:
    d = os.path.join(os.fspath(data_dir), pki.PKI_DIR)
    return pki.TlsFiles(pki.ca_paths(data_dir)[0], os.path.join(d, f"etcd-{name}.crt"),
                        os.path.join(d, f"etcd-{name}.key"))


def client_tls(data_dir: str | os.PathLike) -> pki.TlsFiles:
    d = os.path.join(os.fspath(data_dir), pki.PKI_DIR)
    return pki.TlsFiles(pki.ca_paths(data_dir)[0], os.path.join(d, f"{CLIENT_CERT}.crt"),
                        os.path.join(d, f"{CLIENT_CERT}.key"))


def load(data_dir: str | os.PathLike) -> EtcdSettings:
    path = settings_path(data_dir)
    try:
        with open(path) as f:
            doc = json.load(f)
        members = tuple(MemberSpec(str(m["name"]), str(m["host"]), int(m["client_port"]),
                                   int(m["peer_port"])) for m in doc["members"])
        settings = EtcdSettings(str(doc["token"]), members)
    except FileNotFoundError:
        raise ConfigError(f"no etcd set up here: {path} is missing (sofsctl etcd init)") \
            from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is unreadable or damaged: {e}") from None
    check_members(list(settings.members))
    return settings


def init(data_dir: str | os.PathLike, members: list[MemberSpec], cluster_name: str
         ) -> EtcdSettings:
    """Set up ``members``: the cluster CA if there is none, each member's certificate (its
    host, 127.0.0.1 and localhost as names), the client certificate, and the settings file.
    Refused (ConfigError) if etcd is already set up here: a second token would split it."""
    check_members(members)
    if os.path.exists(settings_path(data_dir)):
        raise ConfigError(f"etcd is already set up here ({settings_path(data_dir)}); "
                          "sofsctl etcd status shows it")
    pki.ensure_ca(data_dir, cluster_name)
    out = os.path.join(os.fspath(data_dir), pki.PKI_DIR)
    for m in members:
        hosts = list(dict.fromkeys([m.host, "127.0.0.1", "localhost"]))
        pki.issue(data_dir, out, f"etcd-{m.name}", "etcd", hosts, server=True)
    pki.issue(data_dir, out, CLIENT_CERT, "admin")
    settings = EtcdSettings(f"sofs-{secrets.token_hex(8)}", tuple(members))
    os.makedirs(os.path.dirname(settings_path(data_dir)), mode=0o700, exist_ok=True)
    doc = {"token": settings.token, "members": [asdict(m) for m in members]}
    atomic_write(settings_path(data_dir), json.dumps(doc, indent=1), mode=0o600)
    return settings


def client(data_dir: str | os.PathLike, timeout: float = 3.0) -> EtcdClient:
    """A client of this data directory's etcd, with its client certificate."""
    return EtcdClient(load(data_dir).endpoints, client_tls(data_dir), timeout=timeout)


def parse_member(text: str) -> MemberSpec:
    """``NAME=HOST[:CLIENT_PORT[:PEER_PORT]]`` (an IPv6 host in brackets)."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ConfigError(f"etcd member {text!r}: NAME=HOST[:CLIENT_PORT[:PEER_PORT]]")
    if not all(c.isalnum() or c in "._-" for c in name):
        raise ConfigError(f"etcd member name {name!r}: letters, digits, . _ - only")
    if rest.startswith("["):
        host, _, ports = rest[1:].partition("]")
        ports = ports.lstrip(":")
    else:
        host, _, ports = rest.partition(":")
    try:
        nums = [int(p) for p in ports.split(":")] if ports else []
    except ValueError:
        raise ConfigError(f"etcd member {text!r}: ports must be numbers") from None
    if len(nums) > 2 or any(not 0 < p < 65536 for p in nums):
        raise ConfigError(f"etcd member {text!r}: at most two ports, 1-65535")
    client_port = nums[0] if nums else 2379
    peer_port = nums[1] if len(nums) > 1 else client_port + 1
    return MemberSpec(name, host, client_port, peer_port)
