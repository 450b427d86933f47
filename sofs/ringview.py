"""What the RING says of chunks an admin asks about (``sofsctl chunk which``, ``file info``):
where each piece is (:func:`chunkstore.ring.locate.locate`), what the repair log holds for the
key, and whether a volume's metadata checkpoint uses it (checkpoint pieces are named by no
file). Runs where the RING is open: in ``sofsctl``, or in the mount process that holds it.
Reads only.
"""

from __future__ import annotations

import dataclasses

from chunkstore import errors as cerr
from chunkstore.placement.keys import ChunkRef
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.locate import ChunkPlaces, locate
from chunkstore.ring.repairlog import DELETED

from .errors import FsError
from .metacheckpoint import checkpoint_refs


@dataclasses.dataclass(frozen=True)
class ChunkInRing:
    """One chunk as the RING sees it. ``places`` is None when no ref (and so no policy) is
    known for the key; ``logged`` is the repair log's entry: ``needs-repair``, ``deleted`` or
    None; ``checkpoint_of`` the uuids of the volumes whose metadata checkpoints use it."""

    key: bytes
    places: ChunkPlaces | None
    logged: str | None
    checkpoint_of: tuple[str, ...]
    error: str | None = None

    def as_dict(self) -> dict:
        return {"key": self.key.hex(), "logged": self.logged,
                "checkpoint_of": list(self.checkpoint_of), "error": self.error,
                "places": self.places.as_dict() if self.places is not None else None}


def ring_view(ring: RingStore, keys: list[bytes], refs: dict[bytes, ChunkRef],
              volume_uuids: list[str]) -> list[ChunkInRing]:
    """What the RING says of each of ``keys``; ``refs`` are the refs the volumes hold (a key
    without one is looked up in the repair log, which records refs too)."""
    held: dict[str, dict[bytes, ChunkRef]] = {}
    for uuid in volume_uuids:
        try:
            held[uuid] = checkpoint_refs(ring, uuid)
        except (cerr.ChunkStoreError, FsError, OSError):
            held[uuid] = {}  # no readable checkpoint: it holds nothing we can name
    out = []
    for key in keys:
        entry = ring.repair_log.get(key)
        logged = None if entry is None else ("deleted" if entry.kind == DELETED
                                             else "needs-repair")
        ref = refs.get(key) or next((ks[key] for ks in held.values() if key in ks), None) or (
            entry.ref if entry is not None else None) or _listed_ref(ring, key)
        places, error = None, None
        if ref is not None:
            try:
                places = locate(ring, ref)
            except cerr.ChunkStoreError as e:
                error = f"cannot place: {e}"
        out.append(ChunkInRing(key, places, logged,
                               tuple(sorted(u for u, ks in held.items() if key in ks)), error))
    return out


def _listed_ref(ring: RingStore, key: bytes) -> ChunkRef | None:
    """The ref of a key nothing else names, from the piece listings of the disks (each piece
    records its chunk's policy and size): a full listing of each disk until one has it."""
    for disk_id in ring.available_disks():
        try:
            for p in ring.call(disk_id, lambda d: list(d.pieces())):
                if p.key == key:
                    return ChunkRef(p.key, p.chunk_size, p.policy)
        except (cerr.ChunkStoreError, OSError):
            continue
    return None
