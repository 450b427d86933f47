"""LocalRing: the embedded RING over a local cluster directory (all disks in this process).

Cluster layout: see :mod:`chunkstore.ring.localcluster`. Placement: :class:`chunkstore.placement.ring.Ring`. The
data path (put, get, delete, degraded reads, quorum writes) is :class:`chunkstore.ring.datapath.
RingStore`'s; this class opens the cluster's DiskStores under an exclusive cluster lock.

A disk whose directory is missing at open, or vanishes later, is marked unavailable: reads
degrade, writes go to the quorum, nothing crashes. :meth:`LocalRing.revive_disk` (used by
repair) reopens a disk that is back; it initialises a missing (or empty, unmarked) disk
directory only when told (``init=True``: ``sofsctl repair --init-disk ID``), since a missing
directory is as likely a drive that failed to mount as a lost one, and rebuilding into it would
fill the parent filesystem. A disk that ``cluster init`` found to be its own mounted filesystem
(``DiskConfig.own_fs``) is never opened nor initialised while its path is on its parent's
filesystem. Refusals are kept in :attr:`LocalRing.refused` (disk id -> message).

:meth:`LocalRing.add_disk` grows the ring by one disk while it is open (offline by ``sofsctl
disk add``, or at runtime in the mount process): see :mod:`chunkstore.ring.growth`. A ring
file that lacks a disk of the config (a disk add that stopped at its commit point) is
completed at open (:attr:`LocalRing.completed`).
"""

from __future__ import annotations

import os
import time

from chunkstore.disk.marker import DAMAGED_PREFIX, MARKER_NAME, set_aside
from chunkstore.disk.store import DEFAULT_CONTAINER_SIZE, DiskStore
from chunkstore.errors import DiskUnavailable
from chunkstore.placement.layout import REPAIR_LOG_DIR, RING_FILE
from chunkstore.placement.ring import Ring, RingData
from chunkstore.ring import growth
from chunkstore.ring import localcluster as cl
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.repairlog import RepairLog


def has_marker(path: str) -> bool:
    return os.path.exists(os.path.join(path, MARKER_NAME))


def _missing_or_empty(path: str) -> bool:
    try:
        return not os.listdir(path)
    except FileNotFoundError:
        return True
    except NotADirectoryError:
        return False


