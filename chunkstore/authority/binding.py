"""Which etcd a networked cluster agrees through: ``etcd.json`` in a data directory.

``sofsctl cluster create --etcd URL[,URL...]`` writes it in the admin's data directory and
``sofsctl node init`` copies it into each node directory, with the CA certificate and a
client certificate of that node's own (role ``node``)::

    {"endpoints": ["https://10.0.0.1:2379", "https://10.0.0.2:2379", ...]}

The TLS files are the data directory's ``pki/ca.crt`` and ``pki/etcd-client.crt/.key``
(:func:`chunkstore.authority.settings.client_tls`). A directory without ``etcd.json`` belongs
to a cluster without etcd (the embedded ring, or a networked cluster made before it): its map
is changed the old way, by the admin's copy and the nodes' epochs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from chunkstore.atomicfile import atomic_write
from chunkstore.authority import pki
from chunkstore.authority.etcd import EtcdClient, normalise_endpoints
from chunkstore.authority.settings import CLIENT_CERT, client_tls
from chunkstore.errors import ConfigError, EtcdError

BINDING_FILE = "etcd.json"


@dataclass(frozen=True)
class EtcdBinding:
    """The etcd endpoints a cluster's processes talk to."""

    endpoints: tuple[str, ...]


def binding_path(data_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(data_dir), BINDING_FILE)


def load(data_dir: str | os.PathLike) -> EtcdBinding | None:
    """The binding of ``data_dir``, or None if its cluster has no etcd."""
    path = binding_path(data_dir)
    try:
        with open(path) as f:
            doc = json.load(f)
        endpoints = tuple(normalise_endpoints([str(u) for u in doc["endpoints"]]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, EtcdError) as e:
        raise ConfigError(f"{path} is unreadable or damaged: {e}") from None
    if not endpoints:
        raise ConfigError(f"{path} lists no etcd endpoint")
    return EtcdBinding(endpoints)


def write(data_dir: str | os.PathLike, endpoints: str | list[str]) -> EtcdBinding:
    """Record ``endpoints`` (``URL[,URL...]``; ``host:port`` means https) for ``data_dir``,
    whose ``pki`` must hold the CA certificate and the client certificate."""
    urls = tuple(normalise_endpoints(endpoints))
    if not urls:
        raise ConfigError("no etcd endpoint given")
    tls = client_tls(data_dir)
    missing = [p for p in (tls.ca, tls.cert, tls.key) if not os.path.exists(p)]
    if missing:
        raise ConfigError(f"no TLS files for etcd here ({', '.join(missing)}): run sofsctl "
                          "etcd init in this data directory first, or put the cluster CA "
                          f"and a client certificate of it there ({CLIENT_CERT}.crt/.key)")
    atomic_write(binding_path(data_dir), json.dumps({"endpoints": list(urls)}, indent=1) + "\n")
    return EtcdBinding(urls)


def client(data_dir: str | os.PathLike, timeout: float = 3.0) -> EtcdClient | None:
    """A client of the cluster's etcd with this directory's certificate, or None (no etcd)."""
    binding = load(data_dir)
    if binding is None:
        return None
    return EtcdClient(list(binding.endpoints), client_tls(data_dir), timeout=timeout)


def bind_node(data_dir: str | os.PathLike, node_dir: str | os.PathLike, node_id: str) -> None:
    """Give a node directory the admin's binding, the CA certificate and a client certificate
    of its own (role node, named after the node). Nothing when the cluster has no etcd."""
    bind(data_dir, node_dir, f"node-{node_id}", "node")


def bind(data_dir: str | os.PathLike, target: str | os.PathLike, name: str,
         role: str) -> None:
    """Give ``target`` (a node's or a connector's data directory) the admin's binding, the
    CA certificate and a client certificate ``name`` of ``role``. Nothing without etcd."""
    binding = load(data_dir)
    if binding is None:
        return
    out = os.path.join(os.fspath(target), pki.PKI_DIR)
    os.makedirs(out, mode=0o700, exist_ok=True)
    with open(pki.ca_paths(data_dir)[0], "rb") as f:
        atomic_write(os.path.join(out, pki.CA_CERT), f.read())
    pki.issue(data_dir, out, CLIENT_CERT, role, common_name=name)
    atomic_write(binding_path(target),
                 json.dumps({"endpoints": list(binding.endpoints)}, indent=1) + "\n")
