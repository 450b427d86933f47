"""Repair sweep and health scan of a RING (local or networked: any RingStore).

:func:`repair` first revives unavailable disks. On an embedded RING a missing (or empty,
unmarked) disk directory is initialised only if the disk is named in ``init_disks``
(``sofsctl repair --init-disk ID``): otherwise it may be a drive that failed to mount, and the
rebuild would fill the filesystem under its mount point. Refused disks stay out of the
read/write set, like a down disk (their chunks stay degraded), and the refusals are reported
(``disks_refused``). A non-empty directory without a valid marker, and a disk set up as its
own filesystem whose path is not a mount point now, are always refused. A marked disk that
does not open (a damaged index) is refused too unless named in ``init_disks``: then its
contents are set aside and it is rebuilt empty from the other disks (``disks_set_aside``); its
index is not rebuilt from its containers, because compaction drops tombstones and a replay
would bring deleted pieces back. The sweep then walks
the union of the pieces indexed on every available disk plus the chunks named in the repair
log. For each chunk, grouped by (key, policy code):

* every owner per the ring must hold its own piece (fragment i on owners[i], or a replica) and
  that piece must verify (record checksum; replicas also against the chunk key);
* missing or bad pieces are rebuilt from the survivors (copy a verified replica, or decode the
  EC fragments, check the payload against the key, re-encode the missing fragments) and
  written to the disk that should hold them – a bad piece is tombstoned first;
* once every owner holds a verified piece, pieces on other disks or under other fragment
  indexes (misplaced / extra) are removed;
* a chunk that cannot be rebuilt and that the repair log marks ABANDONED (its put failed below
  the write quorum, chunkstore.ring.datapath) is not lost data: it is reported in
  ``abandoned`` ("abandoned put: N pieces, ..."), never as unrecoverable, and once
  ``abandoned_grace_s`` has passed since the failed put its pieces are removed by conditional
  deletes as below (a put of the chunk since then keeps them); a readable one is repaired and
  kept like any chunk (another put of the same bytes may have succeeded);
* chunks the repair log marks DELETED have their leftover pieces removed instead, by
  conditional deletes: each carries the time the delete was decided (the entry's time; a
  node is told how long ago that was, so its clock need not agree with ours: wire/frames.py),
  and the disk refuses it if a put of that piece landed there at or after that time
  (chunkstore.disk.store, "Conditional deletes"). Chunk keys are content addresses, so a file written again with the same bytes
  puts the same key; the refusal makes the sweep clear the entry and sweep the chunk as a
  live one. The check is made by the disk holding the piece, under its append lock, so it
  holds whichever process or node wrote the chunk again and whichever runs the sweep (a lock
  in the sweep's process, or the repair log, which is per client, would not). A writer
  through this client also clears the DELETED entry before writing;
* a chunk deleted while the sweep runs (checkpoint rotation, the volumes' GC) is never counted
  or logged as unrecoverable, nor rebuilt: it is known deleted if it was deleted through this
  ring client since the snapshot (:meth:`RingStore.watching_deletes`), if the repair log marks
  it DELETED, or if the snapshot listed pieces of it and now no disk that held one, and no
  owner, has any (every one of those disks answering). Its NEEDS_REPAIR entry is cleared.
  A chunk whose pieces went missing otherwise (a piece still somewhere, a disk that does not
  answer, or known only from a repair-log entry) is reported as before.

Each chunk is handled inside its own try block: one bad chunk never stops the sweep.

Every disk call goes through the ring client's call path (:meth:`RingStore.call`), as the data
path's do: a StaleMap answer refreshes the map and retries, and a disk that fails is marked
unavailable for the data path too.

A sweep can be cancelled (``cancel``, a threading.Event): it then starts no further chunk,
lets the chunks in hand finish, skips the root records and returns a report with
``cancelled`` set; being idempotent, the next sweep does the rest. Pacing
(``max_bytes_per_s``) waits on the injected clock and is cut short by a cancel.

:func:`health` counts chunks fully protected / degraded / unrecoverable from the indexes
alone (no data read) unless ``verify=True``; it is what ``sofsctl status`` shows.

The walk keeps one small record per chunk in memory (fine for this slice; a sweep by ring
arc will replace it for large disks).
"""

from __future__ import annotations

import functools
import itertools
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Iterable

