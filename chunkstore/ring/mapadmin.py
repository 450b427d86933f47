"""Cluster-map administration: create a networked cluster, prepare nodes, change and publish maps.

What ``sofsctl cluster create`` and ``sofsctl node|disk ...`` call. The admin's data directory
holds the map and the secret (see :mod:`chunkstore.ring.net`); a change reads the newest map
among the local copy and every reachable node (a higher epoch always wins), applies one
change (a new epoch), saves it, and offers it to every node over the wire (MAP_PUT). Nodes
that are unreachable get it later from any client's heartbeat.

A cluster made with etcd (``cluster create --etcd``) keeps its map there: a change is made by
compare-and-swap on etcd's copy (:mod:`chunkstore.authority.mapstore`), so two admins never
fork it (the later one gets MapConflict, "retry"), and none is made while etcd is
unreachable. Such a change also keeps at least as many placing disks as the widest volume
recorded in etcd needs (:mod:`chunkstore.authority.volumewidths`), whoever made the volume.
The nodes follow etcd's map themselves (:mod:`chunkstore.net.nodeetcd`); the
offer over the wire only makes it quicker.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import uuid
from dataclasses import dataclass
from typing import Callable

from chunkstore.atomicfile import atomic_write
from chunkstore.authority import binding, mapstore, volumewidths
from chunkstore.authority.etcd import EtcdClient
from chunkstore.disk.store import DiskStore
from chunkstore.errors import ChunkStoreError, ClusterMismatch, ConfigError, EtcdUnavailable, MapError
from chunkstore.net.client import RemoteDisk
from chunkstore.net.wire import load_secret, validate_id
from chunkstore.placement.clustermap import ClusterMap, NodeInfo, split_address
from chunkstore.placement.layout import CLUSTER_FILE, DISKS_DIR, MAP_FILE, SECRET_FILE
from chunkstore.placement.ring import DEFAULT_VNODES
from chunkstore.ring.net import offer_map


def create_cluster(data_dir: str | os.PathLike, vnodes: int = DEFAULT_VNODES,
                   etcd_endpoints: str | None = None) -> ClusterMap:
    """A new networked cluster: an empty map (epoch 1) and a fresh secret in ``data_dir``.
    With ``etcd_endpoints`` the cluster agrees through that etcd: the endpoints are recorded
    (:mod:`chunkstore.authority.binding`) and the map is put there first; nothing is made
    here if etcd cannot be reached."""
    data_dir = os.fspath(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    for name in (MAP_FILE, SECRET_FILE, CLUSTER_FILE, binding.BINDING_FILE):
        if os.path.exists(os.path.join(data_dir, name)):
            raise ClusterMismatch(f"{data_dir} already holds a cluster ({name})")
    cmap = ClusterMap.create(str(uuid.uuid4()), vnodes)
    if etcd_endpoints is not None:
        binding.write(data_dir, etcd_endpoints)
        try:
            with _etcd(data_dir) as etcd:
                mapstore.seed(etcd, cmap)
        except BaseException:
            os.unlink(binding.binding_path(data_dir))
            raise
    write_secret(os.path.join(data_dir, SECRET_FILE),
                 base64.b64encode(secrets.token_bytes(32)))
    cmap.save(os.path.join(data_dir, MAP_FILE))
    return cmap


def _etcd(data_dir: str | os.PathLike) -> EtcdClient:
    etcd = binding.client(data_dir)
    if etcd is None:
        raise ConfigError(f"{data_dir} has no etcd binding ({binding.BINDING_FILE})")
    return etcd


def write_secret(path: str, secret: bytes) -> None:
    """Write a new secret file (mode 0600); FileExistsError if one is there."""
    if os.path.lexists(path):
        raise FileExistsError(path)
    atomic_write(path, secret + b"\n", mode=0o600)


def node_disk_ids(node_id: str, count: int) -> list[str]:
    """The ids of a node's disks: ``<node>.d0`` .. (unique across the cluster)."""
    return [f"{node_id}.d{i}" for i in range(count)]


