"""The repair log: chunks known to need attention, kept in DATA_DIR/repairlog (rocksdict).

Puts that reach only the write quorum, reads that met a missing or corrupt piece, and deletes
that could not reach every owner note the chunk here; :mod:`chunkstore.healing.sweep` works through
the log (besides walking every piece) and clears entries it has settled. The log is advisory:
writes are not fsynced, since a full repair sweep finds the same problems anyway.

Key: chunk key (20 B). Value, version 1, 18 bytes, big-endian::

    offset  0  u8    version (1)
    offset  1  u8    kind: 1 = needs repair, 2 = deleted (pieces left on unreachable disks)
    offset  2  4 B   policy code
    offset  6  u32   chunk size
    offset 10  f64   time noted (unix seconds)
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from typing import Iterator, cast

from rocksdict import Options, Rdict

from chunkstore.errors import FormatError
from chunkstore.placement.keys import ChunkRef
from chunkstore.protection.policy import PolicyCode

NEEDS_REPAIR = 1
DELETED = 2
_VALUE = struct.Struct(">BB4sId")


@dataclass(frozen=True)
class RepairEntry:
    ref: ChunkRef
    kind: int
    noted_at: float


class RepairLog:
    """Thread-safe (rocksdict) set of chunks needing repair or leftover-piece cleanup."""

    def __init__(self, path: str | os.PathLike) -> None:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_max_open_files(16)
        opts.set_keep_log_file_num(2)
        opts.set_write_buffer_size(1 << 20)
        self._db = Rdict(os.fspath(path), opts)

    def note(self, ref: ChunkRef, kind: int = NEEDS_REPAIR) -> None:
        """Record that a chunk needs repair (kind NEEDS_REPAIR) or was deleted (DELETED).

        A DELETED entry is never downgraded to NEEDS_REPAIR (repair must not resurrect it).
        """
        if kind == NEEDS_REPAIR:
            old = self._db.get(ref.key)
            if old is not None and old[1] == DELETED:
                return
        self._db[ref.key] = _VALUE.pack(1, kind, ref.policy.to_bytes(), ref.size, time.time())

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
        """How many chunks the log names as needing repair and as deleted with pieces left
        (reading at most ``limit`` entries)."""
        counts = {NEEDS_REPAIR: 0, DELETED: 0}
        for n, entry in enumerate(self.entries()):
            if limit is not None and n >= limit:
                break
            counts[entry.kind] = counts.get(entry.kind, 0) + 1
        return {"needs_repair": counts[NEEDS_REPAIR], "deleted": counts[DELETED]}

    def __len__(self) -> int:
        return sum(1 for _ in self._db.keys())

    def close(self) -> None:
        self._db.close()


def _decode(key: bytes, raw: bytes) -> RepairEntry:
    if len(raw) != _VALUE.size or raw[0] != 1 or len(key) != 20:
        raise FormatError("bad repair log entry")
    _, kind, pcode, size, t = _VALUE.unpack(raw)
    return RepairEntry(ChunkRef(key, size, PolicyCode.from_bytes(pcode)), kind, t)