from chunkstore.api import DiskBackend
from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.errors import (
    ChunkCorrupt,
    ChunkNotFound,
    ChunkStoreError,
    DiskUnavailable,
    KeyConflict,
    PolicyError,
)
from chunkstore.healing.pacing import Throttle
from chunkstore.healing.rootrefresh import refresh_roots
from chunkstore.placement.keys import ChunkRef
from chunkstore.protection.policy import REPLICA_INDEX, ECPolicy, Policy, ReplicationPolicy
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.local import LocalRing
from chunkstore.ring.repairlog import ABANDONED, DELETED, NEEDS_REPAIR, RepairEntry

Progress = Callable[[int, int], None]
SizedProgress = Callable[[int, int, int, int], None]  # chunks done, total; their bytes too
SWEEP_THREADS = 4  # chunks repaired at once
ABANDONED_GRACE_S = 3600.0  # pieces of a put that failed below its quorum are kept this long


@dataclass(frozen=True)
class RepairReport:
    """Outcome of one :func:`repair` sweep."""

    chunks_checked: int
    pieces_rebuilt: int
    pieces_removed: int
    unrecoverable: tuple[bytes, ...]  # keys of chunks that could not be rebuilt
    bytes_rebuilt: int
    disks_revived: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # chunks whose repair failed for another reason (left degraded)
    roots_refreshed: int = 0      # volume root records written again to their current owners
    cancelled: bool = False       # stopped early (chunks_checked of them done): sweep again
    disks_refused: tuple[str, ...] = ()  # why an unavailable disk was not revived (one line each)
    disks_set_aside: tuple[str, ...] = ()  # damaged disks opened empty to be rebuilt (one line each)
    deleted_meanwhile: int = 0    # chunks deleted while the sweep ran (not unrecoverable)
    abandoned: tuple[str, ...] = ()  # puts that failed below quorum (not lost data), one line each
    abandoned_collected: int = 0  # of them, chunks whose pieces were removed (grace over)

    @property
    def chunks_unrecoverable(self) -> int:
        return len(self.unrecoverable)


@dataclass(frozen=True)
class HealthReport:
    """Counts of chunks by protection state (``sofsctl status``)."""

    chunks: int
    protected: int
    degraded: int
    unrecoverable: int
    pieces: int
    disks_total: int
    disks_unavailable: tuple[str, ...]
    unrecoverable_keys: tuple[str, ...] = ()  # hex, the first UNRECOVERABLE_SHOWN of them
    abandoned: int = 0  # unreadable pieces of puts that failed below quorum (not in chunks)


@dataclass
class _Chunk:
    ref: ChunkRef
    where: dict[str, set[int]] = field(default_factory=dict)  # disk id -> fragment indexes


def _collect(ring: RingStore, cancel: threading.Event | None = None
             ) -> tuple[dict[tuple[bytes, bytes], _Chunk], int]:
    chunks: dict[tuple[bytes, bytes], _Chunk] = {}
    pieces = 0
    for disk_id in ring.available_disks():
        if cancel is not None and cancel.is_set():
            break
        try:
            listing = ring.call(disk_id, lambda ds: list(ds.pieces()))
        except DiskUnavailable:
            continue  # marked down by the call: its pieces count as missing
        for p in listing:
            pieces += 1
            ck = (p.key, p.policy.to_bytes())
            c = chunks.get(ck)
            if c is None:
                c = chunks[ck] = _Chunk(ChunkRef(p.key, p.chunk_size, p.policy))
            c.where.setdefault(disk_id, set()).add(p.frag_idx)
    for entry in ring.repair_log.entries():
        ck = (entry.ref.key, entry.ref.policy.to_bytes())
        chunks.setdefault(ck, _Chunk(entry.ref))
    return chunks, pieces


def _expected(ring: RingStore, policy: Policy, key: bytes) -> list[tuple[str, int]]:
    owners = ring.ring.owners(key, policy.width)
    return [(owners[i], policy.piece_index(i)) for i in range(policy.width)]


def _distinct_pieces(policy: Policy, c: _Chunk) -> int:
    if isinstance(policy, ReplicationPolicy):
        return sum(1 for idxs in c.where.values() if REPLICA_INDEX in idxs)
    return len({i for idxs in c.where.values() for i in idxs if i < policy.width})


def health(ring: RingStore, verify: bool = False) -> HealthReport:
    """Classify every known chunk; ``verify=True`` also reads and checks each owner's piece.

    Disks are listed one after the other while the GC and checkpoint rotation may delete: a
    chunk deleted meanwhile (through this client, or gone from every disk that listed it) is
    not counted, as in the repair sweep."""
    check_disks(ring)
    with ring.watching_deletes() as deleted:
        return _health(ring, verify, deleted)