def init_node(node_dir: str | os.PathLike, data_dir: str | os.PathLike, node_id: str,
              listen: str, disks: int, *, disk_root: str | None = None) -> str:
    """Prepare a storage server: initialise ``disks`` disk directories, copy the secret and
    write ``node.json`` (returned: its path) for ``sofs-node --config``."""
    node_dir = os.fspath(node_dir)
    NodeInfo(node_id, listen)  # FormatError for an id or address sofs-node would refuse
    for disk_id in node_disk_ids(node_id, disks):
        validate_id(disk_id, "disk")
    host, port = split_address(listen)
    cmap = load_map(data_dir)
    secret = load_secret(os.path.join(os.fspath(data_dir), SECRET_FILE))
    os.makedirs(node_dir, exist_ok=True)
    config_path = os.path.join(node_dir, "node.json")
    if os.path.exists(config_path):
        raise ClusterMismatch(f"{config_path} exists: this node is already set up")
    binding.bind_node(data_dir, node_dir, node_id)
    entries = []
    root = disk_root or os.path.join(node_dir, DISKS_DIR)
    os.makedirs(root, exist_ok=True)
    for disk_id in node_disk_ids(node_id, disks):
        path = os.path.join(root, disk_id)
        DiskStore.initialise(path, cmap.cluster_id, disk_id)
        entries.append({"id": disk_id, "path": path})
    secret_path = os.path.join(node_dir, SECRET_FILE)
    if not os.path.exists(secret_path):
        write_secret(secret_path, secret)
    config = {"node_id": node_id, "host": host, "port": port,
              "secret_file": SECRET_FILE, "cluster_id": cmap.cluster_id, "disks": entries}
    atomic_write(config_path, json.dumps(config, indent=1))
    return config_path


def load_map(data_dir: str | os.PathLike) -> ClusterMap:
    return ClusterMap.load(os.path.join(os.fspath(data_dir), MAP_FILE))


def _node_handle(cmap: ClusterMap, node_id: str, secret: bytes, timeout: float) -> RemoteDisk:
    node = cmap.node(node_id)
    host, port = split_address(node.address)
    disks = [d.id for d in cmap.disks if d.node == node_id] or ["none"]
    return RemoteDisk(host, port, disks[0], secret, timeout, max_connections=1)


def newest_map(data_dir: str | os.PathLike, timeout: float = 3.0) -> ClusterMap:
    """The newest map: etcd's when the cluster has one and it answers, else the newest among
    the local copy and every reachable node (saved locally)."""
    data_dir = os.fspath(data_dir)
    cmap = load_map(data_dir)
    if binding.load(data_dir) is not None:
        try:
            with _etcd(data_dir) as etcd:
                stored = mapstore.read(etcd, cmap.cluster_id)
        except EtcdUnavailable:
            stored = None  # the last map known here and on the nodes, below
        if stored is not None:
            if stored.cmap.epoch > cmap.epoch:
                stored.cmap.save(os.path.join(data_dir, MAP_FILE))
            return stored.cmap
    secret = load_secret(os.path.join(data_dir, SECRET_FILE))
    best = cmap
    for node in cmap.nodes:
        if node.state == "out":
            continue
        try:
            with _node_handle(cmap, node.id, secret, timeout) as rd:
                doc = rd.get_map()
        except ChunkStoreError:
            continue
        if doc:
            other = ClusterMap.from_json(doc)
            if other.cluster_id == cmap.cluster_id and other.epoch > best.epoch:
                best = other
    if best is not cmap:
        best.save(os.path.join(data_dir, MAP_FILE))
    return best


def publish(data_dir: str | os.PathLike, cmap: ClusterMap, timeout: float = 3.0
            ) -> dict[str, str]:
    """Offer ``cmap`` to every node it lists (except ``out`` ones); node id -> why it did not
    take it."""
    secret = load_secret(os.path.join(os.fspath(data_dir), SECRET_FILE))

    def put(node_id: str, doc: bytes) -> int:
        with _node_handle(cmap, node_id, secret, timeout) as rd:
            return rd.put_map(doc)

    return offer_map(cmap, put)


def change_map(data_dir: str | os.PathLike, change: Callable[[ClusterMap], ClusterMap],
               min_placing: int = 1) -> tuple[ClusterMap, dict[str, str]]:
    """Apply ``change`` to the newest map, save and publish it: (new map, nodes that did not
    take it). A change that would leave fewer than ``min_placing`` disks holding data (the
    widest policy in use: its chunks could no longer be placed, nor found by placement) is
    refused with MapError, unless the map already had that few."""
    def check(current: ClusterMap, new: ClusterMap) -> None:
        have, left = len(current.placing_disks()), len(new.placing_disks())
        if left < min_placing and left < have:
            raise MapError(f"the change would leave {left} disks holding data, fewer than the "
                           f"{min_placing} pieces of the widest policy in use: add disks first")

    if binding.load(data_dir) is not None:
        new = _change_in_etcd(data_dir, change, check)
    else:
        current = newest_map(data_dir)
        new = change(current)
        check(current, new)
    new.save(os.path.join(os.fspath(data_dir), MAP_FILE))
    return new, publish(data_dir, new)


