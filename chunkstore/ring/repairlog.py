"""The repair log: chunks known to need attention, kept in DATA_DIR/repairlog (rocksdict).

Puts that reach only the write quorum, reads that met a missing or corrupt piece, and deletes
that could not reach every owner note the chunk here; :mod:`chunkstore.healing.sweep` works through
the log (besides walking every piece) and clears entries it has settled.

A note is durable before it returns: a put reaching only the write quorum is acknowledged
after its entry is written *and* the log's write-ahead log is synced, so the debt (which
pieces the sweep must complete) survives kill -9 or a power cut of the writing process
instead of waiting for the next full scrub. Syncs are group-committed: a note that finds a
sync running waits for it, and the next sync covers every note written meanwhile, so
concurrent degraded writes share one fsync. Clears are not synced (a lost clear only makes
the sweep look at a settled chunk again).

Key: chunk key (20 B). Value, version 1, 18 bytes, big-endian::

    offset  0  u8    version (1)
    offset  1  u8    kind: 1 = needs repair, 2 = deleted (pieces left on unreachable disks),
                     3 = abandoned put (failed below its write quorum: pieces left, never
                     referenced; the sweep collects them after a grace period)
    offset  2  4 B   policy code
    offset  6  u32   chunk size
    offset 10  f64   time noted (unix seconds)
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from typing import Iterator, cast

from rocksdict import Options, Rdict

from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.errors import FormatError
from chunkstore.placement.keys import ChunkRef
from chunkstore.protection.policy import PolicyCode

NEEDS_REPAIR = 1
DELETED = 2
ABANDONED = 3
_VALUE = struct.Struct(">BB4sId")


@dataclass(frozen=True)
class RepairEntry:
    ref: ChunkRef
    kind: int
    noted_at: float


class RepairLog:
    """Thread-safe (rocksdict) set of chunks needing repair or leftover-piece cleanup."""

    def __init__(self, path: str | os.PathLike, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._sync_lock = threading.Lock()   # held by the one thread syncing
        self._seq_lock = threading.Lock()    # guards the two counters below
        self._written = 0                    # notes written so far
        self._synced = 0                     # notes covered by a finished sync
        self.syncs = 0                       # syncs made (group commit: <= notes)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_max_open_files(16)
        opts.set_keep_log_file_num(2)
        opts.set_write_buffer_size(1 << 20)
        self._db = Rdict(os.fspath(path), opts)

    def note(self, ref: ChunkRef, kind: int = NEEDS_REPAIR) -> None:
        """Record that a chunk needs repair (kind NEEDS_REPAIR) or was deleted (DELETED).

        A DELETED entry is never downgraded to NEEDS_REPAIR (repair must not resurrect it).
        Returns once the entry is synced to disk (group commit, see the module docstring).
        """
        if kind == NEEDS_REPAIR:
            old = self._db.get(ref.key)
            if old is not None and old[1] == DELETED:
                return
        self._db[ref.key] = _VALUE.pack(1, kind, ref.policy.to_bytes(), ref.size,
                                        self._clock.time())
        with self._seq_lock:  # counted once written: a sync begun after this covers it
            self._written += 1
            mine = self._written
        self._commit(mine)

    def _commit(self, mine: int) -> None:
        """Wait until a sync covers note number ``mine``, making one if none does."""
        while True:
            with self._seq_lock:
                if self._synced >= mine:
                    return
            with self._sync_lock:
                with self._seq_lock:
                    if self._synced >= mine:
                        return  # the sync we waited for covered this note
                    upto = self._written
                self._flush_wal()
                with self._seq_lock:
                    self._synced = max(self._synced, upto)
                    self.syncs += 1

    def _flush_wal(self) -> None:
        self._db.flush_wal(True)

    def get(self, key: bytes) -> RepairEntry | None:
        raw = self._db.get(key)
        return None if raw is None else _decode(key, raw)

    def clear(self, key: bytes) -> None:
        self._db.delete(key)

    def entries(self) -> Iterator[RepairEntry]:
        for key, raw in self._db.items():  # raw mode: bytes keys and values
            try:
                yield _decode(cast(bytes, key), cast(bytes, raw))
            except FormatError:
                continue

    def counts(self, limit: int | None = None) -> dict[str, int]:
        """How many chunks the log names as needing repair (pieces the sweep must complete)
        and as deleted with pieces left, and when the oldest chunk needing repair was noted
        (``oldest_needs_repair``: unix seconds, 0 if none), reading at most ``limit`` entries."""
        counts = {NEEDS_REPAIR: 0, DELETED: 0}
        oldest: float | None = None
        for n, entry in enumerate(self.entries()):
            if limit is not None and n >= limit:
                break
            counts[entry.kind] = counts.get(entry.kind, 0) + 1
            if entry.kind == NEEDS_REPAIR and (oldest is None or entry.noted_at < oldest):
                oldest = entry.noted_at
        return {"needs_repair": counts[NEEDS_REPAIR], "deleted": counts[DELETED],
                "oldest_needs_repair": 0 if oldest is None else int(oldest)}

    def __len__(self) -> int:
        return sum(1 for _ in self._db.keys())

    def close(self) -> None:
        self._db.close()


def _decode(key: bytes, raw: bytes) -> RepairEntry:
    if len(raw) != _VALUE.size or raw[0] != 1 or len(key) != 20:
        raise FormatError("bad repair log entry")
    _, kind, pcode, size, t = _VALUE.unpack(raw)
    return RepairEntry(ChunkRef(key, size, PolicyCode.from_bytes(pcode)), kind, t)
