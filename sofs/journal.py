"""A volume's metadata journal in the RING: every acknowledged metadata commit, replayable.

Checkpoints (:mod:`sofs.metacheckpoint`) copy the whole metadata database into the RING every
few minutes; between two of them, the metadata of a connector that loses its host would be
lost with it. The journal closes that gap: each group of commits that a mount is about to
acknowledge (close of a written file, fsync, rename, unlink, mkdir, setattr: every caller of
:meth:`sofs.metadata.MetaStore.make_durable`) is appended here *before* the answer goes out,
and another host that takes the volume over restores the newest checkpoint and replays the
journal written after it (:func:`replay`), so nothing acknowledged is lost.

Where entries live
------------------
An entry is a volume root record (:mod:`chunkstore.roots`: small, versioned, written to a
majority of ``ROOT_WIDTH`` disks, found by asking every disk) under a *slot id* derived from
the volume and ``n mod SLOTS``; its seq is ``token << 32 | n``, where ``token`` is the fencing
token of the volume lease the writer holds (:mod:`chunkstore.authority.volumelease`) and ``n``
counts the entries written under that token from 1. So:

* a writer that lost its lease cannot add entries: the storage nodes refuse every root-record
  write of a connection whose token is older than the volume's newest (``StaleEpoch``);
* entries of a newer token always replace older ones in a slot (higher seq), and a reader
  asking for entry ``(token, n)`` accepts only that exact seq, so an old writer's stray entry
  is never mistaken for a new one;
* slots are reused: the journal holds at most ``SLOTS`` entries after the newest checkpoint.
  Each checkpoint records the journal position at the moment its snapshot was taken
  (:class:`JournalPosition`, in the manifest); entries before it are no longer needed (the
  checkpoint is the journal's trim point) and are overwritten as the journal wraps. A writer
  that would overwrite an entry the newest checkpoint still needs refuses instead
  (:class:`JournalFull`): the mount then writes a checkpoint first.

An entry's body (at most ``ROOT_MAX_BODY`` bytes, checksummed by the disks and by the root
record's own checksum) is ``magic "SOFSJRN1", volume id 16 B, token u64, n u64, part u16,
parts u16, then bytes of a zstd frame``. The frame holds one *group*: the final value of every
key the group's commits wrote (``u32 key length, key, i32 value length or -1 for a delete,
value``...). A group larger than one entry is cut into ``parts`` consecutive entries; replay
applies a group as one atomic rocksdb batch, only when all its parts are there (an incomplete
last group was never acknowledged).

Replaying entries that the checkpoint already includes is harmless: a group's writes are final
values, so re-applying commits that are older than the snapshot's own state and then every
newer commit in order ends in the same state.
"""

from __future__ import annotations

import struct
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import blake3
import zstandard

from chunkstore import errors as cerr
from chunkstore.api import ChunkStore
from chunkstore.protection.policy import Protection
from chunkstore.roots import ROOT_MAX_BODY, is_log_record

from .errors import JournalError, JournalFull, VolumeFenced

__all__ = ["SLOTS", "JournalPosition", "JournalWriter", "ReplayResult", "replay",
           "slot_id", "width_for", "is_journal_id", "encode_group", "decode_group", "erase", "JournalError",
           "JournalFull"]

SLOTS = 8192                # entries the journal can hold after the newest checkpoint
DEFAULT_WIDTH = 5           # disks per entry unless the volume's protection says (width_for)
MAX_N = (1 << 32) - 1       # entries per token
MAX_TOKEN = (1 << 31) - 1   # so that token << 32 | n fits a root record's seq
MAGIC = b"SOFSJRN1"
_HEAD = struct.Struct(">8s16sQQHHQQ")
PART_SIZE = ROOT_MAX_BODY - _HEAD.size - 64   # bytes of the zstd frame per entry
_KEY = struct.Struct(">I")
_VALUE = struct.Struct(">i")
_SLOT_CONTEXT = b"sofs-journal-slot\0"
ZSTD_LEVEL = 3
MAX_GROUP = 1 << 30         # a group that decompresses to more is refused on replay

Writes = dict[bytes, "bytes | None"]
Commits = tuple[int, int]   # the first and last commit numbers (MetaStore's) a group holds