def check_disks(ring: RingStore) -> None:
    """Ask every disk the ring still uses whether it is alive (its marker still the same
    file): a disk directory that vanished or was replaced under an open store goes on
    answering from its open files and index, so without this a sweep or a health count would
    call its pieces protected. One that fails is marked unavailable (through the call path)."""
    for disk_id in ring.available_disks():
        try:
            ring.call(disk_id, lambda d: d.check_alive())
        except ChunkStoreError:
            continue  # marked down by the call path; repair's revival step takes it from here


UNRECOVERABLE_SHOWN = 20


def _health(ring: RingStore, verify: bool, deleted: set[bytes]) -> HealthReport:
    chunks, pieces = _collect(ring)
    protected = degraded = unrecoverable = abandoned = 0
    lost: list[str] = []
    for c in chunks.values():
        if c.ref.key in deleted:
            continue
        try:
            policy = c.ref.policy.policy()
            expected = _expected(ring, policy, c.ref.key)
            ok = 0
            for disk_id, idx in expected:
                if idx not in c.where.get(disk_id, ()):
                    continue
                if verify:
                    try:
                        data = _get(ring, disk_id, c.ref.key, idx)
                    except ChunkStoreError:
                        continue
                    if idx == REPLICA_INDEX and not c.ref.verify(data):
                        continue
                ok += 1
            entry = ring.repair_log.get(c.ref.key)
            if entry is not None and entry.kind == DELETED:
                continue
            if ok == policy.width:
                protected += 1
            elif max(ok, _distinct_pieces(policy, c)) >= policy.min_pieces:
                degraded += 1
            elif entry is not None and entry.kind == ABANDONED:
                abandoned += 1
            elif c.ref.key not in deleted and not _vanished(ring, c, expected):
                unrecoverable += 1
                lost.append(c.ref.hex)
        except ChunkStoreError:
            unrecoverable += 1
            lost.append(c.ref.hex)
    down = ring.unavailable_disks()
    return HealthReport(
        chunks=protected + degraded + unrecoverable,
        protected=protected,
        degraded=degraded,
        unrecoverable=unrecoverable,
        pieces=pieces,
        disks_total=len(ring.disk_ids()),
        disks_unavailable=tuple(sorted(down)),
        unrecoverable_keys=tuple(sorted(lost)[:UNRECOVERABLE_SHOWN]),
        abandoned=abandoned,
    )


def _vanished(ring: RingStore, c: _Chunk, expected: list[tuple[str, int]]) -> bool:
    """The snapshot listed pieces of the chunk and none is left now on any disk that held one,
    nor on any owner, every one of them answering: it was deleted meanwhile (by another client
    of the RING; deletes through this one are watched, see :meth:`RingStore.watching_deletes`)."""
    if not c.where:
        return False  # known from the repair log only: nothing to compare with
    key = c.ref.key
    disks = set(c.where) | {d for d, _ in expected}
    idxs = {i for _, i in expected} | {i for s in c.where.values() for i in s}
    for disk_id in sorted(disks):
        for idx in sorted(idxs):
            try:
                if ring.call(disk_id, functools.partial(_has, key=key, idx=idx)):
                    return False
            except ChunkStoreError:
                return False  # cannot tell: a loss until shown otherwise
    return True


def _get(ring: RingStore, disk_id: str, key: bytes, idx: int) -> bytes:
    return ring.call(disk_id, lambda ds: ds.get(key, idx))


def _has(ds: DiskBackend, key: bytes, idx: int) -> bool:
    return ds.has(key, idx)


def _delete_if_unput(ds: DiskBackend, key: bytes, idx: int, decided_at: float) -> None:
    ds.delete(key, idx, decided_at=decided_at)


def _replace(ds: DiskBackend, ref: ChunkRef, idx: int, piece: bytes) -> None:
    """Write a rebuilt piece; a bad one there is tombstoned first (stored bytes are never
    overwritten). Idempotent, as ``RingStore.call`` needs."""
    if ds.has(ref.key, idx):
        ds.delete(ref.key, idx)
    ds.put(ref.key, idx, ref.policy, ref.size, piece)


