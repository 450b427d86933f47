"""Root records through the RING (:class:`RootPath`, a part of
:class:`chunkstore.ring.datapath.RingStore`): the one small mutable record per volume
(:mod:`chunkstore.roots`), and the slots of the volumes' metadata journals, which are root
records too (:mod:`sofs.journal`: one write per acknowledged group of metadata commits, so
its latency is that of every synced close on a journaled volume).

``put_root`` writes a record in parallel to the owners of ``root_key(volume_id)``,
``record_width`` of them (``min(ROOT_WIDTH, placing disks)`` for a volume's root record; a
journal slot's id names its own width); an owner that fails is replaced by the next disks
of the key's walk (as for pieces, failing disks are marked down). Once every write has
finished it raises StaleRoot if a disk holds a newer seq, KeyConflict if one holds the same
seq with another body (two writers raced), else NotEnoughDisks below the majority; a
StaleEpoch (the writer was fenced) is raised at once. A log record
(:func:`chunkstore.roots.is_log_record`, a journal slot) has one writer, fenced by the
nodes: its put returns as soon as a majority holds exactly its seq and no disk answered with
a newer one or another body (the other writes finish in the background; reads ask every
disk), so an append waits for the fastest majority, not the slowest disk.

``get_root`` and ``list_roots`` ask every available disk in parallel and take the highest
seq, so records are found wherever rebalances and disk replacements left them; disks that
fail or hold a corrupt record are skipped, and if no disk answers at all they raise
NotEnoughDisks (``get_root`` raises ChunkCorrupt if records were found but none verifies,
rather than answer "none").
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, TypeVar

from chunkstore.api import DiskBackend
from chunkstore.errors import (
    ChunkCorrupt,
    ChunkStoreError,
    KeyConflict,
    NotEnoughDisks,
    StaleEpoch,
    StaleRoot,
)
from chunkstore.placement.ring import Ring
from chunkstore.roots import (
    RootRecord,
    check_volume_id,
    is_log_record,
    merge_seqs,
    newest,
    record_width,
    root_key,
)

T = TypeVar("T")

SPARES = 8  # disks of a key's walk beyond its owners that take (and are searched for) handoffs


class RootPath:
    """Root-record reads and writes of a RingStore (which provides the members below)."""

    ring: Ring
    _pool: ThreadPoolExecutor
    call: Callable
    available_disks: Callable[[], list[str]]
    _check_open: Callable[[], None]

    def put_root(self, volume_id: bytes, seq: int, body: bytes) -> int:
        """Write a volume's root record; returns how many disks held exactly this seq when it
        returned. StaleRoot / KeyConflict / NotEnoughDisks / StaleEpoch: module docstring."""
        self._check_open()
        rec = RootRecord(volume_id, seq, body)  # FormatError
        key = root_key(rec.volume_id)
        width = record_width(rec.volume_id, self.ring.placing_count)
        quorum = width // 2 + 1
        log_record = is_log_record(rec.volume_id)
        held: dict[str, int] = {}  # disk -> seq it holds after our write
        conflicts: list[KeyConflict] = []
        errors: list[BaseException] = []
        targets: list[str] = self.ring.owners(key, width)
        spares: list[str] | None = None
        while targets:
            futures: dict[Future, str] = {
                self._pool.submit(self.call, d, lambda ds: ds.put_root(rec.volume_id, rec.seq,
                                                                      rec.body)): d
                for d in targets}
            failed = 0
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    try:
                        held[futures[f]] = f.result()
                    except StaleEpoch:
                        raise
                    except KeyConflict as e:
                        conflicts.append(e)
                    except ChunkStoreError as e:
                        errors.append(e)
                        failed += 1
                ok = sum(1 for s in held.values() if s == rec.seq)
                if log_record and ok >= quorum and not conflicts \
                        and all(s <= rec.seq for s in held.values()):
                    return ok  # a majority holds it; the rest finish in the background
            if not failed or any(s > rec.seq for s in held.values()):
                break
            if spares is None:  # hand off to the next disks of the key's walk
                walk = self.ring.owners(key, min(self.ring.placing_count, width + SPARES))[width:]
                available = set(self.available_disks())
                spares = [d for d in walk if d in available]
            targets, spares = spares[:failed], spares[failed:]
        what = f"root record {rec.seq} of volume {rec.volume_id.hex()}"
        newer = max(held.values(), default=0)
        if newer > rec.seq:
            raise StaleRoot(f"{what}: a disk already holds root record {newer}")
        if conflicts:
            raise KeyConflict(f"{what}: another body with this seq is stored: {conflicts[0]}")
        ok = sum(1 for s in held.values() if s == rec.seq)
        if ok < quorum:
            cause = f": {errors[0]}" if errors else ""
            raise NotEnoughDisks(f"{what}: {ok} of {width} disks hold it, quorum {quorum}{cause}")
        return ok

    def get_root(self, volume_id: bytes) -> RootRecord | None:
        """The volume's root record with the highest seq over every available disk, or None.
        ChunkCorrupt if records were found but none verifies; NotEnoughDisks if no disk
        answered."""
        self._check_open()
        volume_id = check_volume_id(volume_id)
        answers, errors = self._ask_every_disk(lambda ds: ds.get_root(volume_id))
        best = newest(a for a in answers if a is not None)
        if best is not None:
            return best
        corrupt = [e for e in errors if isinstance(e, ChunkCorrupt)]
        if corrupt:  # "none" would tell the caller the volume has no record: it has one
            raise ChunkCorrupt(f"volume {volume_id.hex()}: no root record verifies: {corrupt[0]}")
        if answers:
            return None
        raise NotEnoughDisks(f"volume {volume_id.hex()}: no disk answered for its root record"
                             + (f": {errors[0]}" if errors else " (none available)"))

    def get_root_certain(self, volume_id: bytes) -> RootRecord | None:
        """:meth:`get_root`, but None only when so few placing disks failed to answer that any
        write quorum (a majority of the record's width, wherever hand-offs put it) includes
        one that answered; else NotEnoughDisks."""
        self._check_open()
        volume_id = check_volume_id(volume_id)
        placing = self.ring.placing_count
        answers, errors = self._ask_every_disk(lambda ds: ds.get_root(volume_id))
        best = newest(a for a in answers if a is not None)
        if best is not None:
            return best
        quorum = record_width(volume_id, placing) // 2 + 1
        silent = placing - len(answers)
        if silent >= quorum:
            raise NotEnoughDisks(f"record {volume_id.hex()}: {silent} of {placing} disks did "
                                 f"not answer, as many as a write quorum ({quorum}): its "
                                 "absence cannot be told" + (f": {errors[0]}" if errors else ""))
        return None

    def list_roots(self) -> dict[bytes, int]:
        """volume_id -> highest root record seq over every available disk. NotEnoughDisks if
        no disk answered."""
        self._check_open()
        listings, errors = self._ask_every_disk(lambda ds: ds.list_roots())
        if not listings:
            raise NotEnoughDisks("no disk answered for its root records"
                                 + (f": {errors[0]}" if errors else " (none available)"))
        return merge_seqs(listings)

    def _ask_every_disk(self, op: Callable[[DiskBackend], T]) -> tuple[list[T], list[BaseException]]:
        """``op`` on every available disk in parallel: (answers, errors)."""
        futures = [self._pool.submit(self.call, d, op) for d in self.available_disks()]
        answers: list[T] = []
        errors: list[BaseException] = []
        for f in futures:
            try:
                answers.append(f.result())
            except ChunkStoreError as e:
                errors.append(e)
        return answers, errors