@dataclass(frozen=True)
class JournalPosition:
    """Where a volume's journal stands: ``next`` is the number of the next entry written under
    fencing token ``token`` (entries from ``next`` on are not in the checkpoint that records
    this position)."""

    token: int
    next: int
    commit: int = 0     # the last commit (MetaStore's number) the checkpoint's snapshot holds
    width: int = DEFAULT_WIDTH  # disks per entry (part of the slots' ids)

    def to_json(self) -> dict[str, int]:
        return {"token": self.token, "next": self.next, "commit": self.commit,
                "width": self.width}

    @classmethod
    def from_json(cls, doc: object) -> JournalPosition | None:
        """None for anything that is not a position (a checkpoint written without journal)."""
        if not isinstance(doc, dict):
            return None
        token, nxt, commit = doc.get("token"), doc.get("next"), doc.get("commit", 0)
        width = doc.get("width", DEFAULT_WIDTH)
        values = (token, nxt, commit, width)
        if not (isinstance(token, int) and isinstance(nxt, int) and isinstance(commit, int)
                and isinstance(width, int)) or any(isinstance(v, bool) for v in values) \
                or not 0 < token <= MAX_TOKEN or not 0 < nxt <= MAX_N or commit < 0 \
                or not 1 <= width <= 15:
            return None
        return cls(token, nxt, commit, width)


def slot_id(volume_uuid: str, n: int, width: int = DEFAULT_WIDTH) -> bytes:
    """The 16-byte record id of the slot that holds entry N of the volume's journal, written to
    WIDTH disks. Its version nibble and variant bits are zero, so it is never a volume's UUID
    (:func:`is_journal_id`); the low nibble of its version byte is WIDTH
    (:func:`chunkstore.roots.record_width`)."""
    if not 1 <= width <= 15:
        raise JournalError(f"a journal is written to 1..15 disks, not {width}")
    vid = uuid.UUID(volume_uuid).bytes
    raw = bytearray(blake3.blake3(_SLOT_CONTEXT + vid + struct.pack(">Q", n % SLOTS)).digest(16))
    raw[6] = width
    raw[8] &= 0x3F
    return bytes(raw)


def width_for(protection: Protection) -> int:
    """The width of a volume's journal: its small-object policy's copies (cos2: 3 disks,
    acknowledged on a majority, 2), so that an entry is protected like the volume's small
    chunks, the checkpoint's manifest among them."""
    return protection.small.copies


def is_journal_id(record_id: bytes) -> bool:
    """Whether a root record id is a journal slot's (not a volume's: volumes have UUID4s);
    the disks write these in place (:func:`chunkstore.roots.is_log_record`)."""
    return is_log_record(record_id)


def entry_seq(token: int, n: int) -> int:
    return token << 32 | n


# --- groups ------------------------------------------------------------------------------------

def encode_group(writes: Writes) -> bytes:
    """The zstd frame of one group of writes (final values; None: deleted)."""
    out = bytearray()
    for key, value in writes.items():
        out += _KEY.pack(len(key)) + key
        if value is None:
            out += _VALUE.pack(-1)
        else:
            out += _VALUE.pack(len(value)) + value
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compress(bytes(out))


def decode_group(frame: bytes) -> Writes:
    """The writes of a group; JournalError if the bytes are not one."""
    try:
        raw = zstandard.ZstdDecompressor().decompress(frame, max_output_size=MAX_GROUP)
    except zstandard.ZstdError as e:
        raise JournalError(f"a journal group does not decompress: {e}") from e
    writes: Writes = {}
    at = 0
    try:
        while at < len(raw):
            (klen,) = _KEY.unpack_from(raw, at)
            at += _KEY.size
            key = raw[at:at + klen]
            at += klen
            (vlen,) = _VALUE.unpack_from(raw, at)
            at += _VALUE.size
            if vlen < -1 or at + max(vlen, 0) > len(raw) or len(key) != klen:
                raise JournalError("a journal group is cut short")
            writes[key] = None if vlen == -1 else raw[at:at + vlen]
            at += max(vlen, 0)
    except struct.error as e:
        raise JournalError(f"a journal group is cut short: {e}") from e
    return writes


def merge(groups: Iterable[Iterable[tuple[bytes, bytes | None]]]) -> Writes:
    """The final values of a sequence of commits' writes, in commit order."""
    out: Writes = {}
    for writes in groups:
        for key, value in writes:
            out[key] = value
    return out


def _entry(volume_id: bytes, token: int, n: int, part: int, parts: int, commits: Commits,
           chunk: bytes) -> bytes:
    return _HEAD.pack(MAGIC, volume_id, token, n, part, parts, *commits) + chunk


def _parse_entry(body: bytes, volume_id: bytes, token: int, n: int
                 ) -> tuple[int, int, Commits, bytes]:
    """(part, parts, commit range, frame bytes) of entry N; JournalError if it is not that
    entry."""
    if len(body) < _HEAD.size:
        raise JournalError(f"journal entry {token}/{n} is too short")
    magic, vid, tok, num, part, parts, first, last = _HEAD.unpack_from(body)
    if magic != MAGIC or vid != volume_id or tok != token or num != n:
        raise JournalError(f"slot of journal entry {token}/{n} holds something else")
    if not 0 <= part < parts:
        raise JournalError(f"journal entry {token}/{n} has part {part} of {parts}")
    return part, parts, (first, last), body[_HEAD.size:]


