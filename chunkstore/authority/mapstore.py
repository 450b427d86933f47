"""The cluster map in etcd: one key, changed only by compare-and-swap on its revision.

Two admins (or an admin and the healer) that both read the map at revision R and both try to
change it: etcd takes the first ``put_if(R)`` and refuses the second, which gets
:class:`~chunkstore.errors.MapConflict` ("changed meanwhile: retry") and changes nothing. So a
map can never fork: every epoch exists once, made from the epoch before it. The key is
``/sofs/CLUSTER_ID/map`` (:func:`map_key`), its value the map's JSON
(:meth:`ClusterMap.to_json`). Nodes and clients follow it with :func:`follow` (a watch from
the revision they know); the local ``clustermap.json`` stays as the last known map for when
etcd is unreachable (reads and writes go on with it; no map change can be made).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from chunkstore.authority.etcd import EtcdClient
from chunkstore.errors import EtcdUnavailable, FormatError, MapConflict, MapError
from chunkstore.placement.clustermap import ClusterMap


def map_key(cluster_id: str) -> bytes:
    return f"/sofs/{cluster_id}/map".encode()


@dataclass(frozen=True)
class StoredMap:
    """The map as etcd holds it, with the revision a change must compare against."""

    cmap: ClusterMap
    revision: int


def _decode(cluster_id: str, value: bytes, revision: int) -> StoredMap:
    try:
        cmap = ClusterMap.from_json(value)
    except (FormatError, ValueError) as e:
        raise MapError(f"the cluster map in etcd ({map_key(cluster_id).decode()}) is "
                       f"damaged: {e}") from None
    if cmap.cluster_id != cluster_id:
        raise MapError(f"the map under {map_key(cluster_id).decode()} is of cluster "
                       f"{cmap.cluster_id}")
    return StoredMap(cmap, revision)


def read(etcd: EtcdClient, cluster_id: str) -> StoredMap | None:
    """The map in etcd, or None if the cluster has none there yet."""
    kv, _ = etcd.get(map_key(cluster_id))
    if kv is None:
        return None
    return _decode(cluster_id, kv.value, kv.mod_revision)


def seed(etcd: EtcdClient, cmap: ClusterMap) -> StoredMap:
    """Put ``cmap`` into etcd if the cluster has no map there (``cluster create --etcd``,
    or a cluster moving to etcd with the map it has); the map etcd holds afterwards. A map
    already there is kept when it is at least as new; an older one is refused (MapError:
    someone else's cluster, or a stale copy)."""
    made, there = etcd.create(map_key(cmap.cluster_id), cmap.to_json().encode())
    if made:
        stored = read(etcd, cmap.cluster_id)
        assert stored is not None
        return stored
    assert there is not None
    stored = _decode(cmap.cluster_id, there.value, there.mod_revision)
    if stored.cmap.epoch < cmap.epoch:
        raise MapError(f"etcd holds epoch {stored.cmap.epoch} of the map, older than this "
                       f"copy's {cmap.epoch}: refusing to guess which is right")
    return stored


def change(etcd: EtcdClient, cluster_id: str, fn: Callable[[ClusterMap], ClusterMap],
           check: Callable[[ClusterMap, ClusterMap], None] | None = None) -> StoredMap:
    """Apply ``fn`` to the map in etcd and store the result by compare-and-swap; ``check``
    (old, new) may refuse the change (raise). MapConflict if the map changed between the read
    and the swap: nothing was changed, the caller retries (or tells its user to) on the new
    map. A swap whose answer was lost (the member that made it failed) is recognised: it
    counts once, and is never reported as a conflict. The new map must be of a later epoch
    (a change of several steps, such as a node and its disks, is swapped in at once: its
    intermediate epochs never exist anywhere)."""
    current = read(etcd, cluster_id)
    if current is None:
        raise MapError(f"cluster {cluster_id} has no map in etcd (sofsctl cluster create "
                       "--etcd)")
    new = fn(current.cmap)
    if new.epoch <= current.cmap.epoch or new.cluster_id != cluster_id:
        raise MapError(f"a change must make a later epoch than {current.cmap.epoch} of "
                       f"cluster {cluster_id}, not epoch {new.epoch} of {new.cluster_id}")
    if check is not None:
        check(current.cmap, new)
    doc = new.to_json().encode()
    try:
        ok, revision = etcd.put_if(map_key(cluster_id), doc, current.revision)
    except EtcdUnavailable:
        ok, revision = False, 0  # the answer was lost: did the swap happen? (below)
    if not ok:
        # a member may have committed the swap and failed before answering (the client then
        # asked another): etcd holding exactly our map means it did, once
        try:
            kv, _ = etcd.get(map_key(cluster_id))
        except EtcdUnavailable:
            raise EtcdUnavailable(f"etcd went away during the change to epoch {new.epoch}: "
                                  "whether it was made is unknown; sofsctl node list shows "
                                  "the map once etcd is back") from None
        if kv is not None and kv.value == doc:
            return StoredMap(new, kv.mod_revision)
        raise MapConflict(f"the cluster map changed while this change was made (it was epoch "
                          f"{current.cmap.epoch}): nothing was changed; retry")
    return StoredMap(new, revision)


def follow(etcd: EtcdClient, cluster_id: str, after_revision: int, stop: threading.Event
           ) -> Iterator[StoredMap]:
    """Each new map put after ``after_revision``, as etcd commits them (until ``stop``).
    Raises EtcdUnavailable when the watch breaks; the caller follows again from the last
    revision it got."""
    for kv in etcd.watch(map_key(cluster_id), after_revision + 1, stop):
        if kv is None:
            return
        if kv.value:
            yield _decode(cluster_id, kv.value, kv.mod_revision)
