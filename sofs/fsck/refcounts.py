"""Refcounts: every chunk the block maps name has an ``R`` count equal to the number of blocks
naming it, and a count of 0 is queued for the collector (``G``). Uses the per-chunk block
counts that :func:`.scan.scan_blocks` gathered; with a store, each referenced chunk is also
probed (:class:`.chunks.ChunkProbe`) and a missing one reported."""

from __future__ import annotations

from chunkstore.placement.keys import KEY_SIZE, REF_SIZE

from .. import schema
from ..metadata import Batch
from .report import MISSING_CHUNK, REFCOUNT_MISMATCH, REFCOUNT_MISSING, ZERO_REFCOUNT_NOT_QUEUED
from .state import STAGE_REFS, TICK, CheckState, Fix, put_fix


def scan_refcounts(st: CheckState) -> None:
    st.tick("refcounts", 0, len(st.counts), force=True)
    queued: set[bytes] = set()
    for key, _ in st.meta.scan(b"G"):
        if len(key) != 9 + KEY_SIZE:
            st.bad_key(key, "collector queue entry")
        else:
            queued.add(bytes(key[9:]))
    counts = st.counts
    st.nchunks = len(counts)
    n = 0
    for n, (key, value) in enumerate(st.meta.scan(b"R"), 1):
        if n % TICK == 0:
            st.tick("refcounts", n, st.nchunks)
        ck = bytes(key[1:])
        if (len(key) != 1 + KEY_SIZE or len(value) != 8 + REF_SIZE
                or value[9:9 + KEY_SIZE] != ck or not st.ref_ok(value[8:])):
            st.bad_key(key, "refcount")  # recounted below if blocks name the chunk
            continue
        count = int.from_bytes(value[:8], "little")
        counted = counts.pop(ck, 0)
        if counted:
            _check_chunk(st, ck, value[8:])
        if count != counted:
            st.problem(REFCOUNT_MISMATCH, None, f"chunk {ck.hex()}: refcount {count}, "
                       f"{counted} block(s) name it", STAGE_REFS,
                       _set_refcount(st, ck, counted, bytes(value[8:])))
        elif count == 0 and ck not in queued:
            st.problem(ZERO_REFCOUNT_NOT_QUEUED, None, f"chunk {ck.hex()}: refcount 0 and not "
                       "queued for the collector", STAGE_REFS,
                       put_fix(schema.gc_key(st.now, ck), b""))
    if counts:  # chunks named by blocks without a (readable) refcount: find their refs
        refs: dict[bytes, bytes] = {}
        for _, value in st.meta.scan(b"B"):
            ck = value[5:5 + KEY_SIZE]
            if ck in counts and ck not in refs and st.ref_ok(value[4:]):
                refs[ck] = bytes(value[4:])
        for ck, counted in counts.items():
            ref = refs[ck]
            _check_chunk(st, ck, ref)
            st.problem(REFCOUNT_MISSING, None, f"chunk {ck.hex()}: no refcount, {counted} "
                       "block(s) name it", STAGE_REFS, _set_refcount(st, ck, counted, ref))
    st.counts = {}
    st.tick("refcounts", n, n, force=True)


def _set_refcount(st: CheckState, ck: bytes, count: int, ref: bytes) -> Fix:
    def fix(b: Batch) -> None:
        b.put(schema.refcount_key(ck), schema.refcount_value(count, ref))
        if count == 0:
            b.put(schema.gc_key(st.now, ck), b"")
    return fix


def _check_chunk(st: CheckState, ck: bytes, ref: bytes) -> None:
    if st.probe is None:
        return
    why = st.probe.missing(ref)
    if why is not None:
        st.problem(MISSING_CHUNK, None, f"chunk {ck.hex()}: {why}")
