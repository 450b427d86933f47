"""Repair: applying the fixes the phases planned, stage by stage (superblock counters first,
so nothing this repair hands out is ever handed out again; stale keys last), in metadata
batches committed with ``sync=True``. A batch is committed between two fixes only, once it
holds :data:`BATCH_OPS` writes. Referenced chunks are never deleted: released ones go
through the collector's queue."""

from __future__ import annotations

from ..metadata import MetaStore
from .state import CheckState, Fix

BATCH_OPS = 20_000         # a repair batch is committed once it holds this many writes


class Writer:
    """Stages repairs in batches; a batch is committed (synced) between two fixes only."""

    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta
        self.batch = meta.batch()

    def apply(self, fix: Fix) -> None:
        fix(self.batch)
        if len(self.batch) >= BATCH_OPS:
            self.commit()

    def commit(self) -> None:
        if len(self.batch):
            self.meta.commit(self.batch, sync=True)
            self.batch = self.meta.batch()


def apply_fixes(st: CheckState) -> set[int]:
    """Apply every planned fix in stage order; the indexes (in ``st.found``) of those done."""
    done: set[int] = set()
    writer = Writer(st.meta)
    order = sorted((i for i, f in enumerate(st.found) if f.fix is not None),
                   key=lambda i: st.found[i].stage)
    for n, i in enumerate(order, 1):
        fix = st.found[i].fix
        assert fix is not None
        writer.apply(fix)
        done.add(i)
        st.tick("repair", n, len(order))
    writer.commit()
    st.tick("repair", len(order), len(order), force=True)
    return done
