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
import threading
import uuid
from collections.abc import Callable

import trio

from chunkstore import sdnotify
from chunkstore.authority.election import candidate_name
from chunkstore.authority.volumelease import VolumeLease
from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.errors import ChunkStoreError, VolumeLeased
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.net import NetRing
from chunkstore.roots import ROOT_WIDTH
from sofs.fs import Filesystem
from sofs.journal import JournalWriter

log = logging.getLogger("sofs.mount.lease")

LEASE_TTL_S = 10
FENCE_TRIES = 3  # declarations of a new token before a takeover gives up on silent disks


def _silent(answers: dict[str, int | str]) -> list[str]:
    return [d for d, t in answers.items() if not isinstance(t, int)]


def _quorum(answers: dict[str, int | str]) -> int:
    """A write quorum of root records (the smallest): a majority of min(ROOT_WIDTH, disks)."""
    return min(ROOT_WIDTH, len(answers)) // 2 + 1


class MountLease:
    """The lease a mount holds, and whether it still does."""

    def __init__(self, lease: VolumeLease) -> None:
        self.lease = lease
        self.lost: str | None = None  # why the mount stopped writing (None: it holds)
        self.journal: JournalWriter | None = None  # the journal written under it
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def token(self) -> int:
        return self.lease.token

    def start_renewing(self) -> None:
        """Renew from a thread until :meth:`stop_renewing`: while the mount gets ready (a
        takeover's restore, replay and first checkpoint may outlast the lease), before
        :func:`keep` renews it from the event loop."""
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(max(0.5, self.lease.ttl_s / 6)):
                if not self.lease.renew():
                    return

        self._renewer = threading.Thread(target=run, name="lease-renewal", daemon=True)
        self._renewer.start()

    def stop_renewing(self) -> None:
        """Stop the renewal thread; RuntimeError (the mount fails) if the lease was lost
        meanwhile."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        if not self.lease.valid():
            raise RuntimeError(f"the volume's write lease ({self.lease.key.decode()}) ran "
                               "out while the mount got ready: another host may hold it now")

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        self.lease.release()


def take(ring: RingStore, name: str, volume_uuid: str, data_dir: str,
         ttl_s: int = LEASE_TTL_S, *, wait_s: float | None = 0.0,
         on_wait: Callable[[], None] | None = None,
         clock: Clock = SYSTEM_CLOCK) -> MountLease | None:
    """Take volume NAME's lease and declare its token to the nodes (None without etcd).
    While another connector holds it, wait up to WAIT_S seconds (None: for ever, a standby)
    for its lease to end, calling ON_WAIT once; then RuntimeError (the mount fails), naming
    the holder."""
    if not isinstance(ring, NetRing) or ring.etcd is None:
        return None
    etcd, m = ring.etcd, ring
    lease = VolumeLease(etcd, m.cmap.cluster_id, volume_uuid, candidate_name(data_dir), ttl_s)
    deadline = None if wait_s is None else clock.monotonic() + wait_s
    waiting = False
    while True:
        try:
            token = lease.acquire()
            break
        except (VolumeLeased, ChunkStoreError) as e:  # held elsewhere, or etcd away
            if deadline is not None and clock.monotonic() >= deadline:
                raise RuntimeError(f"volume {name}: {e}") from None
            if not waiting:
                log.warning("volume %s: waiting for the write lease: %s", name, e)
                sdnotify.notify(f"STATUS=standby: waiting for the write lease of {name}")
                if on_wait is not None:
                    on_wait()
                waiting = True
            clock.sleep(min(1.0, max(0.2, ttl_s / 10)))
    volume_id = uuid.UUID(volume_uuid).bytes
    answers = ring.set_fence(volume_id, token)
    for _ in range(FENCE_TRIES - 1):
        if len(_silent(answers)) < _quorum(answers):
            break
        clock.sleep(1.0)
        answers = ring.set_fence(volume_id, token)
    refused = {d: t for d, t in answers.items() if isinstance(t, int) and t > token}
    silent = _silent(answers)
    if refused or len(silent) >= _quorum(answers):
        lease.release()
        if refused:
            raise RuntimeError(f"volume {name}: nodes hold a newer fencing token "
                               f"({refused}) than the lease just taken ({token})")
        raise RuntimeError(f"volume {name}: the disks {', '.join(sorted(silent))} did not "
                           "take the new fencing token: as many as a write quorum, so an "
                           "earlier holder could still write there; try again once their "
                           "nodes answer")
    if silent:
        log.warning("volume %s: disks %s did not answer the fencing token %d (too few to "
                    "make a quorum for an earlier holder; they learn it at this mount's "
                    "first connection)", name, ", ".join(sorted(silent)), token)
    log.info("volume %s: write lease taken, fencing token %d", name, token)
    held = MountLease(lease)
    held.start_renewing()
    return held


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
