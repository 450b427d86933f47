"""Asking the chunk store about chunks: whether a referenced chunk is still there
(:class:`ChunkProbe`, for ``missing-chunk``), and which stored chunks no volume references
(:func:`unreferenced_chunks`, the leak finder). Nothing here reads or writes metadata keys
beyond the scans of :func:`unreferenced_chunks`; nothing is deleted."""

from __future__ import annotations

from collections.abc import Iterable

from chunkstore.api import ChunkStore
from chunkstore.errors import ChunkCorrupt, ChunkNotFound, ChunkStoreError
from chunkstore.placement.keys import KEY_SIZE, ChunkRef
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.locate import UNRECOVERABLE, locate
from chunkstore.ring.repairlog import DELETED

from ..metadata import MetaStore


class ChunkProbe:
    """Whether a referenced chunk is still readable from the store."""

    def __init__(self, store: ChunkStore) -> None:
        self.store = store

    def missing(self, ref_bytes: bytes) -> str | None:
        """None if the chunk is there, else why it is not."""
        try:
            ref = ChunkRef.from_bytes(ref_bytes)
        except ChunkStoreError as e:
            return f"unreadable reference: {e}"
        if isinstance(self.store, RingStore):
            return self._ring_missing(self.store, ref)
        try:
            self.store.get(ref)
        except ChunkNotFound:
            return "not in the store"
        except ChunkCorrupt:
            return "corrupt: no copy verifies"
        except ChunkStoreError as e:
            return f"unreadable: {e}"
        return None

    @staticmethod
    def _ring_missing(ring: RingStore, ref: ChunkRef) -> str | None:
        """On a ring, pieces are counted on the disks (no chunk is read and decoded): fewer
        than the policy's minimum is missing."""
        try:
            places = locate(ring, ref)
        except ChunkStoreError as e:
            return f"cannot place: {e}"
        if places.state == UNRECOVERABLE:
            return f"{places.found} of the {places.needed} pieces needed are on the disks"
        return None


def unreferenced_chunks(store: RingStore, volumes: list[MetaStore],
                        also_referenced: Iterable[bytes] = ()) -> list[ChunkRef]:
    """Chunks with pieces on the ring's available disks that none of ``volumes`` references.

    A chunk counts as referenced if a volume has a refcount (``R``, even 0: the collector owns
    it then) or a block (``B``) naming it, or its key is in ``also_referenced``: pass the
    volumes' metadata checkpoints there (:func:`sofs.metacheckpoint.checkpoint_keys`), which
    no file names. Pass every volume of the cluster, none of them in use; chunks the repair
    log already marks deleted are left out. Nothing is deleted here.
    """
    referenced: set[bytes] = set(also_referenced)
    for meta in volumes:
        for key, _ in meta.scan(b"R"):
            referenced.add(bytes(key[1:]))
        for _, value in meta.scan(b"B"):
            referenced.add(bytes(value[5:5 + KEY_SIZE]))
    deleted = {e.ref.key for e in store.repair_log.entries() if e.kind == DELETED}
    found: dict[tuple[bytes, bytes], ChunkRef] = {}
    for disk_id in store.available_disks():
        try:
            for p in store.disk(disk_id).pieces():
                if p.key in referenced or p.key in deleted:
                    continue
                ck = (p.key, p.policy.to_bytes())
                if ck not in found:
                    found[ck] = ChunkRef(p.key, p.chunk_size, p.policy)
        except (ChunkStoreError, OSError):
            continue  # an unreadable disk: its pieces are repair's business
    return sorted(found.values(), key=lambda r: (r.key, r.policy.to_bytes()))