class _Sweep:
    def __init__(self, ring: RingStore, verify: bool = True, deleted_keys: set[bytes] | None = None,
                 *, clock: Clock = SYSTEM_CLOCK, abandoned_grace_s: float = ABANDONED_GRACE_S) -> None:
        self.ring = ring
        self.clock = clock
        self.abandoned_grace_s = abandoned_grace_s
        self.abandoned: list[str] = []
        self.abandoned_collected = 0
        self.verify = verify
        self.deleted_keys = deleted_keys if deleted_keys is not None else set()
        self.deleted_meanwhile = 0
        self.counts = threading.Lock()  # chunks are swept by several threads
        self.read_bytes = 0
        self.rebuilt = 0
        self.removed = 0
        self.bytes = 0
        self.unrecoverable: list[bytes] = []

    def _read(self, disk_id: str, ref: ChunkRef, idx: int) -> bytes | None:
        """A verified piece, or None if missing / bad / unreachable."""
        try:
            data = _get(self.ring, disk_id, ref.key, idx)
        except (ChunkNotFound, ChunkCorrupt, DiskUnavailable):  # a failing disk is marked down
            return None
        with self.counts:
            self.read_bytes += len(data)
        if idx == REPLICA_INDEX and not ref.verify(data):
            return None
        return data

    def _remove(self, disk_id: str, key: bytes, idx: int) -> None:
        self.ring.call(disk_id, lambda ds: ds.delete(key, idx))
        with self.counts:
            self.removed += 1

    def deleted(self, c: _Chunk, decided_at: float, clear: bool = True) -> bool:
        """Remove the leftover pieces of a chunk deleted at DECIDED_AT. Each delete is
        conditional (see the module docstring): if a disk refuses one because the chunk was
        put again since, the chunk is wanted again – its entry is cleared, nothing more is
        removed, and False tells the caller to sweep it as a live chunk."""
        for disk_id, idxs in c.where.items():
            for idx in sorted(idxs):
                try:
                    self.ring.call(disk_id, functools.partial(_delete_if_unput, key=c.ref.key, idx=idx,
                                                              decided_at=decided_at))
                except KeyConflict:
                    if clear:
                        self.ring.repair_log.clear(c.ref.key)
                    return False
                with self.counts:
                    self.removed += 1
        if clear and not self.ring.unavailable_disks():
            self.ring.repair_log.clear(c.ref.key)
        return True

    def _known_deleted(self, key: bytes) -> bool:
        if key in self.deleted_keys:
            return True
        entry = self.ring.repair_log.get(key)
        return entry is not None and entry.kind == DELETED

    def _settle_deleted(self, c: _Chunk) -> None:
        with self.counts:
            self.deleted_meanwhile += 1
        entry = self.ring.repair_log.get(c.ref.key)
        if entry is not None and entry.kind == NEEDS_REPAIR:
            self.ring.repair_log.clear(c.ref.key)

    def chunk(self, c: _Chunk) -> None:
        ref = c.ref
        policy = ref.policy.policy()
        expected = _expected(self.ring, policy, ref.key)
        good: dict[tuple[str, int], bytes] = {}
        held: set[tuple[str, int]] = set()  # expected pieces that are there (and verify)
        bad: list[tuple[str, int]] = []
        for disk_id, idx in expected:
            present = idx in c.where.get(disk_id, ())
            if present and not self.verify:
                held.add((disk_id, idx))  # a rebuild sweep trusts the index: no read
                continue
            data = self._read(disk_id, ref, idx) if present else None
            if data is None:
                bad.append((disk_id, idx))
            else:
                good[(disk_id, idx)] = data
                held.add((disk_id, idx))
        if bad:
            payload = self._payload(c, policy, good)
            if self._known_deleted(ref.key) or (payload is None and _vanished(self.ring, c, expected)):
                self._settle_deleted(c)  # deleted during the sweep: neither lost nor to rebuild
                return
            if payload is None:
                entry = self.ring.repair_log.get(ref.key)
                if entry is not None and entry.kind == ABANDONED:
                    self._abandoned(c, entry)  # never written in full: not lost data
                    return
                with self.counts:
                    self.unrecoverable.append(ref.key)
                self.ring.repair_log.note(ref, NEEDS_REPAIR)
                return
            pieces = policy.encode(payload)
            for disk_id, idx in bad:
                piece = pieces[0] if idx == REPLICA_INDEX else pieces[idx]
                try:
                    self.ring.call(disk_id, functools.partial(_replace, ref=ref, idx=idx, piece=piece))
                except DiskUnavailable:
                    continue  # stays degraded; noted below
                with self.counts:
                    self.rebuilt += 1
                    self.bytes += len(piece)
                good[(disk_id, idx)] = piece
                held.add((disk_id, idx))
        if len(held) < policy.width:
            self.ring.repair_log.note(ref, NEEDS_REPAIR)
            return
        # every owner holds a verified piece: drop misplaced / extra ones
        wanted = set(expected)
        for disk_id, idxs in c.where.items():
            for idx in sorted(idxs):
                if (disk_id, idx) not in wanted:
                    self._remove(disk_id, ref.key, idx)
        entry = self.ring.repair_log.get(ref.key)
        if entry is not None and entry.kind in (NEEDS_REPAIR, ABANDONED):
            self.ring.repair_log.clear(ref.key)  # readable and protected: kept like any chunk

    def _abandoned(self, c: _Chunk, entry: RepairEntry) -> None:
        """An unreadable chunk whose put failed below its quorum: its pieces are collected
        once the grace period since the failed put is over (conditional deletes, as for a
        deleted chunk: a put of it since then keeps them); reported, never as unrecoverable."""
        n = sum(len(idxs) for idxs in c.where.values())
        if self.clock.time() - entry.noted_at < self.abandoned_grace_s:
            line = f"{c.ref.hex}: abandoned put: {n} pieces, kept until the grace period ends"
        elif self.deleted(c, entry.noted_at, clear=False):
            self.ring.repair_log.clear(c.ref.key)
            line = f"{c.ref.hex}: abandoned put: {n} pieces, collected after grace"
            with self.counts:
                self.abandoned_collected += 1
        else:
            line = f"{c.ref.hex}: abandoned put: {n} pieces, kept (the chunk was put again since)"
        with self.counts:
            self.abandoned.append(line)

    def _payload(self, c: _Chunk, policy: Policy, good: dict[tuple[str, int], bytes]) -> bytes | None:
        ref = c.ref
        if isinstance(policy, ReplicationPolicy):
            if good:
                return next(iter(good.values()))
            for disk_id, idxs in c.where.items():
                if REPLICA_INDEX in idxs:
                    data = self._read(disk_id, ref, REPLICA_INDEX)
                    if data is not None:
                        return data
            return None
        assert isinstance(policy, ECPolicy)
        frags = {idx: data for (_, idx), data in good.items()}
        if len(frags) < policy.k:
            for disk_id, idxs in c.where.items():  # misplaced fragments count too
                for idx in idxs:
                    if idx < policy.width and idx not in frags and len(frags) < policy.k:
                        data = self._read(disk_id, ref, idx)
                        if data is not None:
                            frags[idx] = data
        if len(frags) < policy.k:
            return None
        try:
            payload = policy.decode(frags)
        except PolicyError:
            payload = None
        if payload is not None and ref.verify(payload):
            return payload
        try:  # a wrong fragment: let the RingStore try combinations (and other disks)
            return self.ring.get(ref)
        except ChunkStoreError:
            return None


