"""The protection width every volume of a cluster needs, in etcd: the floor of map changes.

A volume whose chunks are cut into W pieces needs W placing disks, or its chunks could neither
be placed nor found. Volume configs live in the data directory of whoever created them, so an
admin on another host cannot see them; the cluster's etcd can. ``sofsctl volume create``
records each volume's width under ``/sofs/CLUSTER_ID/volumes/UUID`` (:func:`register`), and
every map change made through etcd refuses to leave fewer placing disks than the widest of
them (:func:`widest`, used by :func:`chunkstore.ring.mapadmin.change_map`).
"""

from __future__ import annotations

import json

from chunkstore.authority.etcd import EtcdClient


def volumes_prefix(cluster_id: str) -> bytes:
    return f"/sofs/{cluster_id}/volumes/".encode()


def register(etcd: EtcdClient, cluster_id: str, volume_uuid: str, name: str,
             width: int) -> None:
    doc = {"name": name, "width": int(width)}
    etcd.put(volumes_prefix(cluster_id) + volume_uuid.encode(), json.dumps(doc).encode())


def forget(etcd: EtcdClient, cluster_id: str, volume_uuid: str) -> None:
    etcd.delete(volumes_prefix(cluster_id) + volume_uuid.encode())


def widths(etcd: EtcdClient, cluster_id: str) -> dict[str, tuple[str, int]]:
    """Volume uuid -> (name, width), for every volume recorded in etcd."""
    out = {}
    prefix = volumes_prefix(cluster_id)
    for kv in etcd.get_prefix(prefix):
        try:
            doc = json.loads(kv.value)
            out[kv.key[len(prefix):].decode()] = (str(doc["name"]), int(doc["width"]))
        except (ValueError, KeyError, TypeError):
            continue  # a damaged record says nothing; the local volumes still count
    return out


def widest(etcd: EtcdClient, cluster_id: str) -> tuple[int, str | None]:
    """(the widest width recorded, the name of a volume that needs it); (1, None) if none."""
    best: tuple[int, str | None] = (1, None)
    for name, width in widths(etcd, cluster_id).values():
        if width > best[0]:
            best = (width, name)
    return best
