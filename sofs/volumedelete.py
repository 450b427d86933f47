"""Deleting a volume (``sofsctl volume delete``): its metadata, its chunks in the RING and its
metadata checkpoints, in an order a crash cannot turn into damage.

1. The volume's directory is renamed to ``volumes/.deleting-UUID`` (one rename, the
   directory fsynced): from here the volume is gone from every list and no mount can open it,
   and what is left is a deletion to finish (:func:`unfinished`).
2. Its root record in the RING is replaced by one that keeps no checkpoint, so no restore
   brings the volume back from pieces that are about to go; the slots of its metadata journal
   (:mod:`sofs.journal`, which names its files) are overwritten with empty records.
3. Every chunk its refcounts name (and those of its checkpoints) is deleted from the RING. A
   volume's chunks are its own (their payload carries the volume id, :mod:`sofs.blocks`): no
   other volume can use them.
4. The renamed directory is removed.

A crash or an error at any step leaves the ``.deleting-`` directory; running the deletion
again (:func:`finish`) does what is left (deleting a chunk twice is harmless).
"""

from __future__ import annotations

import dataclasses
import shutil
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path

from chunkstore import errors as cerr
from chunkstore.api import ChunkStore
from chunkstore.atomicfile import fsync_dir
from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.placement.keys import ChunkRef

from . import journal, schema
from .checkpoint_records import RootBody
from .errors import FsError, VolumeError
from .metacheckpoint import checkpoint_refs
from .metadata import MetaStore
from .volume import VolumeConfig, load_volume, volume_dir, volumes_dir

DELETING_PREFIX = ".deleting-"


@dataclasses.dataclass(frozen=True)
class DeleteReport:
    name: str
    uuid: str
    chunks_deleted: int
    chunks_failed: int   # could not be deleted now (a disk away): left to the repair sweep


def unfinished(data_dir: Path) -> list[Path]:
    """Volume directories whose deletion began and did not finish."""
    vdir = volumes_dir(data_dir)
    return sorted(p for p in vdir.glob(DELETING_PREFIX + "*") if p.is_dir()) if vdir.is_dir() else []


def begin(data_dir: Path, name: str) -> Path:
    """Step 1: take volume ``name`` out of the data directory (see the module docstring);
    returns the renamed directory. The caller has checked it is not mounted or exported."""
    config = load_volume(data_dir, name)
    src = volume_dir(data_dir, name)
    dst = volumes_dir(data_dir) / f"{DELETING_PREFIX}{config.uuid}"
    if dst.exists():
        raise VolumeError(f"{dst} exists: a deletion of this volume is unfinished "
                          "(sofsctl volume delete --finish)")
    src.rename(dst)
    fsync_dir(volumes_dir(data_dir))
    return dst


def tomb_of(data_dir: Path, volume_uuid: str) -> Path:
    """The directory :func:`begin` renamed volume ``volume_uuid`` to (ValueError for a string
    that is not a UUID: the name is built here, never taken from a caller)."""
    return volumes_dir(data_dir) / f"{DELETING_PREFIX}{uuidlib.UUID(volume_uuid)}"


def finish(tomb: Path, store: ChunkStore,
           progress: Callable[[int, int], None] | None = None,
           clock: Clock = SYSTEM_CLOCK, *,
           progress_sized: Callable[[int, int, int, int], None] | None = None) -> DeleteReport:
    """Steps 2 to 4 for the directory :func:`begin` made (again, after a crash).
    ``progress(done, total)`` is told the chunks deleted so far (or failed) of all;
    ``progress_sized(done, total, bytes_done, bytes_total)`` the same with their bytes."""
    config = VolumeConfig.from_json((tomb / "volume.json").read_text())
    vid = uuidlib.UUID(config.uuid).bytes
    unread = 0  # the checkpoints could not be listed now: the directory stays, to finish later
    try:
        refs = checkpoint_refs(store, config.uuid)
    except FsError:
        refs = {}  # a root record or manifest that does not decode names no piece we can find
    except cerr.ChunkStoreError:
        refs, unread = {}, 1
    try:
        _forget_checkpoints(store, vid, config, clock)
        journal.erase(store, config.uuid)
    except cerr.ChunkStoreError:
        unread = 1  # the root record could not be replaced now: finish later
    meta_dir = tomb / "meta"
    if meta_dir.is_dir():
        meta = MetaStore(meta_dir)
        try:
            for _, value in meta.scan(b"R"):
                try:
                    ref = ChunkRef.from_bytes(schema.parse_refcount_value(value)[1])
                except cerr.FormatError:
                    continue
                refs[ref.key] = ref
        finally:
            meta.close()
    deleted, failed = 0, unread
    done_bytes, total_bytes = 0, sum(ref.size for ref in refs.values())
    for n, ref in enumerate(refs.values()):
        try:
            store.delete(ref)
            deleted += 1
        except cerr.ChunkStoreError:
            failed += 1
        done_bytes += ref.size
        if progress is not None:
            progress(n + 1, len(refs))
        if progress_sized is not None:
            progress_sized(n + 1, len(refs), done_bytes, total_bytes)
    if failed == 0:
        shutil.rmtree(tomb)
        fsync_dir(tomb.parent)
    return DeleteReport(config.name, config.uuid, deleted, failed)


def _forget_checkpoints(store: ChunkStore, vid: bytes, config: VolumeConfig,
                        clock: Clock) -> None:
    """Step 2: a root record that keeps no checkpoint (restore lists skip it)."""
    root = store.get_root(vid)
    if root is None:
        return
    try:
        if not RootBody.decode(root.body).manifests:
            return  # done before
    except FsError:
        pass  # an unreadable record: replaced all the same
    body = RootBody(volume=config.name, uuid=config.uuid, manifests=(), created=clock.time())
    store.put_root(vid, root.seq + 1, body.encode())