class LocalRing(RingStore):
    """The RING with its disks opened in this process. Use :meth:`open`."""

    def __init__(
        self,
        data_dir: str | os.PathLike,
        *,
        workers: int | None = None,
        container_size: int = DEFAULT_CONTAINER_SIZE,
    ) -> None:
        self.data_dir = os.fspath(data_dir)
        self._container_size = container_size
        self.refused: dict[str, str] = {}  # disk id -> why it is not used (see revive_disk)
        self.set_aside: dict[str, str] = {}  # disk id -> what revive_disk moved away, and why
        self.completed: list[str] = []  # disks added to ring.json at open (see module docstring)
        cl.load_config(self.data_dir)  # ClusterNotFound before creating a lock file anywhere
        self._lock = cl.ClusterLock(self.data_dir)
        try:
            self.config = cl.load_config(self.data_dir)
            self.ring = Ring(self._complete_ring(cl.load_ring(self.data_dir)))
            self._init_disks()
            for d in self.config.disks:
                self._open_disk(d.id)
            self.repair_log = RepairLog(os.path.join(self.data_dir, REPAIR_LOG_DIR))
            n = workers or min(32, 2 * max(1, len(self.config.disks)))
            self._start_pool(n)
        except BaseException:
            for ds in getattr(self, "_disks", {}).values():
                ds.close()
            self._lock.release()
            raise

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike,
        *,
        workers: int | None = None,
        container_size: int = DEFAULT_CONTAINER_SIZE,
    ) -> "LocalRing":
        """Lock the cluster (ClusterInUse if held, ClusterNotFound if none) and open every
        disk that is there; ``workers`` bounds the piece I/O thread pool."""
        return cls(data_dir, workers=workers, container_size=container_size)

    def _complete_ring(self, data: RingData) -> RingData:
        done = growth.complete_ring(self.config, data)
        if done is None:
            return data
        data, self.completed = done
        data.save(os.path.join(self.data_dir, RING_FILE))
        return data

    # -- disks --------------------------------------------------------------------------

    def add_disk(self, disk_id: str | None = None, path: str | os.PathLike | None = None,
                 weight: float = 1.0) -> growth.DiskAddition:
        """Add a disk to the cluster and the ring (:mod:`chunkstore.ring.growth`: its
        directory initialised, cluster.json then ring.json written) and start using it: new
        pieces are placed by the grown ring at once; the pieces whose owners changed stay
        readable where they are until the repair sweep moves them. MapError or
        DiskUnavailable when refused (nothing committed then)."""
        self._check_open()
        plan = growth.plan_disk(self.data_dir, self.config, self.ring.data, disk_id, path, weight)
        added = growth.apply_disk(self.data_dir, plan)
        self.config = added.config  # first: the disk is known before the ring places on it
        self._open_disk(added.disk.id)  # one that does not open is down, as at open
        self.ring = Ring(added.ring)
        return added


    def _open_disk(self, disk_id: str) -> bool:
        path = self.config.disk_path(self.data_dir, disk_id)
        unmounted = cl.unmounted_reason(self.data_dir, self.config, disk_id)
        if unmounted is not None:
            with self._disks_lock:
                self._down[disk_id] = unmounted
            self.refused[disk_id] = unmounted
            return False
        try:
            ds = DiskStore(
                path,
                cluster_id=self.config.cluster_id,
                disk_id=disk_id,
                container_size=self._container_size,
            )
        except Exception as e:  # missing, unmarked, foreign, unreadable: the disk is just down
            with self._disks_lock:
                self._down[disk_id] = f"{type(e).__name__}: {e}"
            return False
        with self._disks_lock:
            old = self._disks.pop(disk_id, None)
            self._disks[disk_id] = ds
            self._down.pop(disk_id, None)
        if old is not None:
            old.close()
        return True

    def disk_ids(self) -> list[str]:
        return [d.id for d in self.config.disks]

    def revive_disk(self, disk_id: str, *, init: bool = False) -> bool:
        """Bring an unavailable disk back: open it if its directory holds its marker. A missing
        directory (whose parent exists), or an empty one without a marker, is initialised
        empty only with ``init``; without, the disk stays down and the refusal (naming the
        disk, its path and ``--init-disk``) is kept in :attr:`refused`. A non-empty directory
        without a valid marker is always refused (it may be an unmounted disk's mount point),
        and so is a disk set up as its own filesystem whose path is not a mount point now. A
        marked disk that does not open (a damaged index) is, with ``init``, set aside
        (:func:`~chunkstore.disk.marker.set_aside`: nothing deleted) and opened empty, to be
        rebuilt from the other disks (noted in :attr:`set_aside`); without, refused."""
        with self._disks_lock:
            if disk_id in self._disks:
                ds = self._disks[disk_id]
            else:
                ds = None
        if ds is not None:
            try:
                ds.check_alive()
                return True
            except DiskUnavailable as e:
                self.mark_down(disk_id, str(e))
        self.refused.pop(disk_id, None)
        path = self.config.disk_path(self.data_dir, disk_id)
        unmounted = cl.unmounted_reason(self.data_dir, self.config, disk_id)
        if unmounted is not None:
            return self._refuse(disk_id, unmounted)
        if not has_marker(path) and _missing_or_empty(path):
            if not init:
                return self._refuse(disk_id, (
                    f"disk {disk_id}: its directory {path} is missing or empty; not re-creating it "
                    f"(if the drive failed to mount, mount it there; if it is a new empty drive or "
                    f"the disk is to be rebuilt here, run: sofsctl repair --init-disk {disk_id})"))
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                return self._refuse(disk_id, f"disk {disk_id}: cannot initialise {path}: no directory {parent}")
            try:
                DiskStore.initialise(path, self.config.cluster_id, disk_id)
            except (DiskUnavailable, OSError) as e:
                return self._refuse(disk_id, f"disk {disk_id}: cannot initialise {path}: {e}")
        if self._open_disk(disk_id):
            return True
        why = self.unavailable_disks().get(disk_id, "unknown error")
        if not has_marker(path):
            return self._refuse(disk_id, f"disk {disk_id}: cannot open {path}: {why}")
        if not init:
            return self._refuse(disk_id, (
                f"disk {disk_id}: cannot open {path}: {why}; to rebuild its pieces from the "
                f"other disks, run: sofsctl repair --init-disk {disk_id} (what it holds now is "
                f"moved to {path}/{DAMAGED_PREFIX}TIME, not deleted)"))
        try:  # a marked disk that does not open (a damaged index): rebuilt empty
            moved = set_aside(path, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        except (DiskUnavailable, OSError) as e:
            return self._refuse(disk_id, f"disk {disk_id}: cannot open {path} ({why}) nor set "
                                         f"its contents aside: {e}")
        self.set_aside[disk_id] = (f"disk {disk_id} could not be opened ({why}): its contents "
                                   f"were moved to {moved} and its pieces are rebuilt from the "
                                   "other disks")
        if self._open_disk(disk_id):
            return True
        return self._refuse(disk_id, f"disk {disk_id}: cannot open {path} even empty: "
                                     f"{self.unavailable_disks().get(disk_id, 'unknown error')}")

    def _refuse(self, disk_id: str, reason: str) -> bool:
        self.refused[disk_id] = reason
        with self._disks_lock:
            self._down[disk_id] = reason
        return False

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._close_disks()
        self._lock.release()

    def __repr__(self) -> str:
        return f"LocalRing({self.data_dir!r}, disks={len(self.config.disks)}, down={sorted(self._down)})"
