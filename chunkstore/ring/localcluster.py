"""A local cluster directory: its configuration file, ring file, disks and lock.

Layout of ``DATA_DIR``::

    cluster.json   ClusterConfig (JSON, format_version 1): cluster id, vnodes per disk and the
                   disks with their paths (relative to DATA_DIR unless absolute), failure
                   domains and ``own_fs``: whether the disk directory was its own mounted
                   filesystem at init (absent in older files: false). Such a disk is never
                   used while its path is on its parent's filesystem (the drive is not mounted)
    ring.json      RingData (chunkstore.placement.ring), built from cluster.json
    cluster.lock   exclusive flock held while a LocalRing is open; contains the holder's pid
    disks/d0 ..    one DiskStore directory per disk (chunkstore.disk.store)
    repairlog/     rocksdict of chunks needing repair (chunkstore.ring.repairlog)

cluster.json is written last (atomically) by :func:`init_local_cluster`: it is the commit point
of a new cluster.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import uuid
from dataclasses import dataclass

from chunkstore.atomicfile import atomic_write
from chunkstore.disk.store import DiskStore
from chunkstore.errors import ClusterInUse, ClusterMismatch, ClusterNotFound, DiskUnavailable, FormatError
from chunkstore.placement.layout import CLUSTER_FILE, DISKS_DIR, LOCK_FILE, RING_FILE
from chunkstore.placement.ring import DEFAULT_VNODES, RingBuilder, RingData

CLUSTER_FORMAT_VERSION = 1


@dataclass(frozen=True)
class DiskConfig:
    """One disk of the cluster: id, directory and failure domains."""

    id: str
    path: str
    host: str = "local"
    site: str = "site0"
    weight: float = 1.0
    own_fs: bool = False  # its directory was its own mounted filesystem at ``cluster init``


def on_own_fs(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a mount point: its st_dev differs from its parent directory's."""
    path = os.path.abspath(os.fspath(path))
    return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev


def unmounted_reason(data_dir: str | os.PathLike, config: "ClusterConfig", disk_id: str) -> str | None:
    """Why a disk configured as its own filesystem must not be used now (its directory is
    missing, or is on its parent's filesystem: the drive is not mounted), else None."""
    d = config.disk(disk_id)
    if not d.own_fs:
        return None
    path = config.disk_path(data_dir, disk_id)
    try:
        if on_own_fs(path):
            return None
    except FileNotFoundError:
        pass
    return (f"disk {disk_id} was set up as its own filesystem but {path} is not a mount point "
            f"(on its parent's filesystem or missing): the drive is not mounted; mount it there "
            f"and run repair again")


@dataclass(frozen=True)
class ClusterConfig:
    """Contents of cluster.json."""

    cluster_id: str
    vnodes: int
    disks: tuple[DiskConfig, ...]
    format_version: int = CLUSTER_FORMAT_VERSION

    def disk(self, disk_id: str) -> DiskConfig:
        for d in self.disks:
            if d.id == disk_id:
                return d
        raise KeyError(disk_id)

    def disk_path(self, data_dir: str | os.PathLike, disk_id: str) -> str:
        for d in self.disks:
            if d.id == disk_id:
                return os.path.join(os.fspath(data_dir), d.path)  # absolute paths stay absolute
        raise KeyError(disk_id)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format_version": self.format_version,
                "cluster_id": self.cluster_id,
                "vnodes": self.vnodes,
                "disks": [dataclasses.asdict(d) for d in self.disks],
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> "ClusterConfig":
        try:
            doc = json.loads(text)
            if int(doc["format_version"]) != CLUSTER_FORMAT_VERSION:
                raise FormatError(f"unknown cluster format version {doc['format_version']}")
            disks = tuple(
                DiskConfig(str(d["id"]), str(d["path"]), str(d["host"]), str(d["site"]), float(d["weight"]),
                           own_fs=_bool(d.get("own_fs", False)))
                for d in doc["disks"]
            )
            return cls(str(doc["cluster_id"]), int(doc["vnodes"]), disks)
        except FormatError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise FormatError(f"bad cluster.json: {e}") from e

    def ring_builder(self) -> RingBuilder:
        b = RingBuilder(self.vnodes)
        for d in self.disks:
            b.add_device(d.id, host=d.host, site=d.site, weight=d.weight)
        return b

    def same_shape(self, other: "ClusterConfig") -> bool:
        """Equal apart from the cluster id (and what init observed: ``own_fs``)."""
        def shape(c: "ClusterConfig") -> tuple:
            return (c.vnodes, tuple(dataclasses.replace(d, own_fs=False) for d in c.disks), c.format_version)
        return shape(self) == shape(other)


def _bool(v: object) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"own_fs must be true or false, not {v!r}")
    return v


def load_config(data_dir: str | os.PathLike) -> ClusterConfig:
    """Read DATA_DIR/cluster.json (ClusterNotFound if absent, FormatError if bad)."""
    path = os.path.join(os.fspath(data_dir), CLUSTER_FILE)
    try:
        with open(path, "rb") as f:
            return ClusterConfig.from_json(f.read())
    except FileNotFoundError:
        raise ClusterNotFound(f"{os.fspath(data_dir)}: no cluster here (no {CLUSTER_FILE})") from None


