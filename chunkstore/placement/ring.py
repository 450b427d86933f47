"""Consistent-hash placement: offline builder, versioned serialized form, immutable runtime view.

Shape after OpenStack Swift: :class:`RingBuilder` (offline, mutable) builds a :class:`RingData`
(versioned, serializable to JSON, carries an epoch), from which the runtime :class:`Ring`
(immutable, pure, no I/O) answers ``owners(key, n)``.

The keyspace is the 160-bit integer space of chunk keys. Each device (disk) gets
``round(vnodes * weight)`` vnodes whose tokens are derived from ``blake3("<disk id>/<i>/<probe>")``
(160 bits, big-endian; the probe farthest from the tokens already placed wins, which evens out
the arcs – see ``RingBuilder._place``), so the same builder history gives the same ring in every
process; the published RingData carries the tokens themselves. A key's
point is its 20 bytes read the same way. ``owners(key, n)`` picks one owner per position i
(fragment i of an EC chunk lives on owner i): position i walks clockwise from its own point
(the key's point for i = 0, ``blake3(key + i)`` for the others) and takes the first device not
yet chosen whose failure domains are least used so far: fewest owners on its site, then fewest
on its host. So owners go to distinct sites when there are enough sites, then to distinct
hosts, then to distinct disks. Walking each position from its own point (CRUSH's
"independent" mode) keeps positions stable when a device is added or removed: only positions
whose walk meets the changed device move, about weight-share of them, instead of every
position after it shifting by one. Picks depend only on earlier picks, so ``owners(key, n)``
is a prefix of ``owners(key, n + 1)``.

RingData JSON (format version 1)::

    {"format_version": 1, "epoch": E, "vnodes_per_disk": V,
     "devices": [{"id": "d0", "site": "s", "host": "h", "weight": 1.0}, ...],
     "vnode2dev": [["<40 hex token>", <device index>], ...]}    # sorted by token
"""

from __future__ import annotations

import bisect
import json
import math
import os
from dataclasses import dataclass

import blake3

from chunkstore.atomicfile import atomic_write
from chunkstore.errors import FormatError, NotEnoughDisks

RING_FORMAT_VERSION = 1
DEFAULT_VNODES = 6
KEYSPACE_BITS = 160
DEFAULT_PROBES = 32
_SPACE = 1 << KEYSPACE_BITS


@dataclass(frozen=True)
class Device:
    """One disk in the ring with its failure domains ``(site, host, disk)``."""

    id: str
    host: str
    site: str = "site0"
    weight: float = 1.0

    @property
    def tiers(self) -> tuple[tuple[str], tuple[str, str], tuple[str, str, str]]:
        """Failure-domain tiers, widest first (Swift ``tiers_for_dev``)."""
        return (self.site,), (self.site, self.host), (self.site, self.host, self.id)


def vnode_token(device_id: str, index: int, probe: int = 0) -> int:
    """Deterministic candidate ring point ``probe`` of vnode ``index`` of a device."""
    return int.from_bytes(blake3.blake3(f"{device_id}/{index}/{probe}".encode()).digest(20), "big")


def key_point(key: bytes) -> int:
    """Ring point of a chunk key (its first 20 bytes, big-endian)."""
    return int.from_bytes(key[:20], "big")


def position_point(key: bytes, position: int) -> int:
    """Where owner ``position`` of a key starts its walk (position 0: the key's own point)."""
    if position == 0:
        return key_point(key)
    return int.from_bytes(blake3.blake3(key[:20] + bytes((position,))).digest(20), "big")