def repair(ring: RingStore, progress: Progress | None = None,
           max_bytes_per_s: float | Callable[[], float | None] | None = None,
           verify: bool = True, *,
           cancel: threading.Event | None = None, clock: Clock = SYSTEM_CLOCK,
           init_disks: Iterable[str] = (),
           traffic: Callable[[int], None] | None = None,
           progress_sized: SizedProgress | None = None,
           abandoned_grace_s: float = ABANDONED_GRACE_S) -> RepairReport:
    """Make every chunk fully protected again (see module docstring). With ``verify`` every
    piece an owner should hold is read and verified, so the sweep is also a scrub; without,
    pieces the disk indexes list are trusted and only the chunks missing pieces are read (a
    rebuild after a map change: several times less traffic). ``max_bytes_per_s`` caps the
    sweep's traffic (pieces read plus written), to spare client I/O (a callable is asked
    again at every step, so the cap can change while the sweep runs); ``clock`` paces it;
    ``traffic(bytes)`` is told the traffic so far with each progress step, and
    ``progress_sized(done, total, bytes_done, bytes_total)`` the chunks swept with their
    payload bytes (of the chunks swept, of all the chunks to sweep).
    ``cancel`` stops the sweep between chunks (the report says ``cancelled``).
    ``init_disks``: disks of an embedded RING whose missing or empty directory may be
    initialised (anywhere else such a disk is refused and left down; ValueError for an
    unknown id). ``abandoned_grace_s``: how long after a put failed below its quorum its
    pieces are kept (by ``clock``'s time) before the sweep collects them."""
    init = set(init_disks)
    unknown = init - set(ring.disk_ids())
    if unknown:
        raise ValueError(f"unknown disk {', '.join(sorted(unknown))}; the disks are "
                         f"{', '.join(ring.disk_ids())}")
    cancel = cancel if cancel is not None else threading.Event()
    if cancel.is_set():
        return RepairReport(0, 0, 0, (), 0, cancelled=True)
    revived = []
    refused: list[str] = []
    set_aside: list[str] = []
    check_disks(ring)
    for disk_id in sorted(ring.unavailable_disks()):
        if isinstance(ring, LocalRing):
            if ring.revive_disk(disk_id, init=disk_id in init):
                revived.append(disk_id)
                if disk_id in ring.set_aside:
                    set_aside.append(ring.set_aside.pop(disk_id))
            elif disk_id in ring.refused:
                refused.append(ring.refused[disk_id])
        elif ring.revive_disk(disk_id):
            revived.append(disk_id)
    with ring.watching_deletes() as deleted_keys:
        return _sweep_all(ring, progress, throttle=Throttle(max_bytes_per_s, clock, cancel),
                          sweep=_Sweep(ring, verify, deleted_keys, clock=clock,
                                       abandoned_grace_s=abandoned_grace_s), cancel=cancel,
                          revived=revived, refused=refused, set_aside=set_aside,
                          traffic=traffic, progress_sized=progress_sized)


