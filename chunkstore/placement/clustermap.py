"""The cluster map: the versioned membership document of a networked RING.

Every client and storage node derives placement from the same :class:`ClusterMap`: its nodes
(storage servers, with an address and a site), their disks, and the :class:`~chunkstore.placement.ring.RingData`
built from them. Maps are immutable; each change (:meth:`ClusterMap.add_node`,
:meth:`~ClusterMap.set_node_state`, ...) returns a new map with ``epoch + 1``. Wherever two
maps of a cluster meet (client, node, admin), **the higher epoch always wins**; two different
maps with the same epoch are told apart by :meth:`ClusterMap.fingerprint` (and refused).

JSON form (format version 1), written in canonical form (sorted keys, no spaces)::

    {"format": "sofs-cluster-map", "format_version": 1,
     "cluster_id": "<id>", "epoch": E, "vnodes": V,
     "nodes": [{"id": "n1", "address": "host:port", "site": "site0", "state": "up"}, ...],
     "disks": [{"id": "n1.d0", "node": "n1", "weight": 1.0, "state": "up"}, ...],
     "ring": <RingData JSON object (chunkstore.placement.ring), its epoch equal to E>}

Ids (cluster, node, disk, site) match ``[A-Za-z0-9._:-]{1,64}``; an address is ``host:port``
(``[v6addr]:port`` for IPv6) with a port in 1..65535. Documents over 1 MiB
(:data:`MAX_MAP_BYTES`, the wire limit of MAP_PUT) are refused, and a change that would make
one is refused too (with the default 6 vnodes a map holds some 2,000 disks).

States and what they mean:

======== =========================================================================================
node     placement and reads
======== =========================================================================================
up       its ``up`` disks place data (own arcs of the ring, in proportion to their weight)
down     unreachable for longer than the failure delay (the healer marks it): it places nothing;
         its disks keep their tokens but stand by, and each owner position they held goes to
         the next disk of the key's walk, so exactly their pieces are rebuilt elsewhere (and
         move back when it is marked ``up`` again); clients keep talking to it
draining still readable, places nothing: repair moves its pieces to their new owners; once it
         holds nothing it can be removed (:meth:`ClusterMap.remove_node`)
out      gone: places nothing, nobody talks to it, its pieces are not counted
======== =========================================================================================

A disk is ``up`` or ``out`` (failed or retired: its pieces are not counted and are rebuilt on
the others).

Placement rule: a disk places data (has tokens in the ring, ring weight = its weight) iff the
disk is ``up``, its node is ``up`` and its weight is > 0 (:meth:`ClusterMap.placing_disks`).
Disks of a ``down`` node keep their tokens as *standby* devices of the ring view (their
positions are substituted, not recomputed); every other disk of the map stays in the ring with
weight 0, hence no tokens. In the ring a
device's host is its node id and its site is its node's site, so owners of a key go to
distinct sites, then distinct nodes, then distinct disks. :meth:`ClusterMap.member_disks`
lists the disks clients still talk to (disk not ``out``, node not ``out``): the placing ones
plus those being drained or possibly coming back.

The ring evolves incrementally: each change starts from ``RingBuilder.from_ring_data(previous
ring)``, so tokens of untouched disks never move and only the arcs next to added or removed
tokens change owners (only the first map of a cluster is built from scratch). The builder
of a change therefore starts at the previous epoch, and its ``build()`` (which adds one)
yields exactly the new map's epoch; ``ClusterMap`` checks ``ring.epoch == epoch``.

Movement: ``Ring.owners`` walks each owner position from its own point, so adding a 7th
node to 6 (width 6) changes about a quarter of the (key, position) slots that EC fragment
indexes follow: 1/7 because the new disk takes its share, the rest because a displaced disk
becomes free for a later position (see ``tests/chunkstore/placement/test_clustermap.py``).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Callable, TypeVar

import blake3

from chunkstore.atomicfile import atomic_write
from chunkstore.errors import FormatError, MapError
from chunkstore.placement.ring import DEFAULT_VNODES, RING_FORMAT_VERSION, Device, Ring, RingBuilder, RingData

MAP_FORMAT = "sofs-cluster-map"
MAP_FORMAT_VERSION = 1
MAX_MAP_BYTES = 1 << 20
NODE_STATES = ("up", "down", "draining", "out")
DISK_STATES = ("up", "out")
REMOVABLE_NODE_STATES = ("down", "draining", "out")

_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_HOST_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]{1,253}")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_TOKEN_RE = re.compile(r"[0-9a-f]{40}")  # a 160-bit ring token

T = TypeVar("T")


def _check_id(what: str, value: object) -> None:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise FormatError(f"{what} must match [A-Za-z0-9._:-]{{1,64}}, got {value!r}")


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` -> (host without IPv6 brackets, port); FormatError if malformed."""
    if not isinstance(address, str):
        raise FormatError(f"address must be a string, got {address!r}")
    host, sep, port = address.rpartition(":")
    if not sep or not _HOST_RE.fullmatch(host) or not _PORT_RE.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise FormatError(f"address must be host:port with a port in 1..65535, got {address!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class NodeInfo:
    """A storage node (one ``sofs-node`` daemon): id, ``host:port``, site and state."""

    id: str
    address: str
    site: str = "site0"
    state: str = "up"

    def __post_init__(self) -> None:
        _check_id("node id", self.id)
        split_address(self.address)
        _check_id(f"site of node {self.id}", self.site)
        if self.state not in NODE_STATES:
            raise FormatError(f"node {self.id}: unknown state {self.state!r} (one of {', '.join(NODE_STATES)})")


@dataclass(frozen=True)
class DiskInfo:
    """A disk served by a node: id, node id, relative weight and state."""

    id: str
    node: str
    weight: float = 1.0
    state: str = "up"

    def __post_init__(self) -> None:
        _check_id("disk id", self.id)
        _check_id(f"node of disk {self.id}", self.node)
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise FormatError(f"disk {self.id}: weight must be a finite number >= 0, got {w!r}")
        object.__setattr__(self, "weight", float(w))
        if self.state not in DISK_STATES:
            raise FormatError(f"disk {self.id}: unknown state {self.state!r} (one of {', '.join(DISK_STATES)})")


def _wanted_tokens(vnodes: int, weight: float) -> int:
    """Tokens RingBuilder gives a device of this weight (see ``RingBuilder._wanted``)."""
    return 0 if weight == 0 else max(1, round(vnodes * weight))


@dataclass(frozen=True)
class ClusterMap:
    """One epoch of a cluster's membership and placement (see module docstring).

    Constructing one validates it (FormatError): ids, states, unique ids, every disk on a
    known node, and a ring of the same epoch and vnodes whose devices are exactly the map's
    disks with the placement rule's weights and tiers.
    """

    cluster_id: str
    epoch: int
    vnodes: int
    nodes: tuple[NodeInfo, ...]
    disks: tuple[DiskInfo, ...]
    ring: RingData = field(repr=False)

    def __post_init__(self) -> None:
        _check_id("cluster id", self.cluster_id)
        for name in ("epoch", "vnodes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise FormatError(f"{name} must be an integer >= 1, got {v!r}")
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "disks", tuple(self.disks))
        nodes: dict[str, NodeInfo] = {}
        for n in self.nodes:
            if not isinstance(n, NodeInfo):
                raise FormatError(f"not a NodeInfo: {n!r}")
            if n.id in nodes:
                raise FormatError(f"duplicate node id {n.id!r}")
            nodes[n.id] = n
        disks: dict[str, DiskInfo] = {}
        for d in self.disks:
            if not isinstance(d, DiskInfo):
                raise FormatError(f"not a DiskInfo: {d!r}")
            if d.id in disks:
                raise FormatError(f"duplicate disk id {d.id!r}")
            if d.node not in nodes:
                raise FormatError(f"disk {d.id} names unknown node {d.node!r}")
            disks[d.id] = d
        self._check_ring(nodes, disks)

    def _check_ring(self, nodes: dict[str, NodeInfo], disks: dict[str, DiskInfo]) -> None:
        ring = self.ring
        if not isinstance(ring, RingData):
            raise FormatError("ring must be a RingData")
        if ring.epoch != self.epoch:
            raise FormatError(f"ring epoch {ring.epoch} differs from map epoch {self.epoch}")
        if ring.vnodes_per_disk != self.vnodes:
            raise FormatError(f"ring has {ring.vnodes_per_disk} vnodes per disk, map says {self.vnodes}")
        devices = {d.id: d for d in ring.devices}
        if set(devices) != set(disks):
            extra, missing = sorted(set(devices) - set(disks)), sorted(set(disks) - set(devices))
            raise FormatError(f"ring devices do not match the map's disks (not in map: {extra}, "
                              f"not in ring: {missing})")
        counts = dict.fromkeys(range(len(ring.devices)), 0)
        for _, i in ring.vnode2dev:
            counts[i] += 1
        for i, dev in enumerate(ring.devices):
            disk = disks[dev.id]
            node = nodes[disk.node]
            weight = disk.weight if _holds_tokens(disk, node) else 0.0
            if (dev.host, dev.site, dev.weight) != (node.id, node.site, weight):
                raise FormatError(
                    f"ring device {dev.id} (host {dev.host}, site {dev.site}, weight {dev.weight}) does not match "
                    f"the map (node {node.id}, site {node.site}, weight {weight})"
                )
            if counts[i] != _wanted_tokens(self.vnodes, weight):
                raise FormatError(f"ring device {dev.id} has {counts[i]} tokens, its weight {weight} wants "
                                  f"{_wanted_tokens(self.vnodes, weight)}")

    # -- queries --------------------------------------------------------------------------

    @cached_property
    def _nodes(self) -> dict[str, NodeInfo]:
        return {n.id: n for n in self.nodes}

    @cached_property
    def _disks(self) -> dict[str, DiskInfo]:
        return {d.id: d for d in self.disks}

    def node(self, node_id: str) -> NodeInfo:
        """The node ``node_id`` (KeyError if the map has none)."""
        try:
            return self._nodes[node_id]
        except KeyError:
            raise KeyError(f"no node {node_id!r} in the cluster map") from None

    def disk(self, disk_id: str) -> DiskInfo:
        """The disk ``disk_id`` (KeyError if the map has none)."""
        try:
            return self._disks[disk_id]
        except KeyError:
            raise KeyError(f"no disk {disk_id!r} in the cluster map") from None

    def node_of(self, disk_id: str) -> NodeInfo:
        """The node serving ``disk_id`` (KeyError for an unknown disk)."""
        return self._nodes[self.disk(disk_id).node]

    def placing_disks(self) -> list[str]:
        """Disks that own arcs of the ring (disk up, node up, weight > 0), in map order."""
        return [d.id for d in self.disks if _places(d, self._nodes[d.node])]

    def member_disks(self) -> list[str]:
        """Disks clients still talk to (disk and node not ``out``), in map order."""
        return [d.id for d in self.disks if d.state != "out" and self._nodes[d.node].state != "out"]

    @cached_property
    def _ring_view(self) -> Ring:
        standby = frozenset(d.id for d in self.disks
                            if _holds_tokens(d, self._nodes[d.node])
                            and not _places(d, self._nodes[d.node]))
        return Ring(self.ring, standby=standby)

    def ring_view(self) -> Ring:
        """The runtime ring (built once per map)."""
        return self._ring_view

    def fingerprint(self) -> str:
        """blake3 hex digest of the canonical JSON: tells apart maps of equal epoch."""
        return blake3.blake3(self._canonical.encode()).hexdigest()

    # -- JSON -----------------------------------------------------------------------------

    @cached_property
    def _canonical(self) -> str:
        doc = {
            "format": MAP_FORMAT,
            "format_version": MAP_FORMAT_VERSION,
            "cluster_id": self.cluster_id,
            "epoch": self.epoch,
            "vnodes": self.vnodes,
            "nodes": [{"id": n.id, "address": n.address, "site": n.site, "state": n.state} for n in self.nodes],
            "disks": [{"id": d.id, "node": d.node, "weight": d.weight, "state": d.state} for d in self.disks],
            "ring": json.loads(self.ring.to_json()),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def to_json(self) -> str:
        """The canonical JSON document (see module docstring)."""
        return self._canonical

    @classmethod
    def from_json(cls, text: str | bytes) -> "ClusterMap":
        """Parse and validate a document; FormatError says what is wrong."""
        size = len(text.encode() if isinstance(text, str) else text)
        if size > MAX_MAP_BYTES:
            raise FormatError(f"cluster map of {size} bytes refused (limit {MAX_MAP_BYTES})")
        try:
            doc = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
        except FormatError:
            raise
        except (ValueError, UnicodeDecodeError) as e:
            raise FormatError(f"cluster map is not JSON: {e}") from e
        doc = _keys("cluster map", doc, {"format", "format_version", "cluster_id", "epoch", "vnodes", "nodes",
                                         "disks", "ring"})
        if doc["format"] != MAP_FORMAT:
            raise FormatError(f"not a cluster map (format {doc['format']!r})")
        if doc["format_version"] != MAP_FORMAT_VERSION or isinstance(doc["format_version"], bool):
            raise FormatError(f"unknown cluster map format version {doc['format_version']!r}")
        nodes = tuple(_node_from_doc(n) for n in _list("nodes", doc["nodes"]))
        disks = tuple(_disk_from_doc(d) for d in _list("disks", doc["disks"]))
        return cls(doc["cluster_id"], doc["epoch"], doc["vnodes"], nodes, disks, _ring_from_doc(doc["ring"]))

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temp file, fsync, rename, fsync of the directory)."""
        atomic_write(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ClusterMap":
        """Read a map written by :meth:`save` (FormatError if bad or over 1 MiB)."""
        with open(path, "rb") as f:
            return cls.from_json(f.read(MAX_MAP_BYTES + 1))

    # -- changes (each returns a new map, epoch + 1) --------------------------------------

    @classmethod
    def create(cls, cluster_id: str, vnodes: int = DEFAULT_VNODES) -> "ClusterMap":
        """The first map of a cluster: epoch 1, no nodes."""
        if isinstance(vnodes, bool) or not isinstance(vnodes, int) or vnodes < 1:
            raise MapError(f"vnodes must be an integer >= 1, got {vnodes!r}")
        ring = RingBuilder(vnodes, epoch=0).build()  # build() adds one: epoch 1
        return _refusing(lambda: cls(cluster_id, 1, vnodes, (), (), ring))

    def add_node(self, node_id: str, address: str, site: str = "site0") -> "ClusterMap":
        """A new node (state up, no disks yet: add them with :meth:`add_disk`)."""
        if node_id in self._nodes:
            raise MapError(f"node {node_id} is already in the cluster map")
        node = _refusing(lambda: NodeInfo(node_id, address, site))
        return self._next(self.nodes + (node,), self.disks)

    def add_disk(self, disk_id: str, node: str, weight: float = 1.0) -> "ClusterMap":
        """A new disk (state up) on an existing node; it places data if the node is up."""
        if disk_id in self._disks:
            raise MapError(f"disk {disk_id} is already in the cluster map (on node {self._disks[disk_id].node})")
        if node not in self._nodes:
            raise MapError(f"cannot add disk {disk_id}: no node {node!r} in the cluster map")
        disk = _refusing(lambda: DiskInfo(disk_id, node, weight))
        return self._next(self.nodes, self.disks + (disk,))

    def set_node_state(self, node_id: str, state: str) -> "ClusterMap":
        """Change a node's state (any state to any state; see the module docstring)."""
        node = self._known_node(node_id)
        if state not in NODE_STATES:
            raise MapError(f"unknown node state {state!r} (one of {', '.join(NODE_STATES)})")
        return self._next(_replaced(self.nodes, replace(node, state=state)), self.disks)

    def set_disk_state(self, disk_id: str, state: str) -> "ClusterMap":
        """Change a disk's state (``up`` or ``out``)."""
        disk = self._known_disk(disk_id)
        if state not in DISK_STATES:
            raise MapError(f"unknown disk state {state!r} (one of {', '.join(DISK_STATES)})")
        return self._next(self.nodes, _replaced(self.disks, replace(disk, state=state)))

    def set_address(self, node_id: str, address: str) -> "ClusterMap":
        """Move a node to a new ``host:port`` (placement is unchanged)."""
        node = self._known_node(node_id)
        new = _refusing(lambda: replace(node, address=address))
        return self._next(_replaced(self.nodes, new), self.disks)

    def remove_node(self, node_id: str) -> "ClusterMap":
        """Remove a down, draining or out node and its disks (an up node is refused: drain it)."""
        node = self._known_node(node_id)
        if node.state not in REMOVABLE_NODE_STATES:
            raise MapError(f"node {node_id} is {node.state}: only a draining, down or out node can be "
                           "removed (drain it first)")
        return self._next(tuple(n for n in self.nodes if n.id != node_id),
                          tuple(d for d in self.disks if d.node != node_id))

    def remove_disk(self, disk_id: str) -> "ClusterMap":
        """Remove a disk that is out or whose node is not up (a placing disk is refused)."""
        disk = self._known_disk(disk_id)
        node = self._nodes[disk.node]
        if disk.state != "out" and node.state == "up":
            raise MapError(f"disk {disk_id} is up on up node {node.id}: set it out (or drain the node) "
                           "before removing it")
        return self._next(self.nodes, tuple(d for d in self.disks if d.id != disk_id))

    def _known_node(self, node_id: str) -> NodeInfo:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise MapError(f"no node {node_id!r} in the cluster map") from None

    def _known_disk(self, disk_id: str) -> DiskInfo:
        try:
            return self._disks[disk_id]
        except KeyError:
            raise MapError(f"no disk {disk_id!r} in the cluster map") from None

    def _next(self, nodes: tuple[NodeInfo, ...], disks: tuple[DiskInfo, ...]) -> "ClusterMap":
        """The map of the next epoch, its ring evolved from ours (tokens of untouched disks
        stay where they are)."""
        epoch = self.epoch + 1
        by_id = {n.id: n for n in nodes}
        wanted = {
            d.id: Device(d.id, d.node, by_id[d.node].site,
                         d.weight if _holds_tokens(d, by_id[d.node]) else 0.0)
            for d in disks
        }
        b = RingBuilder.from_ring_data(self.ring)  # at our epoch: build() yields epoch + 1
        for dev in b.devices:
            want = wanted.get(dev.id)
            if want is None or (want.host, want.site) != (dev.host, dev.site):
                b.remove_device(dev.id)
        have = {dev.id: dev for dev in b.devices}
        for dev_id, want in wanted.items():
            if dev_id not in have:
                b.add_device(dev_id, want.host, want.site, want.weight)
            elif have[dev_id].weight != want.weight:
                b.set_weight(dev_id, want.weight)
        ring = b.build()
        new = _refusing(lambda: ClusterMap(self.cluster_id, epoch, self.vnodes, nodes, disks, ring))
        size = len(new.to_json())
        if size > MAX_MAP_BYTES:
            raise MapError(f"the new cluster map would be {size} bytes, over the {MAX_MAP_BYTES} byte limit "
                           "(fewer vnodes or fewer disks)")
        return new


def _places(disk: DiskInfo, node: NodeInfo) -> bool:
    return disk.state == "up" and node.state == "up" and disk.weight > 0


def _holds_tokens(disk: DiskInfo, node: NodeInfo) -> bool:
    """Placing, or standing by for a node that is down (it keeps its arcs, see docstring)."""
    return disk.state == "up" and node.state in ("up", "down") and disk.weight > 0


def _replaced(items: tuple[Any, ...], new: Any) -> tuple[Any, ...]:
    return tuple(new if x.id == new.id else x for x in items)


def _refusing(make: Callable[[], T]) -> T:
    """Run ``make()``, turning a FormatError (bad id, address, weight ...) into MapError."""
    try:
        return make()
    except FormatError as e:
        raise MapError(str(e)) from None


# -- strict JSON helpers ------------------------------------------------------------------


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for k, v in pairs:
        if k in doc:
            raise FormatError(f"duplicate JSON key {k!r}")
        doc[k] = v
    return doc


def _no_constant(name: str) -> Any:
    raise FormatError(f"{name} is not allowed in a cluster map")


def _keys(what: str, obj: object, keys: set[str]) -> dict[str, Any]:
    """``obj`` if it is a JSON object with exactly ``keys``."""
    if not isinstance(obj, dict):
        raise FormatError(f"{what} must be a JSON object, got {type(obj).__name__}")
    if set(obj) != keys:
        extra, missing = sorted(set(obj) - keys), sorted(keys - set(obj))
        raise FormatError(f"{what}: unexpected keys {extra}, missing keys {missing}")
    return obj


def _node_from_doc(obj: object) -> NodeInfo:
    n = _keys("node", obj, {"id", "address", "site", "state"})
    return NodeInfo(_str("node id", n["id"]), _str("node address", n["address"]), _str("node site", n["site"]),
                    _str("node state", n["state"]))


def _disk_from_doc(obj: object) -> DiskInfo:
    d = _keys("disk", obj, {"id", "node", "weight", "state"})
    return DiskInfo(_str("disk id", d["id"]), _str("disk node", d["node"]), d["weight"], _str("disk state", d["state"]))


def _list(what: str, value: object) -> list[Any]:
    if not isinstance(value, list):
        raise FormatError(f"{what} must be a JSON list, got {type(value).__name__}")
    return value


def _str(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise FormatError(f"{what} must be a string, got {value!r}")
    return value


def _int(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(f"{what} must be an integer, got {value!r}")
    return value


def _ring_from_doc(obj: object) -> RingData:
    """RingData from the map's ``ring`` object, with strict types (RingData.from_json coerces)."""
    obj = _keys("ring", obj, {"format_version", "epoch", "vnodes_per_disk", "devices", "vnode2dev"})
    if _int("ring format_version", obj["format_version"]) != RING_FORMAT_VERSION:
        raise FormatError(f"unknown ring format version {obj['format_version']}")
    devices = []
    for d in _list("ring devices", obj["devices"]):
        d = _keys("ring device", d, {"id", "site", "host", "weight"})
        w = d["weight"]
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            raise FormatError(f"ring device weight must be a number, got {w!r}")
        devices.append(Device(_str("ring device id", d["id"]), _str("ring device host", d["host"]),
                              _str("ring device site", d["site"]), float(w)))
    vnodes = []
    for v in _list("ring vnode2dev", obj["vnode2dev"]):
        if not isinstance(v, list) or len(v) != 2 or not isinstance(v[0], str) or not _TOKEN_RE.fullmatch(v[0]):
            raise FormatError(f"ring vnode must be [\"<40 lowercase hex>\", <device index>], got {v!r}")
        vnodes.append((int(v[0], 16), _int("ring vnode device index", v[1])))
    return RingData(_int("ring epoch", obj["epoch"]), _int("ring vnodes_per_disk", obj["vnodes_per_disk"]),
                    tuple(devices), tuple(vnodes))
