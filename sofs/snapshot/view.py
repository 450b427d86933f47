"""A snapshot as a read-only :class:`~sofs.fs.Filesystem`: browse it, read its files.

:func:`open_snapshot` opens the snapshot's metadata frozen (:mod:`.frozenmeta`) and serves it
with ``Filesystem(..., read_only=True)`` over :class:`ReadOnlyStore`, a chunk store that reads
chunks from the volume's RING and refuses everything else: a view never writes a chunk, never
deletes one and never touches a root record. So the WORM compliance clock, which a stat of a
domain file whose autocommit is due would open (and write) in the RING, cannot be reached:
its reading fails (DataUnavailable), and the autocommit waits, as WORM does on reads when the
RING cannot say the time; the snapshot shows the file as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chunkstore import errors as cerr
from chunkstore.api import Capacity, ChunkStore
from chunkstore.placement.keys import ChunkRef
from chunkstore.protection.policy import Protection
from chunkstore.roots import RootRecord

from ..fs import Filesystem
from ..volume import VolumeConfig
from .catalog import snapshot_path
from .frozenmeta import FrozenMetaStore


class ViewWriteRefused(cerr.ChunkStoreError):
    """A snapshot's view asked its chunk store to write or delete: it never may."""


class ReadOnlyStore(ChunkStore):
    """The chunks of ``store``, read-only (module docstring); closing it leaves ``store``
    open."""

    def __init__(self, store: ChunkStore) -> None:
        self._store = store

    def get(self, ref: ChunkRef) -> bytes:
        return self._store.get(ref)

    def capacity(self) -> Capacity:
        return self._store.capacity()

    def put(self, payload: bytes, protection: Protection) -> ChunkRef:
        raise ViewWriteRefused("a snapshot is read-only: no chunk is stored through it")

    def delete(self, ref: ChunkRef) -> None:
        raise ViewWriteRefused("a snapshot is read-only: no chunk is deleted through it")

    def put_root(self, volume_id: bytes, seq: int, body: bytes) -> int:
        raise ViewWriteRefused("a snapshot's view writes no root record")

    def get_root(self, volume_id: bytes) -> RootRecord | None:
        raise ViewWriteRefused("a snapshot's view reads no root record")

    def list_roots(self) -> dict[bytes, int]:
        raise ViewWriteRefused("a snapshot's view reads no root record")

    def close(self) -> None:
        pass


def open_snapshot(vdir: Path, name: str, store: ChunkStore, config: VolumeConfig,
                  **kw: Any) -> Filesystem:
    """The snapshot ``name`` of the volume in ``vdir`` (whose config is ``config``), over the
    volume's chunk store ``store``: read-only, every change fails (VolumeFenced). VolumeError
    when its metadata cannot be opened. ``kw``: for :class:`Filesystem` (cache size...)."""
    meta = FrozenMetaStore.open(snapshot_path(vdir, name), f"snapshot {name}")
    try:
        return Filesystem(meta, ReadOnlyStore(store), config, read_only=True,
                          **{"workers": 2, **kw})
    except BaseException:
        meta.close()
        raise
