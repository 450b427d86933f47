"""Chunks of one volume that nothing references (``unreferenced-chunk``): left on the RING by a
crash between storing a chunk and committing the block that names it, or by a put that failed.

A chunk with pieces on the ring's available disks belongs to the checked volume when its
payload carries the volume's id (:mod:`sofs.blocks`: one volume's chunks are its own), and is
unreferenced when none of these knows it:

* the live metadata: a refcount (``R``, even 0: the collector owns it then) or a block
  (``B``); trashed and WORM-retained files are live inodes, so their blocks count here;
* any of the volume's snapshots (every snapshot directory, ready or not): ``R`` or ``B``;
* the volume's metadata checkpoints in the RING (:func:`sofs.metacheckpoint.checkpoint_keys`);
* the repair log, as a chunk already deleted or a put abandoned below its write quorum (its
  leftover pieces are the repair sweep's to remove).

Nothing here deletes: the repair stages a zero refcount and a collector queue entry due one
grace period later (:mod:`sofs.collector` deletes it then if it is still unreferenced and no
snapshot pins it), so a write that references the chunk meanwhile keeps it. Any listing that
fails (a snapshot that does not open, a disk whose pieces do not list, checkpoints that do not
read) raises :class:`~sofs.errors.ReferencesUnknown`: the check stops before any repair.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

from chunkstore.errors import ChunkStoreError
from chunkstore.placement.keys import KEY_SIZE, ChunkRef
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.repairlog import NEEDS_REPAIR

from .. import schema
from ..blocks import CODEC_RAW, CODEC_ZSTD
from ..errors import FsError, ReferencesUnknown
from ..metacheckpoint import checkpoint_keys
from ..metadata import Batch, MetaStore
from ..snapshot import catalog
from ..snapshot.frozenmeta import FrozenMetaStore
from .report import UNREFERENCED_CHUNK
from .state import STAGE_REFS, CheckState, Fix

DEFAULT_GRACE_S = 3600.0   # as the mount's --gc-grace default


@dataclasses.dataclass(frozen=True)
class LeakSearch:
    """Where to look for the volume's unreferenced chunks: the RING, the volume's directory
    (its snapshots), its UUID, and the grace the collector gives what repair queues."""

    store: RingStore
    volume_dir: Path
    volume_uuid: str
    grace_s: float = DEFAULT_GRACE_S


def referenced_keys(meta: MetaStore, search: LeakSearch) -> set[bytes]:
    """Every chunk key the live metadata, the snapshots and the checkpoints of the volume
    know (ReferencesUnknown if any of them cannot be read in full)."""
    keys = _meta_keys(meta)
    sdir = catalog.snapshots_dir(search.volume_dir)
    if sdir.is_dir():
        for path in sorted(p for p in sdir.iterdir() if not p.name.startswith(".")):
            try:
                snap = FrozenMetaStore.open(path, f"fsck reading snapshot {path.name}")
            except FsError as e:
                raise ReferencesUnknown(f"snapshot {path.name}: its metadata cannot be read "
                                        f"({e}); unreferenced chunks not looked for") from e
            try:
                keys |= _meta_keys(snap)
            except FsError as e:
                raise ReferencesUnknown(f"snapshot {path.name}: {e}") from e
            finally:
                snap.close()
    try:
        keys |= checkpoint_keys(search.store, search.volume_uuid)
    except (ChunkStoreError, FsError) as e:
        raise ReferencesUnknown(f"the volume's metadata checkpoints cannot be listed ({e}); "
                                "unreferenced chunks not looked for") from e
    return keys


def _meta_keys(meta: MetaStore) -> set[bytes]:
    keys: set[bytes] = set()
    for key, _ in meta.scan(b"R"):
        keys.add(bytes(key[1:]))
    for _, value in meta.scan(b"B"):
        keys.add(bytes(value[5:5 + KEY_SIZE]))
    return keys


def find_unreferenced(meta: MetaStore, search: LeakSearch) -> list[ChunkRef]:
    """The volume's chunks on the RING that nothing references (module docstring), by key."""
    store = search.store
    referenced = referenced_keys(meta, search)
    try:
        # deleted, or a put abandoned below its quorum: the RING disposes of those itself
        deleted = {e.ref.key for e in store.repair_log.entries() if e.kind != NEEDS_REPAIR}
    except ChunkStoreError as e:
        raise ReferencesUnknown(f"the repair log cannot be read ({e})") from e
    candidates: dict[bytes, ChunkRef] = {}
    for disk_id in store.available_disks():
        try:
            for p in store.disk(disk_id).pieces():
                if p.key not in referenced and p.key not in deleted and p.key not in candidates:
                    candidates[p.key] = ChunkRef(p.key, p.chunk_size, p.policy)
        except (ChunkStoreError, OSError) as e:
            raise ReferencesUnknown(f"disk {disk_id}: its pieces cannot be listed ({e}); "
                                    "unreferenced chunks not looked for") from e
    volume_id = uuid.UUID(search.volume_uuid).bytes
    return [ref for key, ref in sorted(candidates.items()) if _belongs(store, ref, volume_id)]


def _belongs(store: RingStore, ref: ChunkRef, volume_id: bytes) -> bool:
    """Whether the chunk's payload carries the volume's id; an unreadable chunk is not
    claimed (it is not known to be this volume's)."""
    try:
        payload = store.get(ref)
    except ChunkStoreError:
        return False
    return len(payload) >= 17 and payload[0] in (CODEC_RAW, CODEC_ZSTD) and \
        payload[1:17] == volume_id


def check_unreferenced(st: CheckState, search: LeakSearch) -> list[ChunkRef]:
    """Report each unreferenced chunk of the volume, its fix queuing it for the collector."""
    found = find_unreferenced(st.meta, search)
    due = st.now + int(search.grace_s * 1e9)
    for ref in found:
        st.problem(UNREFERENCED_CHUNK, None, f"chunk {ref.hex}: {ref.size} bytes on the ring, "
                   "referenced by no file, snapshot or checkpoint of the volume", STAGE_REFS,
                   _queue_fix(ref, due))
    return found


def _queue_fix(ref: ChunkRef, due_ns: int) -> Fix:
    def fix(b: Batch) -> None:
        b.put(schema.refcount_key(ref.key), schema.refcount_value(0, ref.to_bytes()))
        b.put(schema.gc_key(min(due_ns, 2**64 - 1), ref.key), b"")
    return fix
