"""The storage node's config file: :class:`NodeConfig` and its :class:`Limits`, loaded and checked.

A JSON object; unknown keys are refused; relative paths are relative to the config file's
directory::

    {
      "node_id": "node1",                  required; 1..64 of [A-Za-z0-9._:-]
      "host": "127.0.0.1",                 bind address (default 127.0.0.1)
      "port": 7700,                        bind port; 0 = any free port (see --state-file)
      "secret_file": "cluster.secret",     required; the cluster secret, mode 0600, owned by
                                           the node's user, >= 16 bytes
      "disks": [{"id": "d0", "path": "/srv/sofs/d0"}, ...],
                                           disk directories, each already initialised with
                                           DiskStore.initialise(path, cluster_id, disk_id)
      "cluster_id": "...",                 optional: refuse disks of another cluster
      "map_file": "clustermap.json",       where the node keeps the newest cluster map it was
                                           given (MAP_PUT); default clustermap.json beside the
                                           config. Its epoch is answered to PING, and disk
                                           requests made with an older epoch are refused
                                           (StaleMap). Without a map the epoch is map_epoch.
      "map_epoch": 0,                      optional: epoch before any map was given
      "lease_ttl": 10,                     seconds of the node's liveness lease in etcd (with
                                           an etcd binding beside the config): a node silent
                                           this long is suspect (2 to 300)
      "limits": {                          all optional:
        "max_requests": 32,                requests executed at once (= disk worker threads)
        "max_inflight_bytes": 268435456,   request + answer data held in memory at once; a
                                           client that sends more waits; a frame larger than
                                           this is refused before it is read
        "max_connections": 1024,           more are accepted and closed at once
        "pipeline_depth": 32,              unanswered requests per connection before the node
                                           stops reading from it
        "idle_timeout": 300,               seconds without a request before a connection closes
        "frame_timeout": 60,               seconds to receive the rest of a frame once its
                                           header arrived, and to send one answer frame
        "handshake_timeout": 10,           seconds for the whole handshake
        "shutdown_grace": 30               seconds to finish in-flight requests on SIGTERM
      }
    }

Every problem (unreadable file, bad JSON, unknown key, wrong type, value out of range)
raises :class:`~chunkstore.errors.ConfigError` naming it. The daemon is :mod:`chunkstore.net.node`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from chunkstore.errors import ConfigError, WireError
from chunkstore.net.wire.encode import validate_id
from chunkstore.net.wire.frames import MiB

T = TypeVar("T")

_KNOWN_KEYS = {"node_id", "host", "port", "secret_file", "disks", "cluster_id", "map_epoch", "map_file", "limits", "lease_ttl"}


@dataclass(frozen=True)
class Limits:
    """The ``limits`` object of the config (meanings: module docstring)."""

    max_requests: int = 32
    max_inflight_bytes: int = 256 * MiB
    max_connections: int = 1024
    pipeline_depth: int = 32
    idle_timeout: float = 300.0
    frame_timeout: float = 60.0
    handshake_timeout: float = 10.0
    shutdown_grace: float = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"limits.{f.name} must be a positive number, got {v!r}")
            if f.type == "int" and not isinstance(v, int):
                raise ConfigError(f"limits.{f.name} must be an integer, got {v!r}")
        if self.max_inflight_bytes < 64 * 1024:
            raise ConfigError("limits.max_inflight_bytes must be at least 65536")


@dataclass(frozen=True)
class DiskEntry:
    id: str
    path: str


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    secret_file: str
    disks: tuple[DiskEntry, ...]
    host: str = "127.0.0.1"
    port: int = 7700
    cluster_id: str | None = None
    map_epoch: int = 0
    map_file: str = ""
    limits: Limits = field(default_factory=Limits)
    lease_ttl: int = 10

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NodeConfig":
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read(1 << 20))
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read config file {path}: {e}") from None
        return cls.from_dict(doc, base=os.path.dirname(os.path.abspath(path)))

    @classmethod
    def from_dict(cls, doc: object, base: str = ".") -> "NodeConfig":
        if not isinstance(doc, dict):
            raise ConfigError("the config must be a JSON object")
        unknown = set(doc) - _KNOWN_KEYS
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        node_id = _ident(_need(doc, "node_id", str), "node")  # same rules as on the wire
        port = _get(doc, "port", int, 7700)
        if not 0 <= port <= 65535:
            raise ConfigError(f"port {port} out of range")
        epoch = _get(doc, "map_epoch", int, 0)
        if not 0 <= epoch < 2**64:
            raise ConfigError("map_epoch out of range")
        lease_ttl = _get(doc, "lease_ttl", int, 10)
        if not 2 <= lease_ttl <= 300:
            raise ConfigError(f"lease_ttl {lease_ttl} out of range (2 to 300 seconds)")
        disks = []
        for d in _need(doc, "disks", list):
            if not isinstance(d, dict) or set(d) != {"id", "path"} or not all(isinstance(v, str) for v in d.values()):
                raise ConfigError(f'each disk must be {{"id": ..., "path": ...}}, got {d!r}')
            disks.append(DiskEntry(_ident(d["id"], "disk"), os.path.join(base, d["path"])))
        ids = [d.id for d in disks]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"duplicate disk ids in {ids}")
        try:
            limits = Limits(**_get(doc, "limits", dict, {}))
        except TypeError as e:
            raise ConfigError(f"limits: {e}") from None
        cluster_id = _check(doc, "cluster_id", str) if "cluster_id" in doc else None
        return cls(
            node_id=node_id,
            secret_file=os.path.join(base, _need(doc, "secret_file", str)),
            disks=tuple(disks),
            host=_get(doc, "host", str, "127.0.0.1"),
            port=port,
            cluster_id=cluster_id,
            map_epoch=epoch,
            map_file=os.path.join(base, _get(doc, "map_file", str, "clustermap.json")),
            limits=limits,
            lease_ttl=lease_ttl,
        )


def _check(doc: dict[str, Any], key: str, typ: type[T]) -> T:
    v = doc[key]
    if isinstance(v, bool) or not isinstance(v, typ):
        raise ConfigError(f"config key {key!r} must be a {typ.__name__}, got {v!r}")
    return v


def _need(doc: dict[str, Any], key: str, typ: type[T]) -> T:
    """``doc[key]``, required, of type ``typ`` (never a bool)."""
    if key not in doc:
        raise ConfigError(f"config key {key!r} is required")
    return _check(doc, key, typ)


def _get(doc: dict[str, Any], key: str, typ: type[T], default: T) -> T:
    """``doc[key]`` of type ``typ`` (never a bool), or ``default`` if absent."""
    return _check(doc, key, typ) if key in doc else default


def _ident(value: str, what: str) -> str:
    try:
        return validate_id(value, what)
    except WireError as e:
        raise ConfigError(str(e)) from None
