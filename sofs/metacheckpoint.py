"""Checkpoints of a volume's metadata in the RING, and a volume restored from them.

A volume's metadata (its rocksdict database, :mod:`sofs.metadata`) lives on the host that mounts
it; the file data lives in the RING. Losing that host's disk would lose every file's map of
chunks. So the metadata is also checkpointed into the RING itself, where it is protected like
file data (replicated or erasure coded, checksummed, rebuilt and scrubbed), and a volume can be
restored on a fresh host knowing only the cluster.

A checkpoint
------------
1. rocksdb writes a consistent checkpoint of the open database beside it (hard links to the
   immutable SST files; consistent because every filesystem operation is one write batch).
2. Each file of it is cut into pieces of up to 4 MiB; each piece becomes a chunk whose payload
   is ``u8 2, volume id (16 B), zstd frame``. The leading 2 keeps these keys apart from file
   data chunks (codec 0/1, :mod:`sofs.blocks`), so the volume's garbage collector never sees
   them. SST files never change, so a piece the previous checkpoint already stored has the same
   key and is not sent again: checkpoints after the first cost only what changed.
3. The *manifest* lists every file (name, size, blake3) with its chunk refs, the volume's
   configuration, the sequence number and the time; it is stored as one chunk
   (``u8 3, volume id, zstd JSON``).
4. The volume's *root record* (:mod:`chunkstore.roots`: one small versioned record per volume,
   kept on several disks, found by asking every disk) is advanced to the next sequence
   number, naming the new manifest and the previous ones kept (``KEEP`` in all). Each copy of
   the metadata remembers the sequence number it last wrote or was restored at
   (``checkpoint.json`` in the volume's directory); if the root record has moved past it,
   another host has written checkpoints of this volume (it is mounted elsewhere, or was
   restored there) and the checkpoint is refused (:class:`CheckpointConflict`) unless the
   administrator takes over. Two writers racing for the same number are refused by the disks
   (``StaleRoot``). So two hosts never silently interleave checkpoints of one volume.
5. With a journal (:mod:`sofs.journal`: a mount holding its volume's write lease), the
   manifest also records the journal's position as the snapshot began; a restore replays the
   journal from there, so it brings back every acknowledged change, not only the
   checkpoint's. Once the root record names the new checkpoint, the journal entries before
   its position are no longer needed (the checkpoint is the journal's trim point).
6. Pieces of a manifest that falls out of the kept list are deleted unless a kept manifest uses
   them; a crash before that only leaves garbage, never a hole.

The stored forms (payloads, manifest, root body, state file) are the dataclasses of
:mod:`sofs.checkpoint_records`; the errors (:class:`CheckpointError` and its kinds) are in
:mod:`sofs.errors` and importable from here. Dates and durations come from the
:class:`~chunkstore.clock.Clock` a :class:`Checkpointer` is given.

Restoring reads the newest (or an older kept) manifest, fetches and verifies every file
(blake3 and size, on top of the RING's own checksums) into a new directory, and checks that
rocksdb opens it. The result is the volume as of that checkpoint: files written after it are
missing (their chunks stay unreferenced), and a file deleted after it whose chunks were already
collected reads with errors (``sofsctl fsck`` lists them).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import blake3

from chunkstore import errors as cerr
from chunkstore.api import ChunkStore
from chunkstore.atomicfile import atomic_write, fsync_dir
from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.placement.keys import ChunkRef, chunk_key
from chunkstore.protection.policy import Protection
from chunkstore.roots import RootRecord

from .checkpoint_records import (
    CODEC_MANIFEST,
    CODEC_PIECE,
    FORMAT,
    MAX_MANIFEST,
    CopyState,
    Manifest,
    ManifestFile,
    RootBody,
    parse_ref,
    payload,
    unpayload,
)
from .errors import CheckpointConflict, CheckpointError, NoCheckpoint
from .journal import JournalPosition, JournalWriter, ReplayResult, is_journal_id, replay
from .metadata import MetaStore
from .volume import VolumeConfig

__all__ = ["Checkpointer", "CheckpointInfo", "CheckpointError", "CheckpointConflict",
           "NoCheckpoint", "VolumeInRing", "check_current", "list_checkpoints",
           "checkpoint_keys", "find_volumes", "restore", "read_state", "write_state", "KEEP",
           "PIECE_SIZE", "STATE_FILE", "FORMAT", "CODEC_PIECE", "CODEC_MANIFEST", "Progress"]

KEEP = 3                    # manifests kept in the root record (the newest first)
PIECE_SIZE = 4 << 20
STATE_FILE = "checkpoint.json"  # in the volume's directory: this copy's CopyState

Progress = Callable[[int, int], None]   # (bytes done, bytes total)


@dataclass
class CheckpointInfo:
    """What a checkpoint holds (from its manifest) and, when just written, what it cost."""

    volume: str
    volume_uuid: str
    seq: int
    created: float
    files: int
    bytes: int                  # size of the database files
    manifest: str               # the manifest's ChunkRef, hex
    host: str = ""
    sent_bytes: int = 0         # payload bytes sent to the RING by this checkpoint
    reused_pieces: int = 0      # pieces the previous checkpoint had already stored
    took: float = 0.0
    deleted_pieces: int = 0     # pieces of dropped manifests deleted
    kept: list[str] = field(default_factory=list)   # manifests in the root record
    journal: str = ""           # the journal position it records ("token/next"; "": none)
    replayed_groups: int = 0    # restore: journal groups applied after the checkpoint (not
    #                             those its snapshot held whole)
    replayed_entries: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Sent:
    """What storing a checkpoint's files has done so far."""

    done: int = 0      # bytes of the files read
    sent: int = 0      # payload bytes sent to the RING
    reused: int = 0    # pieces the previous checkpoint had already stored


