"""What each disk of a RING holds (``sofsctl df``): the disk's own usage report
(:class:`~chunkstore.disk.records.DiskStats`) asked through the ring client's call path, or why
it could not be asked. Reads only."""

from __future__ import annotations

import dataclasses

from chunkstore.disk.records import DiskStats
from chunkstore.errors import ChunkStoreError
from chunkstore.ring.datapath import RingStore


@dataclasses.dataclass(frozen=True)
class DiskUsage:
    id: str
    stats: DiskStats | None
    error: str | None = None

    def as_dict(self) -> dict:
        return {"id": self.id, "error": self.error,
                **({} if self.stats is None else dataclasses.asdict(self.stats))}


def disk_usage(ring: RingStore) -> list[DiskUsage]:
    """Every disk of ``ring``, in the ring's order, with its stats or the error."""
    down = ring.unavailable_disks()
    out = []
    for disk_id in ring.disk_ids():
        if disk_id in down:
            out.append(DiskUsage(disk_id, None, f"unavailable: {down[disk_id]}"))
            continue
        try:
            out.append(DiskUsage(disk_id, ring.call(disk_id, lambda d: d.stats())))
        except (ChunkStoreError, OSError) as e:
            out.append(DiskUsage(disk_id, None, str(e)))
    return out
