"""The mount's write lease on its volume, on a networked RING with etcd.

Before serving, the mount takes the volume's lease (:mod:`chunkstore.authority.volumelease`):
refused while another connector holds it (the mount fails, naming the holder). The lease's
token is declared to every storage node (FENCE) before the first write, so the nodes refuse
the writes of any earlier holder from then on. While serving, :func:`keep` renews it; if it
cannot be renewed in time, the mount's metadata is fenced at once (every change fails with
EROFS), its garbage collector stops and ``stats`` says why; reads go on. A clean unmount
releases the lease, so another host can mount the volume at once. A cluster without etcd
(the embedded ring, or a networked one made without ``--etcd``) has no lease: nothing here.
"""

from __future__ import annotations

import logging
import uuid

import trio

from chunkstore.authority.election import candidate_name
from chunkstore.authority.volumelease import VolumeLease
from chunkstore.errors import VolumeLeased
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.net import NetRing
from sofs.fs import Filesystem

log = logging.getLogger("sofs.mount.lease")

LEASE_TTL_S = 10


class MountLease:
    """The lease a mount holds, and whether it still does."""

    def __init__(self, lease: VolumeLease) -> None:
        self.lease = lease
        self.lost: str | None = None  # why the mount stopped writing (None: it holds)

    @property
    def token(self) -> int:
        return self.lease.token


def take(ring: RingStore, fs: Filesystem, data_dir: str,
         ttl_s: int = LEASE_TTL_S) -> MountLease | None:
    """Take the volume's lease and declare its token to the nodes (None without etcd).
    RuntimeError (the mount fails) when another connector holds it."""
    if not isinstance(ring, NetRing) or ring.etcd is None:
        return None
    etcd, m = ring.etcd, ring
    lease = VolumeLease(etcd, m.cmap.cluster_id, fs.config.uuid, candidate_name(data_dir),
                        ttl_s)
    try:
        token = lease.acquire()
    except VolumeLeased as e:
        raise RuntimeError(f"volume {fs.config.name}: {e}") from None
    volume_id = uuid.UUID(fs.config.uuid).bytes
    answers = ring.set_fence(volume_id, token)
    refused = {d: t for d, t in answers.items() if isinstance(t, int) and t > token}
    if refused:
        lease.release()
        raise RuntimeError(f"volume {fs.config.name}: nodes hold a newer fencing token "
                           f"({refused}) than the lease just taken ({token})")
    log.info("volume %s: write lease taken, fencing token %d", fs.config.name, token)
    return MountLease(lease)


async def keep(held: MountLease, fs: Filesystem) -> None:
    """Renew until cancelled; on a lease that cannot be renewed in time, fence the metadata
    (EROFS) and return."""
    while True:
        await trio.sleep(max(0.5, held.lease.ttl_s / 6))
        if not await trio.to_thread.run_sync(held.lease.renew):
            held.lost = (f"the volume's write lease ({held.lease.key.decode()}) was not "
                         "renewed in time: another host may hold the volume now")
            fs.meta.fence(held.lost)
            log.error("volume %s is read-only and its garbage collection stopped: %s",
                      fs.config.name, held.lost)
            return