def _volume_id(config: VolumeConfig) -> bytes:
    return uuid.UUID(config.uuid).bytes


def _root_of(store: ChunkStore, volume_id: bytes) -> tuple[RootRecord | None, list[str]]:
    """The volume's root record and its kept manifests (newest first; none without one)."""
    root = store.get_root(volume_id)
    return root, list(RootBody.decode(root.body).manifests) if root is not None else []


def _load_manifest(store: ChunkStore, volume_id: bytes, hexref: str) -> Manifest:
    return Manifest.decode(unpayload(CODEC_MANIFEST, volume_id, store.get(parse_ref(hexref)),
                                     MAX_MANIFEST))


def _pieces(f: BinaryIO) -> Iterator[bytes]:
    """A file's pieces of PIECE_SIZE (the last shorter); an empty file is one empty piece."""
    piece = f.read(PIECE_SIZE)
    yield piece
    while len(piece) == PIECE_SIZE:
        piece = f.read(PIECE_SIZE)
        if not piece:
            return
        yield piece


# --- this copy's place in the sequence ---------------------------------------------------------

def _state(volume_dir: Path) -> CopyState:
    try:
        return CopyState.decode((Path(volume_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return CopyState()


def read_state(volume_dir: Path) -> int:
    """The root sequence number this copy of the metadata last wrote or was restored at (0:
    none)."""
    return _state(volume_dir).seq


def write_state(volume_dir: Path, seq: int, pending: tuple[int, str] | None = None, *,
                clock: Clock = SYSTEM_CLOCK) -> None:
    """Record SEQ; PENDING (seq, manifest) is a root update under way: if it reached the disks
    but its answer was lost, the next checkpoint recognises it as this copy's own."""
    pending_seq, pending_manifest = pending if pending is not None else (None, None)
    state = CopyState(seq, clock.time(), pending_seq, pending_manifest)
    atomic_write(Path(volume_dir) / STATE_FILE, state.encode())


def _this_copys_seq(volume_dir: Path, root: RootRecord | None, manifests: list[str],
                    clock: Clock = SYSTEM_CLOCK) -> int:
    """This copy's sequence number; a root update of its own whose answer was lost (the
    recorded pending update is what ROOT holds) is adopted and recorded."""
    st = _state(volume_dir)
    mine = st.seq
    if (root is not None and root.seq > mine and st.pending_seq == root.seq
            and manifests and st.pending_manifest == manifests[0]):
        mine = root.seq
        write_state(volume_dir, mine, clock=clock)
    return mine


def _refuse_if_overtaken(store: ChunkStore, config: VolumeConfig, workdir: Path,
                         root: RootRecord | None, mine: int, manifests: list[str],
                         remedy: str) -> None:
    """CheckpointConflict if ROOT is past this copy's number MINE."""
    if root is None or root.seq <= mine:
        return
    try:
        newest = _load_manifest(store, _volume_id(config), manifests[0])
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest.created))
        who = f" (taken {when} on {newest.host or 'an unknown host'})"
    except (CheckpointError, cerr.ChunkStoreError, IndexError):
        who = ""
    raise CheckpointConflict(
        f"volume {config.name}: another host wrote checkpoint {root.seq}{who}, newer than this "
        f"copy's ({mine or 'none'}); the volume is mounted or was restored elsewhere. To use "
        f"that newer state here: move {workdir} away and run sofsctl volume restore "
        f"{config.name}. If this copy is the one to keep, take over: {remedy}")


def check_current(store: ChunkStore, config: VolumeConfig, volume_dir: Path, remedy: str, *,
                  clock: Clock = SYSTEM_CLOCK) -> None:
    """Refuse (CheckpointConflict) a copy of the metadata that another host has overtaken in
    the RING: mounting it would fork the volume. REMEDY is the take-over command to suggest."""
    root, manifests = _root_of(store, _volume_id(config))
    mine = _this_copys_seq(Path(volume_dir), root, manifests, clock)
    _refuse_if_overtaken(store, config, Path(volume_dir), root, mine, manifests, remedy)


# --- writing ------------------------------------------------------------------------------------

class Checkpointer:
    """Writes checkpoints of one open volume (one at a time; thread-safe).

    WORKDIR is the volume's directory: the rocksdb checkpoint is made there (the same
    filesystem as the database, so it is hard links) and this copy's sequence state is kept
    there (:data:`STATE_FILE`). CLOCK dates the checkpoints and times them."""

    def __init__(self, meta: MetaStore, store: ChunkStore, config: VolumeConfig, workdir: Path,
                 *, protection: Protection | None = None, keep: int = KEEP,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.meta = meta
        self.store = store
        self.config = config
        self.workdir = Path(workdir)
        self.protection = protection or config.protection()
        self.keep = max(1, keep)
        self.volume_id = _volume_id(config)
        self._clock = clock
        self._lock = threading.Lock()
        # what a checkpoint killed midway left (the volume is held by this process alone)
        for old in self.workdir.glob(".meta-checkpoint.*") if self.workdir.is_dir() else ():
            shutil.rmtree(old, ignore_errors=True)
        self.last: CheckpointInfo | None = None
        self.last_error: str = ""
        # another host wrote newer checkpoints: this copy must not delete any chunk any more
        # (the other copy may still use it); the mount stops its garbage collector
        self.overtaken = False
        # the volume's journal (sofs.journal): each checkpoint records its position
        self.journal: JournalWriter | None = None

    def write(self, progress: Progress | None = None, take_over: bool = False) -> CheckpointInfo:
        """Write a checkpoint. TAKE_OVER writes it even if another host has written newer ones
        (this copy then becomes the volume's reference)."""
        with self._lock:
            try:
                info = self._write(progress, take_over)
            except Exception as e:
                self.last_error = f"{type(e).__name__}: {e}"
                if isinstance(e, CheckpointConflict):
                    self._overtaken(str(e))
                raise
            self.last, self.last_error = info, ""
            if self.overtaken:  # taken back over
                self.overtaken = False
                self.meta.unfence()
            return info

    def _overtaken(self, why: str) -> None:
        """Another copy is the volume's reference now: this one must change nothing more
        (its metadata is fenced: changes fail with VolumeFenced; its mount stops deleting
        chunks, which the other copy may still use)."""
        self.overtaken = True
        self.meta.fence(why)

    def verify_current(self) -> bool:
        """Between checkpoints: has another host overtaken this copy? (Fences it if so.)
        False when the RING cannot tell now."""
        with self._lock:
            try:
                check_current(self.store, self.config, self.workdir, "--take-over",
                              clock=self._clock)
            except CheckpointConflict as e:
                self.last_error = f"CheckpointConflict: {e}"
                self._overtaken(str(e))
                return True
            except (CheckpointError, cerr.ChunkStoreError):
                return False
            return self.overtaken

    def _write(self, progress: Progress | None, take_over: bool) -> CheckpointInfo:
        t0 = self._clock.monotonic()
        created = self._clock.time()
        root, prev = _root_of(self.store, self.volume_id)
        mine = _this_copys_seq(self.workdir, root, prev, self._clock)
        if not take_over:
            _refuse_if_overtaken(self.store, self.config, self.workdir, root, mine, prev,
                                 f"sofsctl volume checkpoint {self.config.name} --take-over")
            if mine and (root is None or root.seq < mine):
                # the disks holding the record did not answer: writing now would go back
                raise CheckpointError(
                    f"volume {self.config.name}: the RING's record of its checkpoints is "
                    f"{'missing' if root is None else f'at {root.seq}'}, behind this copy's "
                    f"{mine}: disks holding it do not answer. Not written; the next one "
                    "tries again. If the record is lost for good: sofsctl volume checkpoint "
                    f"{self.config.name} --take-over")
        seq = max(root.seq if root is not None else 0, mine) + 1
        known: dict[bytes, str] = {}
        if prev:
            try:
                for hexref in _load_manifest(self.store, self.volume_id, prev[0]).pieces():
                    known[parse_ref(hexref).key] = hexref
            except (CheckpointError, cerr.ChunkStoreError):
                known = {}  # unreadable previous manifest: send everything again
        tmp = self.workdir / f".meta-checkpoint.{os.getpid()}.{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # with nothing committed or appended meanwhile: every commit of the snapshot is in the
        # entries before the position or queued for the ones from it (MetaStore.quiesced)
        with self.meta.quiesced():
            position = None
            if self.journal is not None:
                at = self.journal.position()
                position = JournalPosition(at.token, at.next, self.meta.written, at.width)
            self.meta.checkpoint(tmp)
        sent = _Sent()
        try:
            paths = sorted(p for p in tmp.iterdir() if p.is_file())
            total = sum(p.stat().st_size for p in paths)
            files = tuple(self._store_file(path, known, sent, total, progress) for path in paths)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        manifest = Manifest(seq=seq, created=created, host=socket.gethostname(),
                            volume=self.config, files=files, journal=position)
        mpayload = payload(CODEC_MANIFEST, self.volume_id, manifest.encode())
        mref = self.store.put(mpayload, self.protection).to_bytes().hex()
        sent.sent += len(mpayload)
        kept = [mref] + [m for m in prev if m != mref][: self.keep - 1]
        write_state(self.workdir, mine, pending=(seq, mref), clock=self._clock)
        body = RootBody(self.config.name, self.config.uuid, tuple(kept), created)
        try:
            self.store.put_root(self.volume_id, seq, body.encode())
        except (cerr.StaleRoot, cerr.KeyConflict) as e:  # newer, or the same seq elsewhere
            raise CheckpointConflict(
                f"volume {self.config.name}: another host recorded checkpoint {seq} at the "
                f"same time ({e}); is the volume mounted elsewhere?") from e
        write_state(self.workdir, seq, clock=self._clock)
        if self.journal is not None and position is not None:
            self.journal.trimmed_to(position)
        deleted = self._drop(prev[self.keep - 1:], kept, manifest)
        return CheckpointInfo(
            volume=self.config.name, volume_uuid=self.config.uuid, seq=seq, created=created,
            files=len(files), bytes=total, manifest=mref, host=manifest.host,
            sent_bytes=sent.sent, reused_pieces=sent.reused,
            took=self._clock.monotonic() - t0, deleted_pieces=deleted, kept=kept,
            journal=_where(position))

    def _store_file(self, path: Path, known: dict[bytes, str], sent: _Sent, total: int,
                    progress: Progress | None) -> ManifestFile:
        """Store one database file as pieces (those in KNOWN are not sent again); its
        manifest entry. SENT accumulates bytes done, payload bytes sent, pieces reused."""
        h = blake3.blake3()
        refs, size = [], 0
        with open(path, "rb") as f:
            for piece in _pieces(f):
                h.update(piece)
                size += len(piece)
                data = payload(CODEC_PIECE, self.volume_id, piece)
                hexref = known.get(chunk_key(data))
                if hexref is None:
                    hexref = self.store.put(data, self.protection).to_bytes().hex()
                    sent.sent += len(data)
                else:
                    sent.reused += 1
                refs.append(hexref)
                sent.done += len(piece)
                if progress:
                    progress(sent.done, total)
        return ManifestFile(name=path.name, size=size, blake3=h.hexdigest(), chunks=tuple(refs))

    def _drop(self, dropped: list[str], kept: list[str], newest: Manifest) -> int:
        """Delete the pieces of DROPPED manifests that no KEPT manifest uses; best effort."""
        dropped = [m for m in dropped if m not in kept]
        if not dropped:
            return 0
        keep = newest.pieces() | set(kept)
        try:
            for m in kept[1:]:
                keep |= _load_manifest(self.store, self.volume_id, m).pieces()
        except (CheckpointError, cerr.ChunkStoreError):
            return 0  # cannot tell what is still used: delete nothing
        deleted = 0
        for m in dropped:
            try:
                pieces = _load_manifest(self.store, self.volume_id, m).pieces() | {m}
            except (CheckpointError, cerr.ChunkStoreError):
                pieces = {m}
            for hexref in pieces - keep:
                try:
                    self.store.delete(parse_ref(hexref))
                    deleted += 1
                except cerr.ChunkStoreError:
                    pass  # left behind: garbage, never a hole
        return deleted


# --- reading ------------------------------------------------------------------------------------

def _where(position: JournalPosition | None) -> str:
    return f"{position.token}/{position.next}" if position is not None else ""


def _info(manifest: Manifest, hexref: str, kept: list[str]) -> CheckpointInfo:
    return CheckpointInfo(volume=manifest.volume.name, volume_uuid=manifest.volume.uuid,
                          seq=manifest.seq, created=manifest.created, files=len(manifest.files),
                          bytes=manifest.size, manifest=hexref, host=manifest.host, kept=kept,
                          journal=_where(manifest.journal))


def list_checkpoints(store: ChunkStore, volume_uuid: str) -> list[CheckpointInfo]:
    """The checkpoints the root record keeps, newest first (unreadable ones left out)."""
    vid = uuid.UUID(volume_uuid).bytes
    _, kept = _root_of(store, vid)
    out = []
    for m in kept:
        try:
            out.append(_info(_load_manifest(store, vid, m), m, kept))
        except (CheckpointError, cerr.ChunkStoreError):
            continue
    return out


def checkpoint_refs(store: ChunkStore, volume_uuid: str) -> dict[bytes, ChunkRef]:
    """Chunks of the volume's kept checkpoints (pieces and manifests), by key: referenced,
    though no file of the volume names them."""
    vid = uuid.UUID(volume_uuid).bytes
    _, kept = _root_of(store, vid)
    refs: dict[bytes, ChunkRef] = {}
    for m in kept:
        for ref in [parse_ref(m), *(parse_ref(h) for h in _load_manifest(store, vid, m).pieces())]:
            refs[ref.key] = ref
    return refs


def checkpoint_keys(store: ChunkStore, volume_uuid: str) -> set[bytes]:
    """The keys of :func:`checkpoint_refs`."""
    return set(checkpoint_refs(store, volume_uuid))


@dataclass(frozen=True)
class VolumeInRing:
    """A volume that has checkpoints in the RING (names are unique per data directory only:
    several hosts' volumes may share one)."""

    name: str
    uuid: str
    seq: int
    created: float      # of the newest checkpoint
    host: str           # that took it ("" if its manifest is unreadable)


def find_volumes(store: ChunkStore) -> list[VolumeInRing]:
    """Every volume with a checkpoint in the RING, by name then newest first."""
    out = []
    for vid, _seq in store.list_roots().items():
        if is_journal_id(vid):
            continue
        root = store.get_root(vid)
        if root is None:
            continue
        try:
            body = RootBody.decode(root.body)
        except CheckpointError:
            continue
        if not body.manifests:
            continue
        try:
            host = _load_manifest(store, vid, body.manifests[0]).host
        except (CheckpointError, cerr.ChunkStoreError):
            host = ""
        out.append(VolumeInRing(body.volume, str(uuid.UUID(bytes=vid)), root.seq,
                                body.created, host))
    return sorted(out, key=lambda v: (v.name, -v.created))


def restore(store: ChunkStore, volume_uuid: str, dest: Path, *, which: int = 0,
            progress: Progress | None = None, journal: bool = True,
            clock: Clock = SYSTEM_CLOCK) -> tuple[VolumeConfig, CheckpointInfo]:
    """Write the metadata database of checkpoint WHICH (0: the newest kept) of the volume into
    the new directory DEST, and record in DEST's parent (the volume's directory) that this copy
    continues from the root record's current sequence number; (the volume's config, the
    checkpoint). For the newest checkpoint, with JOURNAL, the journal written after it is
    replayed into the copy (:mod:`sofs.journal`): the result is the volume as of its last
    acknowledged change; the info counts the groups replayed. An older checkpoint comes back
    as it was taken."""
    vid = uuid.UUID(volume_uuid).bytes
    root, kept = _root_of(store, vid)
    if root is None:
        raise NoCheckpoint(f"the RING holds no checkpoint of volume {volume_uuid}")
    if not 0 <= which < len(kept):
        raise NoCheckpoint(f"volume {volume_uuid} has {len(kept)} checkpoints, not {which + 1}")
    manifest = _load_manifest(store, vid, kept[which])
    config = manifest.volume
    if config.uuid != volume_uuid:
        raise CheckpointError("the manifest names another volume")
    dest = Path(dest)
    if dest.exists():
        raise CheckpointError(f"{dest} already exists")
    tmp = dest.with_name(f".{dest.name}.restoring")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    total = manifest.size
    done = 0
    try:
        for f in manifest.files:
            if "/" in f.name or f.name in ("", ".", ".."):
                raise CheckpointError(f"bad file name in manifest: {f.name!r}")
            h = blake3.blake3()
            size = 0
            with open(tmp / f.name, "wb") as out:
                for hexref in f.chunks:
                    data = unpayload(CODEC_PIECE, vid, store.get(parse_ref(hexref)), PIECE_SIZE)
                    h.update(data)
                    out.write(data)
                    size += len(data)
                    done += len(data)
                    if progress:
                        progress(done, total)
                out.flush()
                os.fsync(out.fileno())
            if size != f.size or h.hexdigest() != f.blake3:
                raise CheckpointError(f"{f.name}: restored bytes do not match the manifest")
        fsync_dir(tmp)
        replayed = _replay_into(store, volume_uuid, tmp, manifest.journal) \
            if journal and which == 0 else None
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_state(dest.parent, root.seq, clock=clock)
    info = _info(manifest, kept[which], kept)
    if replayed is not None:
        info.replayed_groups = replayed.groups - replayed.skipped
        info.replayed_entries = replayed.entries
    return config, info


def _replay_into(store: ChunkStore, volume_uuid: str, db: Path,
                 start: JournalPosition | None) -> ReplayResult:
    """Replay the journal from START into the restored database DB (synced, group by group)."""
    if start is None:
        return ReplayResult(start=None, end=None)
    meta = MetaStore(db)
    try:
        return replay(store, volume_uuid, start, meta.apply)
    finally:
        meta.close()
