"""Opening the RING a data directory names: embedded (local disks) or networked (nodes).

A data directory holding ``clustermap.json`` is a client of a networked RING
(:class:`~chunkstore.ring.net.NetRing`); one holding ``cluster.json`` is an embedded local
cluster (:class:`~chunkstore.ring.local.LocalRing`). Everything above the chunk store opens
its RING through :func:`open_ring` and works with either.
"""

from __future__ import annotations

import os
from typing import Any

from chunkstore.errors import ClusterNotFound
from chunkstore.placement.layout import CLUSTER_FILE, MAP_FILE
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.local import LocalRing
from chunkstore.ring.net import NetRing


def is_networked(data_dir: str | os.PathLike) -> bool:
    return os.path.exists(os.path.join(os.fspath(data_dir), MAP_FILE))


def has_cluster(data_dir: str | os.PathLike) -> bool:
    """Whether ``data_dir`` holds a cluster: an embedded ring's config or a networked map."""
    return is_networked(data_dir) or os.path.exists(os.path.join(os.fspath(data_dir),
                                                                 CLUSTER_FILE))


def open_ring(data_dir: str | os.PathLike, instance: str | None = None, **kw: Any) -> RingStore:
    """The RING of ``data_dir`` (ClusterInUse if another process serves it, ClusterNotFound
    if there is none). ``instance`` names this client among several sharing a networked data
    directory (a volume's mount; an embedded ring is always held whole)."""
    if is_networked(data_dir):
        return NetRing.open(data_dir, instance=instance, **kw)
    if not os.path.exists(os.path.join(os.fspath(data_dir), CLUSTER_FILE)):
        raise ClusterNotFound(f"{os.fspath(data_dir)}: no cluster here (neither {CLUSTER_FILE} "
                              f"nor {MAP_FILE}); run: sofsctl cluster init")
    return LocalRing.open(data_dir, **kw)