# --- writing ------------------------------------------------------------------------------------

class JournalWriter:
    """Appends groups to one volume's journal under one fencing token (one writer per lease).

    ``append`` is called by one thread at a time (the leader of a
    :meth:`~sofs.metadata.MetaStore.make_durable` round); :meth:`position` and
    :meth:`trimmed_to` may be called from others."""

    def __init__(self, store: ChunkStore, volume_uuid: str, token: int, *, start: int = 1,
                 slots: int = SLOTS, width: int = DEFAULT_WIDTH) -> None:
        if not 0 < token <= MAX_TOKEN:
            raise JournalError(f"a journal needs a fencing token in 1..{MAX_TOKEN}, not {token}")
        self.store = store
        self.volume_uuid = volume_uuid
        self.volume_id = uuid.UUID(volume_uuid).bytes
        self.token = token
        self.slots = max(2, min(slots, SLOTS))
        self.width = width
        slot_id(volume_uuid, 0, width)  # JournalError for a width no slot id can carry
        self._lock = threading.Lock()
        self._next = start
        self._trim = start      # the position the newest checkpoint recorded
        self.entries = 0        # written by this writer
        self.groups = 0
        self.bytes = 0
        self._unfinished: tuple[int, list[bytes]] | None = None  # a group that failed

    def position(self) -> JournalPosition:
        """The next entry's number: a group that failed and waits to be written again counts
        as not written (a checkpoint taken now replays it, harmlessly)."""
        with self._lock:
            return JournalPosition(self.token, self._next, width=self.width)

    def trimmed_to(self, position: JournalPosition) -> None:
        """A checkpoint recording POSITION is now the newest: entries before it may go."""
        if position.token == self.token:
            with self._lock:
                self._trim = max(self._trim, position.next)

    def backlog(self) -> int:
        """Entries written since the newest checkpoint's position."""
        with self._lock:
            return self._next - self._trim

    def append(self, writes: Writes, commits: Commits = (0, 0)) -> int:
        """Write one group (before its commits are acknowledged); the number of entries it
        took. JournalFull when the slots after the newest checkpoint are used up;
        VolumeFenced when the nodes hold a newer token (another connector has the volume);
        JournalError when the RING did not take it (nothing is acknowledged; the caller
        keeps the group's commits and passes them again, merged with newer ones, next time).
        COMMITS: the first and last commit numbers the group holds (replay skips a group the
        checkpoint's snapshot already holds whole).

        A group that failed may still have reached some disks: its entries are kept and
        written again byte for byte, at the same numbers, before anything else (a different
        body under the same seq would conflict with those disks, or tie with them on a
        read); WRITES then follow as the next group (re-applying the failed group's commits
        again is harmless: a group holds final values)."""
        if self._unfinished is not None:
            first, bodies = self._unfinished
            self._put_entries(first, bodies)
            self._unfinished = None
            self._advance(first, bodies)
        if not writes:
            return 0
        frame = encode_group(writes)
        chunks = [frame[i:i + PART_SIZE] for i in range(0, len(frame), PART_SIZE)] or [b""]
        with self._lock:
            first = self._next
            if first + len(chunks) - 1 > MAX_N:
                raise JournalFull(f"volume {self.volume_uuid}: journal numbers of fencing "
                                  f"token {self.token} are used up; remount the volume")
            if first + len(chunks) - self._trim > self.slots:
                raise JournalFull(
                    f"volume {self.volume_uuid}: {self._next - self._trim} journal entries "
                    "since the newest checkpoint fill the journal; a checkpoint must be "
                    "written first")
        bodies = [_entry(self.volume_id, self.token, first + part, part, len(chunks), commits,
                         chunk) for part, chunk in enumerate(chunks)]
        try:
            self._put_entries(first, bodies)
        except JournalError:
            self._unfinished = (first, bodies)
            raise
        self._advance(first, bodies)
        return len(chunks)

    def _put_entries(self, first: int, bodies: list[bytes]) -> None:
        for i, body in enumerate(bodies):
            n = first + i
            try:
                self.store.put_root(slot_id(self.volume_uuid, n, self.width),
                                    entry_seq(self.token, n), body)
            except cerr.StaleEpoch as e:
                raise VolumeFenced(f"the storage nodes refused the journal: {e}") from e
            except cerr.StaleRoot as e:  # a newer token wrote this slot: we lost the volume
                raise VolumeFenced(f"a newer writer holds the volume's journal: {e}") from e
            except cerr.ChunkStoreError as e:
                raise JournalError(f"volume {self.volume_uuid}: journal entry "
                                   f"{self.token}/{n} was not stored: {e}") from e

    def _advance(self, first: int, bodies: list[bytes]) -> None:
        with self._lock:
            self._next = first + len(bodies)
            self.entries += len(bodies)
            self.groups += 1
            self.bytes += sum(len(b) for b in bodies)

    @property
    def in_flight(self) -> bool:
        """Whether a group that failed waits to be written again (its numbers are taken)."""
        return self._unfinished is not None


