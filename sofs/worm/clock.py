"""The compliance clock of a WORM volume: the time retention is judged by, kept by sofs.

Retention must not expire early because someone set the host's clock forward. So a volume
with WORM domains judges "retain until" against its own clock, not the system's:

* **initialised once**, from the system clock, the first time the volume's clock is opened;
* **advancing with elapsed monotonic time** (:meth:`Clock.monotonic` of the injected clock),
  so a step of the wall clock, either way, moves nothing at once;
* **catching up** with the system clock when it is behind it, by at most ``CATCH_UP_RATE``
  (7 days per 365 days) of the time elapsed: time the volume spent unmounted, or a wall clock
  moved forward on purpose, is made up slowly (a year-long forward jump needs 52 years);
* **never going backwards**, across restarts and crashes too;
* **persisted in the RING**, as a root record of its own (:func:`clock_record_id`: a 16-byte
  id derived from the volume's UUID, so it never meets the volume's checkpoint record), so it
  survives the loss of the connector host and a restore of the volume elsewhere.

Crashes. A record holds ``at`` (the clock's running value when it was written) and
``lease``, the highest value this process may show before it writes a new record. After a
restart the clock runs on from ``at`` (the time since that write is not counted: the safe
side), but it never shows less than ``lease``, since anything up to ``lease`` may have been
shown before the crash. The lease is extended (``lease`` = running value + ``lease_s``) when
the running value comes within ``margin`` of it, and ``at`` is always the running value, never
the shown one: so no pattern of crashes and restarts pushes the clock forward by more than
one lease in all (a restarted mount shows the same ``lease`` until real time catches up).
When the record cannot be written, the clock stops at ``lease`` (nothing expires meanwhile)
and tries again at the next reading.

Record body (JSON, in the root record)::

    {"format": "sofs-compliance-clock", "version": 1, "volume": UUID,
     "initialised_ns": N, "at_ns": N, "lease_ns": N}
"""

from __future__ import annotations

import json
import logging
import threading
import uuid as uuidlib
from dataclasses import dataclass

import blake3

from chunkstore import errors as cerr
from chunkstore.api import ChunkStore
from chunkstore.clock import SYSTEM_CLOCK, Clock

from ..errors import DataUnavailable

log = logging.getLogger("sofs.worm.clock")

CATCH_UP_RATE = 7 / 365  # at most 7 days of catching up with the system clock per 365 days
LEASE_S = 60.0  # how far ahead of the clock's value a record lets it go
MARGIN_S = 15.0  # a new record is written this long before the lease runs out
RECORD_FORMAT = "sofs-compliance-clock"
NS = 1_000_000_000


def clock_record_id(volume_uuid: str) -> bytes:
    """The root-record id of a volume's compliance clock (16 bytes)."""
    return blake3.blake3(b"sofs-compliance-clock\0" + uuidlib.UUID(volume_uuid).bytes).digest(16)


@dataclass(frozen=True)
class ClockRecord:
    """What the RING keeps of a compliance clock (module docstring)."""

    volume: str
    initialised_ns: int
    at_ns: int
    lease_ns: int

    def to_body(self) -> bytes:
        return json.dumps({"format": RECORD_FORMAT, "version": 1, "volume": self.volume,
                           "initialised_ns": self.initialised_ns, "at_ns": self.at_ns,
                           "lease_ns": self.lease_ns}, sort_keys=True).encode()

    @classmethod
    def from_body(cls, body: bytes) -> "ClockRecord":
        try:
            doc = json.loads(body)
            if doc.get("format") != RECORD_FORMAT or doc.get("version") != 1:
                raise ValueError("not a compliance clock record of version 1")
            rec = cls(volume=str(doc["volume"]), initialised_ns=int(doc["initialised_ns"]),
                      at_ns=int(doc["at_ns"]), lease_ns=int(doc["lease_ns"]))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise DataUnavailable(f"the compliance clock's record is damaged: {e}") from None
        if not rec.initialised_ns <= rec.at_ns <= rec.lease_ns:
            raise DataUnavailable("the compliance clock's record is damaged: its times are "
                                  "out of order")
        return rec


