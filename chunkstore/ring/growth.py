"""Growing an embedded RING by one disk (``sofsctl disk add`` on a local cluster).

:func:`plan_disk` checks a new disk against the cluster (its id, weight and directory) and
says what it will be, without writing anything; :func:`apply_disk` then makes it real, in an
order that a crash at any point leaves consistent:

1. the disk directory is initialised (its ``DISK`` marker; the directory itself when its
   parent exists). A crash here leaves an initialised directory no disk uses: the next
   ``disk add`` of the same id accepts it (``resumed``);
2. ``own_fs`` is recorded as ``cluster init`` does (:func:`~chunkstore.ring.localcluster.
   on_own_fs`: the directory is a mounted filesystem of its own);
3. ``cluster.json`` is replaced atomically with the new disk: the commit point;
4. ``ring.json`` is rebuilt from the ring it replaces plus the new disk
   (:func:`grown_ring`: the tokens of the other disks stay where they are, so only the arcs
   the new disk takes change owners). A crash between 3 and 4 leaves a ring that lacks a
   disk of the config: :func:`complete_ring`, run when a LocalRing opens, adds it.

Moving the pieces whose owners changed is the repair sweep's job
(:mod:`chunkstore.healing.rebalance`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass

from chunkstore.atomicfile import atomic_write
from chunkstore.disk.marker import MARKER_NAME, read_marker
from chunkstore.disk.store import DiskStore
from chunkstore.errors import DiskUnavailable, MapError
from chunkstore.placement.layout import CLUSTER_FILE, DISKS_DIR, RING_FILE
from chunkstore.placement.ring import RingBuilder, RingData
from chunkstore.ring.localcluster import ClusterConfig, DiskConfig, on_own_fs

DISK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NUMBERED = re.compile(r"d([0-9]+)")


@dataclass(frozen=True)
class DiskAddition:
    """A disk to add (:func:`plan_disk`) or added (:func:`apply_disk`) to an embedded RING."""

    disk: DiskConfig       # as cluster.json records it (path relative to DATA_DIR by default)
    path: str              # its directory, absolute
    config: ClusterConfig  # the cluster with the disk
    ring: RingData         # the ring with the disk (the next epoch)
    resumed: bool = False  # its directory was already initialised (an interrupted disk add)

    def as_dict(self) -> dict:
        return {"disk_id": self.disk.id, "path": self.path, "weight": self.disk.weight,
                "own_fs": self.disk.own_fs, "resumed": self.resumed, "epoch": self.ring.epoch,
                "disks": len(self.config.disks)}


def next_disk_id(config: ClusterConfig) -> str:
    """``dN`` for the N after the highest numbered disk (``d6`` after d0 .. d5)."""
    numbers = [int(m.group(1)) for d in config.disks if (m := _NUMBERED.fullmatch(d.id))]
    return f"d{max(numbers, default=-1) + 1}"


def grown_ring(data: RingData, config: ClusterConfig) -> RingData:
    """``data`` with the disks of ``config`` it lacks added (in the config's order), at the
    next epoch; the tokens of its devices do not move."""
    b = RingBuilder.from_ring_data(data)
    have = {d.id for d in data.devices}
    for d in config.disks:
        if d.id not in have:
            b.add_device(d.id, host=d.host, site=d.site, weight=d.weight)
    return b.build()


def complete_ring(config: ClusterConfig, data: RingData) -> tuple[RingData, list[str]] | None:
    """The ring of a ``disk add`` that stopped between ``cluster.json`` and ``ring.json``:
    ``(ring with the missing disks, their ids)``, or None when the ring has every disk."""
    have = {d.id for d in data.devices}
    missing = [d.id for d in config.disks if d.id not in have]
    if not missing:
        return None
    return grown_ring(data, config), missing


def _inside(a: str, b: str) -> bool:
    """Whether real path ``a`` is ``b`` or inside it."""
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep)


def _check_dir(path: str, config: ClusterConfig, disk_id: str) -> bool:
    """Refuse a directory that cannot become disk ``disk_id``; True if it already is that
    disk's (initialised by an interrupted disk add)."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise MapError(f"{path} is not a directory")
    if os.path.exists(os.path.join(path, MARKER_NAME)):
        try:
            marker = read_marker(path)
        except DiskUnavailable as e:
            raise MapError(f"{path} has an unreadable disk marker, refusing to use it: {e}") from None
        if marker.cluster_id != config.cluster_id:
            raise MapError(f"{path} is disk {marker.disk_id} of another cluster "
                           f"({marker.cluster_id}; this one is {config.cluster_id}): refusing "
                           "to use it")
        if marker.disk_id != disk_id:
            raise MapError(f"{path} is already initialised as disk {marker.disk_id} of this "
                           f"cluster, not {disk_id}: add it as {marker.disk_id}, or use another "
                           "directory")
        return True
    if os.path.isdir(path):
        if os.listdir(path):
            raise MapError(f"{path} is not empty and is not a sofs disk (no {MARKER_NAME} "
                           "marker): refusing to use it (a fresh ext4 filesystem has a "
                           "lost+found directory: remove it, or use a filesystem without one)")
        return False
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise MapError(f"cannot create {path}: no directory {parent}")
    return False


def plan_disk(data_dir: str | os.PathLike, config: ClusterConfig, ring: RingData,
              disk_id: str | None = None, path: str | os.PathLike | None = None,
              weight: float = 1.0) -> DiskAddition:
    """What adding a disk would do; writes nothing. ``disk_id`` defaults to
    :func:`next_disk_id`, ``path`` to ``DATA_DIR/disks/ID``. MapError for an id that exists
    or is not a plain name, a weight that is not a finite number > 0, a directory another
    disk uses (or inside one, or holding one), one that is not empty and not a sofs disk, or
    a disk of another cluster or of another id."""
    data_dir = os.fspath(data_dir)
    disk_id = next_disk_id(config) if disk_id is None else disk_id
    if not DISK_ID_RE.fullmatch(disk_id):
        raise MapError(f"bad disk id {disk_id!r}: letters, digits, '.', '_' and '-', starting "
                       "with a letter or digit, at most 64")
    if any(d.id == disk_id for d in config.disks):
        raise MapError(f"disk {disk_id} is already in the cluster (its disks: "
                       f"{', '.join(d.id for d in config.disks)}); the next free id is "
                       f"{next_disk_id(config)}")
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        raise MapError(f"bad weight {weight!r}: a number > 0") from None
    if not math.isfinite(weight) or weight <= 0:
        raise MapError(f"bad weight {weight}: a disk's weight is a finite number > 0 "
                       "(its relative capacity; 1 for a disk like the others)")
    stored = os.path.join(DISKS_DIR, disk_id) if path is None else os.path.abspath(path)
    full = os.path.abspath(os.path.join(data_dir, stored))
    real = os.path.realpath(full)
    for d in config.disks:
        other = os.path.realpath(config.disk_path(data_dir, d.id))
        if _inside(real, other) or _inside(other, real):
            raise MapError(f"{full} is already used by disk {d.id} ({other})")
    if _inside(os.path.realpath(data_dir), real):
        raise MapError(f"{full} holds the data directory {data_dir}: not a disk directory")
    resumed = _check_dir(full, config, disk_id)
    disk = DiskConfig(disk_id, stored, weight=weight)
    new = dataclasses.replace(config, disks=(*config.disks, disk))
    return DiskAddition(disk, full, new, grown_ring(ring, new), resumed)


def apply_disk(data_dir: str | os.PathLike, plan: DiskAddition) -> DiskAddition:
    """Initialise the disk's directory, record whether it is its own filesystem, then write
    ``cluster.json`` (the commit point) and ``ring.json``; returns the addition as committed.
    The caller holds the cluster lock. DiskUnavailable if the directory cannot be
    initialised (nothing committed then)."""
    data_dir = os.fspath(data_dir)
    DiskStore.initialise(plan.path, plan.config.cluster_id, plan.disk.id)
    disk = dataclasses.replace(plan.disk, own_fs=on_own_fs(plan.path))
    config = dataclasses.replace(plan.config, disks=tuple(
        disk if d.id == disk.id else d for d in plan.config.disks))
    atomic_write(os.path.join(data_dir, CLUSTER_FILE), config.to_json())
    plan.ring.save(os.path.join(data_dir, RING_FILE))
    return dataclasses.replace(plan, disk=disk, config=config)