def erase(store: ChunkStore, volume_uuid: str) -> int:
    """Overwrite every journal slot of a deleted volume that the store holds (whatever width
    it was written with) with an empty record of the highest seq (the journal names its
    files: patient data), so that nothing can be written there again; how many.
    ChunkStoreError if it could not be done now."""
    def base(record_id: bytes) -> bytes:
        return record_id[:6] + b"\0" + record_id[7:]

    held = {base(rid): (rid, seq) for rid, seq in store.list_roots().items()
            if is_journal_id(rid)}
    erased = 0
    for n in range(SLOTS):
        found = held.get(base(slot_id(volume_uuid, n)))
        if found is not None and found[1] < entry_seq(MAX_TOKEN, MAX_N):
            store.put_root(found[0], entry_seq(MAX_TOKEN, MAX_N), b"")
            erased += 1
    return erased


# --- reading ------------------------------------------------------------------------------------

@dataclass
class ReplayResult:
    """What :func:`replay` applied: from ``start`` up to (not including) ``end``."""

    start: JournalPosition | None
    end: JournalPosition | None
    groups: int = 0
    entries: int = 0
    keys: int = 0
    dropped_parts: int = 0   # of an incomplete last group (never acknowledged)
    skipped: int = 0         # groups the checkpoint's snapshot already held


def read_groups(store: ChunkStore, volume_uuid: str, start: JournalPosition,
                result: ReplayResult) -> Iterator[tuple[Writes, Commits]]:
    """The complete groups of the journal from START on, in order, with their commit ranges;
    RESULT counts them and ends at the first entry that is not there. JournalError if an
    entry cannot be read, or the store cannot tell whether one is there."""
    vid = uuid.UUID(volume_uuid).bytes
    n = start.next
    parts: list[bytes] = []
    expected = 0
    commits: Commits = (0, 0)
    while n <= MAX_N:
        want = entry_seq(start.token, n)
        try:
            rec = store.get_root_certain(slot_id(volume_uuid, n, start.width))
        except cerr.ChunkStoreError as e:
            raise JournalError(f"volume {volume_uuid}: journal entry {start.token}/{n} "
                               f"cannot be read: {e}") from e
        if rec is None or rec.seq < want:
            break  # the end of the journal
        if rec.seq > want:
            if rec.seq >> 32 == start.token:
                raise JournalError(f"volume {volume_uuid}: journal entry {start.token}/{n} was "
                                   "overwritten: the journal wrapped past this checkpoint")
            break  # a newer writer reused the slot after this journal ended
        part, nparts, got, chunk = _parse_entry(rec.body, vid, start.token, n)
        if part != len(parts) or (parts and (nparts != expected or got != commits)):
            raise JournalError(f"volume {volume_uuid}: journal entry {start.token}/{n} is part "
                               f"{part} of {nparts}, expected part {len(parts)}")
        parts.append(chunk)
        expected, commits = nparts, got
        n += 1
        if len(parts) == nparts:
            result.entries += nparts
            result.groups += 1
            writes = decode_group(b"".join(parts))
            result.keys += len(writes)
            parts = []
            result.end = JournalPosition(start.token, n, width=start.width)
            yield writes, commits
    result.dropped_parts = len(parts)


def replay(store: ChunkStore, volume_uuid: str, start: JournalPosition | None,
           apply: Callable[[Writes], None]) -> ReplayResult:
    """Apply every complete group of the journal from START (a checkpoint's position) on, in
    order, with APPLY (one atomic batch each), except those the checkpoint's snapshot holds
    whole (their last commit is at or before START.commit: applying one again would undo a
    later commit the snapshot holds). Nothing to do for a checkpoint without a position."""
    result = ReplayResult(start=start, end=start)
    if start is None:
        return result
    for writes, (_first, last) in read_groups(store, volume_uuid, start, result):
        if start.commit and last <= start.commit:
            result.skipped += 1
            continue
        apply(writes)
    return result