def load_ring(data_dir: str | os.PathLike) -> RingData:
    """Read DATA_DIR/ring.json (ClusterNotFound if absent, FormatError if bad)."""
    try:
        return RingData.load(os.path.join(os.fspath(data_dir), RING_FILE))
    except FileNotFoundError:
        raise ClusterNotFound(f"{os.fspath(data_dir)}: no {RING_FILE}") from None


def _holder_pid(raw: bytes) -> int | None:
    try:
        return int(raw.decode().strip() or 0) or None
    except ValueError:
        return None


def lock_holder(data_dir: str | os.PathLike, name: str = LOCK_FILE) -> int | None:
    """The pid written in a cluster lock file (its holder while the lock is held; a holder
    killed with -9 leaves its pid there), or None."""
    try:
        with open(os.path.join(os.fspath(data_dir), name), "rb") as f:
            return _holder_pid(f.read(32))
    except OSError:
        return None


class ClusterLock:
    """Exclusive flock on DATA_DIR/cluster.lock (or DATA_DIR/``name``) with the holder's pid
    written in it."""

    def __init__(self, data_dir: str | os.PathLike, name: str = LOCK_FILE) -> None:
        self.path = os.path.join(os.fspath(data_dir), name)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_pid(os.pread(fd, 32, 0))
            os.close(fd)
            raise ClusterInUse(f"cluster {os.path.dirname(self.path)} is in use by pid {holder}", holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.ftruncate(fd, 0)
            os.close(fd)  # closing drops the flock


def _different(data_dir: str, config: ClusterConfig) -> str:
    return (f"{data_dir}: holds a different cluster ({len(config.disks)} disks, {config.vnodes} "
            "vnodes); to grow it, add disks one at a time with: sofsctl disk add")


def init_local_cluster(
    data_dir: str | os.PathLike, disks: int = 6, vnodes: int = DEFAULT_VNODES
) -> ClusterConfig:
    """Create a cluster of ``disks`` disk directories (``disks/d0`` ..) under ``data_dir``.

    Idempotent: on an existing cluster with the same shape it only completes missing pieces
    (ring.json, disk markers) and returns the existing config. Raises ClusterMismatch for a
    different existing cluster. While a LocalRing has it open, an identical cluster is returned
    as it is (nothing is created then).
    """
    if disks < 1 or vnodes < 1:
        raise ValueError("need at least one disk and one vnode")
    data_dir = os.fspath(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    wanted_disks = tuple(DiskConfig(f"d{i}", os.path.join(DISKS_DIR, f"d{i}")) for i in range(disks))
    try:
        lock = ClusterLock(data_dir)
    except ClusterInUse:
        # Served right now (a volume is mounted): an identical cluster exists, so there is
        # nothing to create; missing disk directories are repair's job.
        try:
            config = load_config(data_dir)
        except ClusterNotFound:
            raise ClusterInUse(f"{data_dir}: another process is creating this cluster") from None
        if not config.same_shape(ClusterConfig(config.cluster_id, vnodes, wanted_disks)):
            raise ClusterMismatch(_different(data_dir, config)) from None
        return config
    try:
        try:
            config = load_config(data_dir)
        except ClusterNotFound:
            config = ClusterConfig(str(uuid.uuid4()), vnodes, wanted_disks)
            fresh = True
        except FormatError as e:
            raise ClusterMismatch(f"{data_dir}: unreadable cluster.json, refusing to overwrite: {e}") from e
        else:
            fresh = False
            if not config.same_shape(ClusterConfig(config.cluster_id, vnodes, wanted_disks)):
                raise ClusterMismatch(_different(data_dir, config))
        os.makedirs(os.path.join(data_dir, DISKS_DIR), exist_ok=True)
        for d in config.disks:
            path = config.disk_path(data_dir, d.id)
            if not fresh and unmounted_reason(data_dir, config, d.id) is not None:
                continue  # never initialise the mount point of a drive that is not mounted
            if fresh or not os.path.exists(path):
                DiskStore.initialise(path, config.cluster_id, d.id)
        if fresh:  # record which disk directories are mounted filesystems of their own
            config = dataclasses.replace(config, disks=tuple(
                dataclasses.replace(d, own_fs=on_own_fs(config.disk_path(data_dir, d.id))) for d in config.disks))
        ring_path = os.path.join(data_dir, RING_FILE)
        if fresh or not os.path.exists(ring_path):
            config.ring_builder().build().save(ring_path)
        if fresh:
            atomic_write(os.path.join(data_dir, CLUSTER_FILE), config.to_json())
        return config
    finally:
        lock.release()


def init_disk_dir(data_dir: str | os.PathLike, disk_id: str) -> str:
    """Initialise one disk's missing or empty directory (``sofsctl repair --init-disk ID``),
    so that the next repair sweep rebuilds its pieces there; returns its path. Idempotent on a
    disk that holds its marker. KeyError for an unknown disk; DiskUnavailable if the disk was
    set up as its own filesystem and the drive is not mounted, or the directory is not empty
    and unmarked (possibly an unmounted drive's mount point), or its parent is missing."""
    config = load_config(data_dir)
    config.disk(disk_id)  # KeyError
    reason = unmounted_reason(data_dir, config, disk_id)
    if reason is not None:
        raise DiskUnavailable(reason)
    path = config.disk_path(data_dir, disk_id)
    DiskStore.initialise(path, config.cluster_id, disk_id)
    return path