@dataclass(frozen=True)
class RingData:
    """Versioned, serializable ring: devices plus sorted ``(token, device index)`` vnodes."""

    epoch: int
    vnodes_per_disk: int
    devices: tuple[Device, ...]
    vnode2dev: tuple[tuple[int, int], ...]
    format_version: int = RING_FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version != RING_FORMAT_VERSION:
            raise FormatError(f"unknown ring format version {self.format_version}")
        ids = [d.id for d in self.devices]
        if len(set(ids)) != len(ids):
            raise FormatError("duplicate device id in ring")
        prev = -1
        for token, dev in self.vnode2dev:
            if not 0 <= dev < len(self.devices) or not prev < token < 1 << KEYSPACE_BITS:
                raise FormatError("ring vnodes not sorted or device index out of range")
            prev = token

    def to_json(self) -> str:
        return json.dumps(
            {
                "format_version": self.format_version,
                "epoch": self.epoch,
                "vnodes_per_disk": self.vnodes_per_disk,
                "devices": [
                    {"id": d.id, "site": d.site, "host": d.host, "weight": d.weight} for d in self.devices
                ],
                "vnode2dev": [[f"{t:040x}", i] for t, i in self.vnode2dev],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> "RingData":
        try:
            doc = json.loads(text)
            devices = tuple(
                Device(str(d["id"]), str(d["host"]), str(d["site"]), float(d["weight"])) for d in doc["devices"]
            )
            vnodes = tuple((int(t, 16), int(i)) for t, i in doc["vnode2dev"])
            return cls(
                epoch=int(doc["epoch"]),
                vnodes_per_disk=int(doc["vnodes_per_disk"]),
                devices=devices,
                vnode2dev=vnodes,
                format_version=int(doc["format_version"]),
            )
        except FormatError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise FormatError(f"bad ring JSON: {e}") from e

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically and durably (chunkstore.atomicfile)."""
        atomic_write(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RingData":
        with open(path, "rb") as f:
            return cls.from_json(f.read())


class RingBuilder:
    """Offline, mutable description of the devices and their vnode tokens.

    ``build()`` publishes an immutable RingData with the next epoch. Tokens of existing devices
    never move when devices are added, removed or reweighted, so only the arcs next to the
    changed vnodes change owners.
    """

    def __init__(self, vnodes_per_disk: int = DEFAULT_VNODES, epoch: int = 0, probes: int = DEFAULT_PROBES) -> None:
        if vnodes_per_disk < 1:
            raise ValueError("vnodes_per_disk must be >= 1")
        self.vnodes_per_disk = vnodes_per_disk
        self.epoch = epoch
        self.probes = max(1, probes)
        self._devices: dict[str, Device] = {}
        self._tokens: dict[str, list[int]] = {}  # device id -> its tokens, in vnode order

    @classmethod
    def from_ring_data(cls, data: RingData) -> "RingBuilder":
        """A builder holding the devices and tokens of an existing ring."""
        b = cls(data.vnodes_per_disk, data.epoch)
        for d in data.devices:
            b._devices[d.id] = d
            b._tokens[d.id] = []
        for token, i in data.vnode2dev:
            b._tokens[data.devices[i].id].append(token)
        return b

    def add_device(self, disk_id: str, host: str, site: str = "site0", weight: float = 1.0) -> Device:
        if disk_id in self._devices:
            raise ValueError(f"device {disk_id!r} already in the ring")
        dev = Device(disk_id, host, site, _check_weight(weight))
        self._devices[disk_id] = dev
        self._tokens[disk_id] = []
        return dev

    def set_weight(self, disk_id: str, weight: float) -> None:
        d = self._devices[disk_id]
        self._devices[disk_id] = Device(d.id, d.host, d.site, _check_weight(weight))

    def remove_device(self, disk_id: str) -> None:
        del self._devices[disk_id]
        del self._tokens[disk_id]

    @property
    def devices(self) -> list[Device]:
        return list(self._devices.values())

    def _wanted(self, d: Device) -> int:
        return 0 if d.weight == 0 else max(1, round(self.vnodes_per_disk * d.weight))

    def _place(self) -> None:
        """Give every device as many tokens as its weight asks for.

        Vnode ``i`` of device ``d`` takes, among the candidates ``vnode_token(d, i, p)`` for
        p < probes, the one farthest from any token already placed (a deterministic
        multi-probe that evens out the arcs). New vnodes are placed round-robin over devices
        in id order, so the same builder history always yields the same tokens.
        """
        for dev_id, toks in self._tokens.items():
            del toks[self._wanted(self._devices[dev_id]):]
        placed = sorted(t for toks in self._tokens.values() for t in toks)
        ids = sorted(self._devices)
        rounds = max((self._wanted(self._devices[i]) for i in ids), default=0)
        for v in range(rounds):
            for dev_id in ids:
                toks = self._tokens[dev_id]
                if len(toks) >= self._wanted(self._devices[dev_id]) or len(toks) > v:
                    continue
                idx = len(toks)
                best, best_dist = None, -1
                for p in range(self.probes):
                    c = vnode_token(dev_id, idx, p)
                    if not placed:
                        best = c
                        break
                    k = bisect.bisect_left(placed, c)
                    lo, hi = placed[k - 1], placed[k % len(placed)]
                    dist = min((c - lo) % _SPACE, (hi - c) % _SPACE)
                    if dist > best_dist and c not in placed:
                        best, best_dist = c, dist
                assert best is not None
                toks.append(best)
                bisect.insort(placed, best)

    def build(self) -> RingData:
        """A new RingData with the next epoch."""
        self._place()
        devices = tuple(sorted(self._devices.values(), key=lambda d: d.id))
        vnodes = sorted((t, i) for i, d in enumerate(devices) for t in self._tokens[d.id])
        self.epoch += 1
        return RingData(self.epoch, self.vnodes_per_disk, devices, tuple(vnodes))


def _check_weight(weight: float) -> float:
    weight = float(weight)
    if not math.isfinite(weight) or weight < 0:
        raise ValueError("weight must be a finite number >= 0")
    return weight


class Ring:
    """Immutable runtime view of a RingData. ``owners`` is pure (no I/O)."""

    def __init__(self, data: RingData, standby: frozenset[str] = frozenset()) -> None:
        """``standby``: devices that keep their tokens but take no pieces (a node that is down
        and may come back): each owner position one of them would hold goes to the next
        device of the key's walk, so no other position moves."""
        self._data = data
        self._standby = frozenset(i for i, d in enumerate(data.devices) if d.id in standby)
        self._tokens = [t for t, _ in data.vnode2dev]
        self._devs = [i for _, i in data.vnode2dev]
        self._sites = [d.site for d in data.devices]
        self._hosts = [(d.site, d.host) for d in data.devices]
        live = set(self._devs)
        self._n_live = len(live)
        self._n_placing = len(live - self._standby)
        # devices with vnodes per site and per (site, host), to know the best reachable score
        self._site_devs: dict[str, int] = {}
        self._host_devs: dict[str, dict[tuple[str, str], int]] = {}
        for i in live:
            s, h = self._sites[i], self._hosts[i]
            self._site_devs[s] = self._site_devs.get(s, 0) + 1
            hd = self._host_devs.setdefault(s, {})
            hd[h] = hd.get(h, 0) + 1

    @property
    def data(self) -> RingData:
        return self._data

    @property
    def epoch(self) -> int:
        return self._data.epoch

    @property
    def devices(self) -> tuple[Device, ...]:
        return self._data.devices

    @property
    def device_ids(self) -> list[str]:
        return [d.id for d in self._data.devices]

    def device(self, disk_id: str) -> Device:
        for d in self._data.devices:
            if d.id == disk_id:
                return d
        raise KeyError(disk_id)

    @property
    def placing_count(self) -> int:
        """How many devices take pieces (the most owners a key can have)."""
        return self._n_placing

    def owners(self, key: bytes, n: int) -> list[str]:
        """The n disk ids that own ``key``, in piece order (see module docstring)."""
        if n > self._n_placing:
            raise NotEnoughDisks(f"ring has {self._n_placing} disks, {n} owners needed")
        if n <= 0:
            return []
        chosen = self._walk(key, n)
        standby = self._standby
        if standby and any(i in standby for i in chosen):
            # substitute standby devices by the next placing ones of the key's walk
            need = sum(1 for i in chosen if i in standby)
            m = n + need
            while True:
                longer = self._walk(key, m)
                spares = [i for i in longer[n:] if i not in standby]
                if len(spares) >= need or m >= self._n_live:
                    break
                m = min(self._n_live, m + need - len(spares))
            it = iter(spares)
            chosen = [next(it) if i in standby else i for i in chosen]
        return [self._data.devices[i].id for i in chosen]

    def _walk(self, key: bytes, n: int) -> list[int]:
        """Device indexes of the first n owners of ``key``, standby devices included."""
        tokens, devs, sites, hosts = self._tokens, self._devs, self._sites, self._hosts
        size = len(tokens)
        chosen: list[int] = []
        site_use: dict[str, int] = {}
        host_use: dict[tuple[str, str], int] = {}
        site_taken: dict[str, int] = {}  # devices of the site already chosen
        for position in range(n):
            start = bisect.bisect_left(tokens, position_point(key, position))
            target = self._best_score(site_use, host_use, site_taken)
            for j in range(size):
                dev = devs[(start + j) % size]
                if dev in chosen:
                    continue
                if (site_use.get(sites[dev], 0), host_use.get(hosts[dev], 0)) == target:
                    break
            else:  # pragma: no cover - _best_score only names reachable scores
                raise AssertionError("ring walk found no device")
            chosen.append(dev)
            site_use[sites[dev]] = site_use.get(sites[dev], 0) + 1
            host_use[hosts[dev]] = host_use.get(hosts[dev], 0) + 1
            site_taken[sites[dev]] = site_taken.get(sites[dev], 0) + 1
        return chosen

    def _best_score(
        self, site_use: dict[str, int], host_use: dict[tuple[str, str], int], site_taken: dict[str, int]
    ) -> tuple[int, int]:
        """Lowest (owners on site, owners on host) any not-yet-chosen device can have."""
        if len(site_use) < len(self._site_devs):
            return (0, 0)
        best_site = min(
            site_use.get(s, 0) for s, cnt in self._site_devs.items() if site_taken.get(s, 0) < cnt
        )
        best_host = None
        for s, cnt in self._site_devs.items():
            if site_taken.get(s, 0) >= cnt or site_use.get(s, 0) != best_site:
                continue
            for h, hcnt in self._host_devs[s].items():
                used = host_use.get(h, 0)
                if used < hcnt and (best_host is None or used < best_host):
                    best_host = used
                    if used == 0:
                        return (best_site, 0)
        assert best_host is not None
        return (best_site, best_host)