def _change_in_etcd(data_dir: str | os.PathLike, change: Callable[[ClusterMap], ClusterMap],
                    check: Callable[[ClusterMap, ClusterMap], None]) -> ClusterMap:
    """The change made by compare-and-swap in etcd (MapConflict: someone changed it first)."""
    cluster_id = load_map(data_dir).cluster_id
    try:
        with _etcd(data_dir) as etcd:
            width, volume = volumewidths.widest(etcd, cluster_id)

            def check_all(current: ClusterMap, new: ClusterMap) -> None:
                check(current, new)
                have, left = len(current.placing_disks()), len(new.placing_disks())
                if left < width and left < have:
                    raise MapError(f"the change would leave {left} disks holding data, fewer "
                                   f"than the {width} pieces of volume {volume} (the widest "
                                   "in the cluster): add disks first")

            return mapstore.change(etcd, cluster_id, change, check_all).cmap
    except EtcdUnavailable as e:
        raise EtcdUnavailable(f"no map change while etcd is unreachable ({e}); the nodes "
                              "and clients go on with the map they have") from None


def register_volume(data_dir: str | os.PathLike, volume_uuid: str, name: str,
                    width: int) -> bool:
    """Record a new volume's width in the cluster's etcd (False: the cluster has none).
    EtcdUnavailable when etcd does not answer: the volume must not be made then, or map
    changes made from elsewhere could leave it fewer disks than it needs."""
    if binding.load(data_dir) is None:
        return False
    try:
        with _etcd(data_dir) as etcd:
            volumewidths.register(etcd, load_map(data_dir).cluster_id, volume_uuid, name,
                                  width)
    except EtcdUnavailable as e:
        raise EtcdUnavailable(f"volume {name} not created: etcd is unreachable ({e}), and it "
                              "must know every volume's width") from None
    return True


def forget_volume(data_dir: str | os.PathLike, volume_uuid: str) -> bool:
    """Drop a deleted volume's width from the cluster's etcd (False: the cluster has none).
    EtcdUnavailable when etcd does not answer (the record then stays: map changes are only
    held to a stricter floor than needed)."""
    if binding.load(data_dir) is None:
        return False
    with _etcd(data_dir) as etcd:
        volumewidths.forget(etcd, load_map(data_dir).cluster_id, volume_uuid)
    return True


@dataclass(frozen=True)
class EtcdView:
    """What ``sofsctl status`` says of the cluster's etcd: whether it answers and the map
    epoch it holds (None when it does not answer, or holds no map)."""

    endpoints: tuple[str, ...]
    reachable: bool
    map_epoch: int | None
    error: str | None


def etcd_view(data_dir: str | os.PathLike, timeout: float = 2.0) -> EtcdView | None:
    """The cluster's etcd as seen from here, or None if the cluster has none."""
    bound = binding.load(data_dir)
    if bound is None:
        return None
    etcd = binding.client(data_dir, timeout=timeout)
    assert etcd is not None
    try:
        with etcd:
            stored = mapstore.read(etcd, load_map(data_dir).cluster_id)
    except ChunkStoreError as e:  # EtcdUnavailable, a refused certificate, a damaged map
        return EtcdView(bound.endpoints, False, None, str(e))
    return EtcdView(bound.endpoints, True, None if stored is None else stored.cmap.epoch, None)


def node_reachability(data_dir: str | os.PathLike, timeout: float = 2.0
                      ) -> dict[str, tuple[bool, int | str]]:
    """node id -> (answers, its map epoch or the error)."""
    data_dir = os.fspath(data_dir)
    cmap = load_map(data_dir)
    secret = load_secret(os.path.join(data_dir, SECRET_FILE))
    out: dict[str, tuple[bool, int | str]] = {}
    for node in cmap.nodes:
        try:
            with _node_handle(cmap, node.id, secret, timeout) as rd:
                out[node.id] = (True, rd.ping(cmap.epoch).epoch)
        except ChunkStoreError as e:
            out[node.id] = (False, str(e))
    return out


def node_piece_counts(data_dir: str | os.PathLike, node_id: str, timeout: float = 10.0
                      ) -> dict[str, int]:
    """disk id -> live pieces, for a node's disks (to tell whether draining finished)."""
    data_dir = os.fspath(data_dir)
    cmap = load_map(data_dir)
    secret = load_secret(os.path.join(data_dir, SECRET_FILE))
    node = cmap.node(node_id)
    host, port = split_address(node.address)
    counts = {}
    for d in cmap.disks:
        if d.node == node_id:
            with RemoteDisk(host, port, d.id, secret, timeout,
                            max_connections=1, epoch=cmap.epoch) as rd:
                counts[d.id] = rd.stats().live_pieces
    return counts
