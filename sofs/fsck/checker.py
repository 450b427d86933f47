"""The checker's entry points: :func:`check` runs the phases in order (scan, refcounts,
namespace plan, optionally repair) on one volume's metadata and builds the report;
:func:`check_volume` opens an unmounted volume for it."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

from chunkstore.api import ChunkStore
from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.placement.keys import ChunkRef
from chunkstore.ring.datapath import RingStore

from .. import schema
from ..metadata import Batch, MetaStore
from ..timestamps import wall_ns
from ..volume import load_volume, volume_dir
from . import namespace, scan
from .chunks import ChunkProbe
from .leaks import DEFAULT_GRACE_S, LeakSearch, check_unreferenced
from .refcounts import scan_refcounts
from .repair import apply_fixes
from .report import SUPERBLOCK, FsckReport, Problem, Progress
from .state import MARK_NEW, STAGE_STALE, CheckState, le


def check(meta: MetaStore, store: ChunkStore | None = None, *, block_size: int,
          repair: bool = False, progress: Progress | None = None,
          clock: Clock = SYSTEM_CLOCK, leaks: LeakSearch | None = None) -> FsckReport:
    """Check one volume (see :mod:`sofs.fsck`); with ``repair`` fix what can be fixed.

    The volume must not be in use. ``block_size`` is the volume's (``VolumeConfig.block_size``).
    ``clock`` dates rebuilt inodes and the collector queue entries a repair makes (the system
    clock by default). With ``leaks``, the volume's chunks on the RING that nothing references
    are looked for too (:mod:`.leaks`; ReferencesUnknown, before any repair, if a listing
    fails).
    """
    st = CheckState(meta, ChunkProbe(store) if store is not None else None, block_size,
                    progress, wall_ns(clock))
    if not scan.scan_superblock(st):
        return _report(st, repair)
    scan.scan_inodes(st)
    scan.scan_keys(st)
    scan.scan_blocks(st)
    scan_refcounts(st)
    if leaks is not None:
        st.tick("unreferenced", 0, 0, force=True)
        st.unreferenced = check_unreferenced(st, leaks)
    scan.scan_entries(st)
    namespace.plan_namespace(st)
    namespace.plan_superblock(st)
    _check_block_bytes(st)
    return _report(st, repair)


def _check_block_bytes(st: CheckState) -> None:
    """The superblock's block-bytes counter (what statfs calls used) against the block map;
    absent is fine (the next mount counts it). Its fix recounts once the fixes before it are
    staged (they may drop block map entries), so it runs last."""
    value = st.meta.get(schema.SUPER_BLOCK_BYTES)
    if value is None or le(value) == st.block_bytes:
        return
    st.problem(SUPERBLOCK, None, f"block bytes counter says {le(value)}, the block map holds "
               f"{st.block_bytes}: recounted", STAGE_STALE, _recount(st.meta))


def _recount(meta: MetaStore) -> Callable[[Batch], None]:
    """A fix that sets the counter from the block map as this batch leaves it."""
    def fix(b: Batch) -> None:
        total = 0
        for key, _ in meta.scan(b"B"):
            staged = b.get(key)
            if staged is not None:
                total += schema.parse_block_value(staged)[0]
        b.put(schema.SUPER_BLOCK_BYTES, schema.le_u64(total))
    return fix


def _report(st: CheckState, repair: bool) -> FsckReport:
    """Apply the fixes (with ``repair``) and count what was read (inodes rebuilt or created by
    the plan are not counted)."""
    done = apply_fixes(st) if repair else set()
    if done and st.meta.get(schema.SUPER_BLOCK_BYTES) is not None:
        b = st.meta.batch()  # repairs may have dropped block map entries: count them again
        _recount(st.meta)(b)
        st.meta.commit(b, sync=True)
    files = dirs = links = inodes = 0
    total = 0
    for s, mode in enumerate(st.modes):
        if st.marks[s] & MARK_NEW:
            continue
        inodes += 1
        if stat.S_ISREG(mode):
            files += 1
            total += st.sizes[s]
        elif stat.S_ISDIR(mode):
            dirs += 1
        elif stat.S_ISLNK(mode):
            links += 1
    problems = tuple(Problem(f.kind, f.ino, f.detail, i in done)
                     for i, f in enumerate(st.found) if f.kind)
    leaked: list[ChunkRef] | None = st.unreferenced
    return FsckReport(inodes=inodes, directories=dirs, files=files, symlinks=links,
                      blocks=st.nblocks, chunks=st.nchunks, bytes=total, problems=problems,
                      repaired=sum(p.repaired for p in problems),
                      open_orphans=tuple(sorted(st.open_orphans)),
                      unreferenced=None if leaked is None else len(leaked),
                      unreferenced_bytes=sum(r.size for r in leaked or ()))


def check_volume(data_dir: Path, name: str, store: ChunkStore | None = None, *,
                 repair: bool = False, progress: Progress | None = None,
                 gc_grace_s: float = DEFAULT_GRACE_S) -> FsckReport:
    """:func:`check` of the volume ``name`` under ``data_dir`` (unmounted: VolumeError if its
    metadata is in use). A volume never mounted has no metadata yet: it is clean, and
    nothing is created. On a RING, its unreferenced chunks are looked for too; repair queues
    them for the collector, due ``gc_grace_s`` later."""
    config = load_volume(data_dir, name)
    vdir = volume_dir(data_dir, name)
    path = vdir / "meta"
    if not path.is_dir():
        return FsckReport(0, 0, 0, 0, 0, 0, 0, (), 0)
    meta = MetaStore(path)
    try:
        leaks = (LeakSearch(store, vdir, config.uuid, gc_grace_s)
                 if isinstance(store, RingStore) else None)
        return check(meta, store, block_size=config.block_size, repair=repair,
                     progress=progress, leaks=leaks)
    finally:
        meta.close()
