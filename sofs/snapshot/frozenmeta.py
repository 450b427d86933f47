"""A snapshot's metadata, opened so that nothing can change it.

:class:`FrozenMetaStore` is a :class:`~sofs.metadata.MetaStore` over a snapshot's checkpoint
directory opened as a RocksDB *secondary* instance (:meth:`MetaStore.open_view`): it takes no
lock and writes nothing into the snapshot's directory (its own log goes to a scratch directory
it removes at :meth:`close`), so the collector's pins (:mod:`.pins`) and a mount's view of the
same snapshot (:mod:`.view`) may have it open together. Every non-empty commit is refused
(VolumeFenced); an empty one, which a closing :class:`~sofs.fs.Filesystem` sends to sync its
log, does nothing (a secondary instance has no log to sync).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..errors import VolumeFenced
from ..metadata import Batch, MetaStore


class FrozenMetaStore(MetaStore):
    """A read-only MetaStore over a snapshot (module docstring). Open with :meth:`open`."""

    scratch: Path | None = None

    @classmethod
    def open(cls, path: Path, why: str = "a read-only snapshot") -> "FrozenMetaStore":
        """Open the checkpoint at ``path``; VolumeError if it cannot be opened."""
        scratch = Path(tempfile.mkdtemp(prefix="sofs-snapshot-view-"))
        try:
            store = cls.open_view(Path(path), scratch)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        assert isinstance(store, FrozenMetaStore)
        store.scratch = scratch
        store.fence(why)
        return store

    def commit(self, batch: Batch, sync: bool = False) -> int:
        if len(batch):
            raise VolumeFenced(f"the volume is read-only here: {self.fenced}")
        return self.written

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.scratch is not None:
                shutil.rmtree(self.scratch, ignore_errors=True)
                self.scratch = None
