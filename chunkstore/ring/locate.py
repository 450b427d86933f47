"""Where a chunk's pieces are: each piece's owner on the ring and the disks that hold it.

Used by ``sofsctl file info`` and ``sofsctl chunk which`` (the admin's view of one chunk) and
by fsck's missing-chunk probe. Pieces are looked up with ``has`` on each disk (nothing is read
or decoded); a piece not on its owner is searched on every available disk, where a handoff or a
not yet moved piece may be. Nothing is changed.
"""

from __future__ import annotations

import dataclasses

from chunkstore.errors import ChunkStoreError
from chunkstore.placement.keys import ChunkRef
from chunkstore.protection.policy import REPLICA_INDEX, ReplicationPolicy
from chunkstore.ring.datapath import RingStore

OK, DEGRADED, UNRECOVERABLE = "ok", "degraded", "unrecoverable"


@dataclasses.dataclass(frozen=True)
class PiecePlace:
    """Piece ``index`` (a copy number for replication): the disk the ring places it on and the
    disks found holding it (the owner first when it has it)."""

    index: int
    owner: str
    found_on: tuple[str, ...]

    @property
    def misplaced(self) -> bool:
        return bool(self.found_on) and self.owner not in self.found_on


@dataclasses.dataclass(frozen=True)
class ChunkPlaces:
    """A chunk's pieces as the disks report them, and the verdict: ``ok`` (every piece there),
    ``degraded`` (readable, some missing) or ``unrecoverable`` (fewer than the policy needs)."""

    ref: ChunkRef
    policy: str
    pieces: tuple[PiecePlace, ...]
    needed: int
    surplus: tuple[str, ...]      # extra copies seen while searching for missing ones
    unavailable: tuple[str, ...]  # disks that could not be asked

    @property
    def found(self) -> int:
        return sum(1 for p in self.pieces if p.found_on)

    @property
    def state(self) -> str:
        if self.found < self.needed:
            return UNRECOVERABLE
        return OK if self.found == len(self.pieces) else DEGRADED

    def as_dict(self) -> dict:
        return {"key": self.ref.hex, "size": self.ref.size, "policy": self.policy,
                "state": self.state, "pieces_found": self.found, "pieces_needed": self.needed,
                "pieces": [{"index": p.index, "owner": p.owner, "found_on": list(p.found_on)}
                           for p in self.pieces],
                "surplus_copies_on": list(self.surplus),
                "disks_not_asked": list(self.unavailable)}


def _has(ring: RingStore, disk_id: str, key: bytes, idx: int) -> bool | None:
    """Whether the disk holds the piece; None when it cannot be asked."""
    try:
        return ring.call(disk_id, lambda d: d.has(key, idx))
    except (ChunkStoreError, OSError):
        return None


def locate(ring: RingStore, ref: ChunkRef) -> ChunkPlaces:
    """Ask the disks where ``ref``'s pieces are (see the module docstring)."""
    policy = ref.policy.policy()
    owners = ring.ring.owners(ref.key, policy.width)
    replicated = isinstance(policy, ReplicationPolicy)
    down = set(ring.unavailable_disks())
    unasked: set[str] = set(down)

    def has(disk_id: str, idx: int) -> bool:
        if disk_id in down:
            return False
        found = _has(ring, disk_id, ref.key, idx)
        if found is None:
            unasked.add(disk_id)
        return bool(found)

    on_owner = [has(d, policy.piece_index(i)) for i, d in enumerate(owners)]
    others = [d for d in ring.disk_ids() if d not in owners]
    pieces: list[PiecePlace] = []
    surplus: tuple[str, ...] = ()
    found: tuple[str, ...]
    if replicated:
        copies = [d for d in others if has(d, REPLICA_INDEX)] if not all(on_owner) else []
        for i, disk_id in enumerate(owners):
            found = (disk_id,) if on_owner[i] else ((copies.pop(0),) if copies else ())
            pieces.append(PiecePlace(i, disk_id, found))
        surplus = tuple(copies)
    else:
        for i, disk_id in enumerate(owners):
            idx = policy.piece_index(i)
            found = (disk_id,) if on_owner[i] else tuple(d for d in others if has(d, idx))
            pieces.append(PiecePlace(idx, disk_id, found))
    return ChunkPlaces(ref, policy.spec(), tuple(pieces), policy.min_pieces, surplus,
                       tuple(sorted(unasked)))
