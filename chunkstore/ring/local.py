"""LocalRing: the embedded RING over a local cluster directory (all disks in this process).

Cluster layout: see :mod:`chunkstore.ring.localcluster`. Placement: :class:`chunkstore.placement.ring.Ring`. The
data path (put, get, delete, degraded reads, quorum writes) is :class:`chunkstore.ring.datapath.
RingStore`'s; this class opens the cluster's DiskStores under an exclusive cluster lock.

A disk whose directory is missing at open, or vanishes later, is marked unavailable: reads
degrade, writes go to the quorum, nothing crashes. :meth:`LocalRing.revive_disk` (used by
repair) re-creates a missing disk directory.
"""

from __future__ import annotations

import os

from chunkstore.disk.store import DEFAULT_CONTAINER_SIZE, DiskStore
from chunkstore.errors import DiskUnavailable
from chunkstore.placement.layout import REPAIR_LOG_DIR
from chunkstore.placement.ring import Ring
from chunkstore.ring import localcluster as cl
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.repairlog import RepairLog


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
        cl.load_config(self.data_dir)  # ClusterNotFound before creating a lock file anywhere
        self._lock = cl.ClusterLock(self.data_dir)
        try:
            self.config = cl.load_config(self.data_dir)
            self.ring = Ring(cl.load_ring(self.data_dir))
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

    # -- disks --------------------------------------------------------------------------

    def _open_disk(self, disk_id: str) -> bool:
        path = self.config.disk_path(self.data_dir, disk_id)
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

    def revive_disk(self, disk_id: str) -> bool:
        """Bring an unavailable disk back: open it, or, if its directory is missing and the
        parent exists, re-create and initialise it empty. Refuses (False) a non-empty
        directory without a valid marker (it may be an unmounted disk's mount point)."""
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
        path = self.config.disk_path(self.data_dir, disk_id)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.exists(path):
            if not os.path.isdir(parent):
                return False
            try:
                DiskStore.initialise(path, self.config.cluster_id, disk_id)
            except (DiskUnavailable, OSError):
                return False
        return self._open_disk(disk_id)

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._close_disks()
        self._lock.release()

    def __repr__(self) -> str:
        return f"LocalRing({self.data_dir!r}, disks={len(self.config.disks)}, down={sorted(self._down)})"