class ComplianceClock:
    """A volume's compliance clock (module docstring). Use :meth:`open`; thread-safe."""

    def __init__(self, store: ChunkStore, volume_uuid: str, record: ClockRecord, seq: int, *,
                 clock: Clock = SYSTEM_CLOCK, lease_s: float = LEASE_S,
                 margin_s: float = MARGIN_S) -> None:
        self._store = store
        self._id = clock_record_id(volume_uuid)
        self._clock = clock
        self._lease_ns = int(lease_s * NS)
        self._margin_ns = int(margin_s * NS)
        self._lock = threading.Lock()
        self.record = record
        self._seq = seq
        self._t = record.at_ns  # the running value; shown: max(it, floor), at most the lease
        self._floor = record.lease_ns  # what may have been shown before this process
        self._mono = clock.monotonic()

    @classmethod
    def open(cls, store: ChunkStore, volume_uuid: str, *, clock: Clock = SYSTEM_CLOCK,
             lease_s: float = LEASE_S, margin_s: float = MARGIN_S) -> "ComplianceClock":
        """The volume's clock as the RING keeps it, or a new one set from the system clock
        (written at once). DataUnavailable if the RING cannot say which."""
        rid = clock_record_id(volume_uuid)
        try:
            root = store.get_root(rid)
        except cerr.ChunkStoreError as e:
            raise DataUnavailable(f"cannot read the compliance clock of volume {volume_uuid}: "
                                  f"{e}") from e
        if root is not None:
            rec = ClockRecord.from_body(root.body)
            if rec.volume != volume_uuid:
                raise DataUnavailable(f"the compliance clock record found for volume "
                                      f"{volume_uuid} belongs to volume {rec.volume}")
            return cls(store, volume_uuid, rec, root.seq, clock=clock, lease_s=lease_s,
                       margin_s=margin_s)
        now = int(clock.time() * NS)
        rec = ClockRecord(volume_uuid, now, now, now)
        made = cls(store, volume_uuid, rec, 0, clock=clock, lease_s=lease_s, margin_s=margin_s)
        if not made._extend_lease():
            raise DataUnavailable(f"cannot write the new compliance clock of volume "
                                  f"{volume_uuid} into the RING")
        log.info("compliance clock of volume %s initialised from the system clock", volume_uuid)
        return made

    def now_ns(self) -> int:
        """The clock's value now (unix nanoseconds), never less than any value shown before."""
        with self._lock:
            self._advance()
            if self._t + self._margin_ns >= self.record.lease_ns:
                self._extend_lease()
            return min(max(self._t, self._floor), self.record.lease_ns)

    def now(self) -> float:
        """:meth:`now_ns` in seconds."""
        return self.now_ns() / NS

    def _advance(self) -> None:
        mono = self._clock.monotonic()
        dt = max(int((mono - self._mono) * NS), 0)
        self._mono = mono
        self._t += dt
        behind = int(self._clock.time() * NS) - self._t
        if behind > 0:
            self._t += min(behind, int(dt * CATCH_UP_RATE))

    def _extend_lease(self) -> bool:
        """Write a record letting the clock go ``lease_s`` past its running value; False
        (logged) when the RING does not take it: the clock then stops at the old lease."""
        return self._write(self._t, max(self._t + self._lease_ns, self.record.lease_ns))

    def _write(self, at: int, lease: int) -> bool:
        rec = ClockRecord(self.record.volume, self.record.initialised_ns, at, lease)
        for seq in (self._seq + 1, self._seq + 2):  # the second: a half-written first try
            try:
                self._store.put_root(self._id, seq, rec.to_body())
            except cerr.KeyConflict:
                self._seq = seq
                continue
            except cerr.ChunkStoreError as e:
                log.warning("compliance clock of volume %s: cannot write its record to the "
                            "RING (%s); it stops at %d ns until it can", rec.volume, e,
                            self.record.lease_ns)
                return False
            self._seq, self.record = seq, rec
            return True
        return False

    def persist(self) -> bool:
        """Record the running value now, the lease unchanged (at a clean unmount): True if
        the RING took it. The next open runs on from here."""
        with self._lock:
            self._advance()
            return self._write(self._t, self.record.lease_ns)
