"""What the garbage collector asks of a volume's snapshots: does one of them reference a chunk?

A snapshot's metadata holds the refcounts (``R`` keys, :mod:`sofs.schema`) the volume had when
it was taken; a chunk whose count is above 0 there is *pinned*: the collector must not delete
it, whatever the live volume's count says (:mod:`sofs.collector`).

Failing safe: :meth:`SnapshotPins.refresh` and :meth:`SnapshotPins.pinned_by` raise
SnapshotUnreadable when the catalog or a snapshot's metadata cannot be read (or a
``snapshots/`` directory holds snapshots but the catalog is gone), and the collector then
deletes nothing. Snapshots being deleted pin nothing any more (their chunks are handed back to
the collector by the deletion).

The snapshots stay open between passes (as read-only secondary instances,
:mod:`.frozenmeta`) and are reopened only when the catalog changes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import schema
from ..errors import FsError, SnapshotUnreadable
from ..metadata import MetaStore
from . import catalog
from .catalog import READY
from .frozenmeta import FrozenMetaStore

log = logging.getLogger(__name__)


def volume_dir_of(meta: MetaStore) -> Path:
    """The volume directory of a volume's metadata (``VOLUME_DIR/meta``, :mod:`sofs.volume`)."""
    return meta.path.parent


class SnapshotPins:
    """The ready snapshots of the volume in ``vdir``, asked by its collector (not
    thread-safe: the collector asks from one pass at a time)."""

    def __init__(self, vdir: Path) -> None:
        self.vdir = Path(vdir)
        self._open: dict[tuple[str, int], FrozenMetaStore] = {}

    def refresh(self) -> list[str]:
        """Read the catalog again and open the snapshots it lists as ready; their names.
        SnapshotUnreadable (nothing may be deleted) when any of it cannot be read."""
        infos = catalog.load(self.vdir)
        if infos is None:
            if catalog.has_snapshot_dirs(self.vdir):
                raise SnapshotUnreadable(
                    f"{catalog.snapshots_dir(self.vdir)} holds snapshots but their catalog "
                    f"{catalog.catalog_path(self.vdir)} is missing")
            infos = []
        wanted = {(i.name, i.created_ns) for i in infos if i.state == READY}
        for key in [k for k in self._open if k not in wanted]:
            self._open.pop(key).close()
        for key in sorted(wanted - set(self._open)):
            path = catalog.snapshot_path(self.vdir, key[0])
            try:
                self._open[key] = FrozenMetaStore.open(path, f"snapshot {key[0]}")
            except FsError as e:
                raise SnapshotUnreadable(f"snapshot {key[0]} of {self.vdir.name}: its metadata "
                                         f"cannot be read ({e})") from e
        return sorted(name for name, _ in wanted)

    def pinned_by(self, chunk_key: bytes) -> str | None:
        """The name of a snapshot (of the last :meth:`refresh`) that references the chunk,
        or None. SnapshotUnreadable when a snapshot's metadata fails to answer."""
        rkey = schema.refcount_key(chunk_key)
        for (name, _), meta in self._open.items():
            try:
                value = meta.get(rkey)
            except FsError as e:
                raise SnapshotUnreadable(f"snapshot {name}: its metadata cannot be read "
                                         f"({e})") from e
            if value is not None and schema.parse_refcount_value(value)[0] > 0:
                return name
        return None

    def close(self) -> None:
        for meta in self._open.values():
            meta.close()
        self._open.clear()
