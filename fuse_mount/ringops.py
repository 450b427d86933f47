"""The admin operations about a RING (not one volume), served to ``sofsctl`` over a control
socket (:mod:`fuse_mount.ctlserver`).

On an embedded data directory the ring host (:mod:`fuse_mount.ringhost`) serves them at
``run/ring.sock``; so does a mount that holds the embedded ring itself (``--exclusive-ring``).
On a networked data directory each mount serves them with its volume's operations. What they
are: ``health``, ``repair`` (through the healer when there is one: one sweep at a time),
``sweep``, ``repair-cancel``, ``repair-rate``, ``scrub-status|pause|resume``, ``cluster``
(node states of a networked RING), ``disk-add`` (an embedded ring), ``chunks`` (where pieces
are), ``disks`` (usage), and for any volume of the data directory ``volume-delete`` (collect
a deleted volume's chunks) and ``volume-checkpoints``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from chunkstore.healing.healer import Healer
from chunkstore.healing.rebalance import DiskAddReport, add_disk_and_rebalance
from chunkstore.healing.sweep import health, repair
from chunkstore.placement.keys import ChunkRef
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.diskusage import disk_usage
from chunkstore.ring.local import LocalRing
from sofs import volumedelete
from sofs.metacheckpoint import list_checkpoints
from sofs.ringview import ring_view

from . import ctlserver

# what a disk add holds while it moves pieces: no garbage collection pass anywhere (a chunk
# deleted while its pieces sit on their old owners would keep them: deletes go to the new ones)
GcHold = Callable[[], contextlib.AbstractContextManager[None]]


def ring_ops(ring: RingStore, healer: Healer | None,
             gc_hold: GcHold | None = None) -> dict[str, ctlserver.Operation]:
    """The ring-level operations of the process that serves ``ring`` (module docstring)."""
    ops: dict[str, ctlserver.Operation] = {
        "health": lambda progress: health(ring),
        "repair": (lambda progress, init_disks=(): healer.sweep(progress, init_disks=init_disks))
        if healer is not None
        else (lambda progress, init_disks=(): repair(ring, progress=progress,
                                                     init_disks=init_disks)),
        "chunks": _chunks_op(ring),
        "disks": lambda progress: [u.as_dict() for u in disk_usage(ring)],
        "volume-delete": lambda progress, uuid: volumedelete.finish(
            volumedelete.tomb_of(Path(ring.data_dir), uuid), ring, progress_sized=progress),
        "volume-checkpoints": lambda progress, uuid: [
            c.as_dict() for c in list_checkpoints(ring, uuid)],
    }
    if healer is not None:
        ops["sweep"] = lambda progress: healer.status.to_dict()
        ops["repair-cancel"] = lambda progress: {"cancelled": healer.cancel_sweep()}
        ops["repair-rate"] = _rate_op(healer)
        ops["scrub-status"] = lambda progress: healer.scrub_status()
        ops["scrub-pause"] = lambda progress: {"stopped": healer.pause_scrubs()}
        ops["scrub-resume"] = lambda progress: healer.resume_scrubs()
        if ring.membership is not None:
            ops["cluster"] = lambda progress: cluster_status(healer)
        if isinstance(ring, LocalRing):
            ops["disk-add"] = _disk_add_op(ring, healer, gc_hold or _no_hold)
    return ops


@contextlib.contextmanager
def _no_hold() -> Iterator[None]:
    yield


def _disk_add_op(ring: LocalRing, healer: Healer, gc_hold: GcHold) -> ctlserver.Operation:
    """``sofsctl disk add`` while the ring is served: the disk joins the ring, then the pieces
    whose owners changed move at the healer's rate cap, its own sweeps and every garbage
    collection (``gc_hold``) held off meanwhile."""
    def op(progress: Callable[..., None], disk_id: str | None = None, path: str | None = None,
           weight: float = 1.0, rebalance_now: bool = True) -> DiskAddReport:
        with healer.exclusive(), gc_hold():
            return add_disk_and_rebalance(ring, progress, disk_id=disk_id, path=path,
                                          weight=weight, rebalance_now=rebalance_now,
                                          max_bytes_per_s=healer.max_bytes_per_s)
    return op


def _rate_op(healer: Healer) -> ctlserver.Operation:
    """The ``repair-rate`` admin op: cap the healer's sweeps (the running one too)."""
    def run(progress: ctlserver.Progress, bytes_per_s: float | None) -> dict:
        healer.set_rate(float(bytes_per_s) if bytes_per_s else None)
        return {"rate_cap": healer.max_bytes_per_s}
    return run


def _chunks_op(ring: RingStore) -> ctlserver.Operation:
    """The ``chunks`` admin op: :func:`sofs.ringview.ring_view` of hex keys and refs."""
    def run(progress: ctlserver.Progress, keys: list[str], refs: dict[str, str],
            volumes: list[str]) -> list[dict]:
        known = {bytes.fromhex(k): ChunkRef.from_bytes(bytes.fromhex(r)) for k, r in refs.items()}
        return [c.as_dict() for c in ring_view(ring, [bytes.fromhex(k) for k in keys], known,
                                               volumes)]
    return run


def cluster_status(healer: Healer) -> dict:
    """Map epoch, node states as this client sees them, and the rebuild's progress (a
    networked RING)."""
    ring = healer.ring
    members = ring.membership
    assert members is not None, "cluster status of an embedded RING"
    suspects = members.suspects()
    cmap = members.cmap
    nodes = [{"id": n.id, "address": n.address, "site": n.site, "state": n.state,
              "unreachable_since": suspects.get(n.id)} for n in cmap.nodes]
    return {"epoch": cmap.epoch, "nodes": nodes,
            "disks_unavailable": sorted(ring.unavailable_disks()),
            "rebuild": healer.status.to_dict(), "down_after_s": healer.down_after_s,
            "etcd_unreachable": healer.authority_unreachable, "healer_leader": healer.leader}