def _sweep_all(ring: RingStore, progress: Progress | None, *, throttle: Throttle, sweep: _Sweep,
               cancel: threading.Event, revived: list[str], refused: list[str],
               set_aside: list[str], traffic: Callable[[int], None] | None = None,
               progress_sized: SizedProgress | None = None) -> RepairReport:
    chunks, _ = _collect(ring, cancel)
    errors: list[str] = []
    total = len(chunks)
    total_bytes = sum(c.ref.size for c in chunks.values())

    def one(c: _Chunk) -> int | None:
        """Sweep one chunk; its size, None if the sweep was cancelled before it started."""
        if cancel.is_set():
            return None
        try:
            entry = ring.repair_log.get(c.ref.key)
            if entry is None or entry.kind != DELETED or not sweep.deleted(c, entry.noted_at):
                sweep.chunk(c)
        except Exception as e:  # one bad chunk never stops the sweep
            errors.append(f"{c.ref.hex}: {type(e).__name__}: {e}")
        return c.ref.size

    # a few chunks at a time: their piece reads and writes overlap (disks, network, codec)
    todo = iter(sorted(chunks))
    done = done_bytes = 0
    with ThreadPoolExecutor(SWEEP_THREADS, thread_name_prefix="repair") as pool:
        running = {pool.submit(one, chunks[ck]) for ck in itertools.islice(todo, SWEEP_THREADS * 2)}
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            sizes = [n for n in (f.result() for f in finished) if n is not None]
            done, done_bytes = done + len(sizes), done_bytes + sum(sizes)
            if not cancel.is_set():
                for ck in itertools.islice(todo, len(finished)):
                    running.add(pool.submit(one, chunks[ck]))
            if traffic is not None:
                traffic(sweep.read_bytes + sweep.bytes)
            if progress is not None:
                progress(done, total)
            if progress_sized is not None:
                progress_sized(done, total, done_bytes, total_bytes)
            throttle.pace(sweep.read_bytes + sweep.bytes)
    cancelled = cancel.is_set()
    roots = 0 if cancelled else refresh_roots(ring, errors)
    return RepairReport(
        chunks_checked=done,
        pieces_rebuilt=sweep.rebuilt,
        pieces_removed=sweep.removed,
        unrecoverable=tuple(sweep.unrecoverable),
        bytes_rebuilt=sweep.bytes,
        disks_revived=tuple(revived),
        errors=tuple(errors),
        roots_refreshed=roots,
        cancelled=cancelled,
        disks_refused=tuple(refused),
        deleted_meanwhile=sweep.deleted_meanwhile,
        disks_set_aside=tuple(set_aside),
        abandoned=tuple(sorted(sweep.abandoned)),
        abandoned_collected=sweep.abandoned_collected,
    )


def scan(ring: RingStore) -> HealthReport:
    """Alias of :func:`health` with verification (a scrub that repairs nothing)."""
    return health(ring, verify=True)
