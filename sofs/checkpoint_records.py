"""The records of a metadata checkpoint (:mod:`sofs.metacheckpoint`) and their stored forms:
the chunk payloads (pieces and manifests), the manifest (:class:`Manifest`, one
:class:`ManifestFile` per database file), the body of the volume's root record
(:class:`RootBody`) and this copy's state file (:class:`CopyState`).

Each record is a frozen dataclass with ``encode``/``decode``; decoding checks every field and
raises :class:`~sofs.errors.CheckpointError` for anything that is not this format. The JSON
written is the same as it always was, so checkpoints already in the RING stay readable.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import blake3
import zstandard

from chunkstore import errors as cerr
from chunkstore.placement.keys import ChunkRef

from .errors import CheckpointError, VolumeError
from .journal import JournalPosition
from .volume import VolumeConfig

FORMAT = 1
ZSTD_LEVEL = 3
CODEC_PIECE = 2
CODEC_MANIFEST = 3
HEADER = 17                 # codec u8, volume id (16 B)
MAX_MANIFEST = 64 << 20     # a manifest larger than this is refused on read


# --- chunk payloads -----------------------------------------------------------------------------

def payload(codec: int, volume_id: bytes, body: bytes) -> bytes:
    """``u8 codec, volume id, zstd frame``: the codec keeps these keys apart from file data
    chunks (codec 0/1, :mod:`sofs.blocks`)."""
    return bytes((codec,)) + volume_id + zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(body)


def unpayload(codec: int, volume_id: bytes, data: bytes, limit: int) -> bytes:
    """The body of a payload of ``codec`` of this volume, at most ``limit`` bytes."""
    if len(data) < HEADER or data[0] != codec:
        raise CheckpointError("not a metadata checkpoint chunk")
    if data[1:HEADER] != volume_id:
        raise CheckpointError("checkpoint chunk of another volume")
    try:
        return zstandard.ZstdDecompressor().decompress(data[HEADER:], max_output_size=limit)
    except zstandard.ZstdError as e:
        raise CheckpointError(f"checkpoint chunk does not decompress: {e}") from e


def parse_ref(hexref: str) -> ChunkRef:
    """A chunk ref as a checkpoint records it (hex)."""
    try:
        return ChunkRef.from_bytes(bytes.fromhex(hexref))
    except (ValueError, cerr.FormatError) as e:
        raise CheckpointError(f"bad chunk ref in checkpoint: {e}") from e


def _get(doc: dict[str, Any], key: str, types: type | tuple[type, ...], what: str) -> Any:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, types):
        raise CheckpointError(f"unreadable {what}: {key} is {value!r}")
    return value


def _strings(doc: dict[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = _get(doc, key, list, what)
    if not all(isinstance(v, str) for v in value):
        raise CheckpointError(f"unreadable {what}: {key} holds a non-string")
    return tuple(value)


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise CheckpointError(f"unreadable {what}: {e}") from e
    if not isinstance(doc, dict):
        raise CheckpointError(f"unreadable {what}: not a JSON object")
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"unreadable {what}: unknown format")
    return doc


# --- the root record ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RootBody:
    """What the volume's root record holds: the kept manifests, newest first."""

    volume: str                 # the volume's name
    uuid: str
    manifests: tuple[str, ...]  # hex chunk refs
    created: float              # of the newest checkpoint

    def encode(self) -> bytes:
        """JSON, a newline and the JSON's blake3 (the body crosses the wire without a
        checksum of its own; the disks checksum what they store)."""
        doc = json.dumps({"format": FORMAT, "volume": self.volume, "uuid": self.uuid,
                          "manifests": list(self.manifests), "created": self.created}).encode()
        return doc + b"\n" + blake3.blake3(doc).hexdigest().encode()

    @classmethod
    def decode(cls, body: bytes) -> RootBody:
        what = "root record"
        doc, _, digest = body.rpartition(b"\n")
        if blake3.blake3(doc).hexdigest().encode() != digest:
            raise CheckpointError(f"unreadable {what}: checksum mismatch")
        d = _json_object(doc, what)
        return cls(volume=_get(d, "volume", str, what), uuid=_get(d, "uuid", str, what),
                   manifests=_strings(d, "manifests", what),
                   created=float(_get(d, "created", (int, float), what)))


# --- the manifest -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ManifestFile:
    """One file of the database checkpoint: its name, size, blake3 and pieces (hex refs)."""

    name: str
    size: int
    blake3: str
    chunks: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "blake3": self.blake3,
                "chunks": list(self.chunks)}

    @classmethod
    def from_json(cls, doc: object) -> ManifestFile:
        what = "manifest"
        if not isinstance(doc, dict):
            raise CheckpointError(f"unreadable {what}: a file entry is {doc!r}")
        size = _get(doc, "size", int, what)
        if size < 0:
            raise CheckpointError(f"unreadable {what}: size is {size}")
        return cls(name=_get(doc, "name", str, what), size=size,
                   blake3=_get(doc, "blake3", str, what), chunks=_strings(doc, "chunks", what))


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A checkpoint: the database files, the volume's configuration, when and where."""

    seq: int
    created: float
    host: str
    volume: VolumeConfig
    files: tuple[ManifestFile, ...]
    # the volume's journal (sofs.journal) as the snapshot began: replay from there
    journal: JournalPosition | None = None

    @property
    def size(self) -> int:
        """Bytes of the database files."""
        return sum(f.size for f in self.files)

    def pieces(self) -> set[str]:
        """Every piece (hex ref) of every file."""
        return {ref for f in self.files for ref in f.chunks}

    def encode(self) -> bytes:
        doc = {"format": FORMAT, "seq": self.seq, "created": self.created, "host": self.host,
               "volume": json.loads(self.volume.to_json()),
               "files": [f.to_json() for f in self.files]}
        if self.journal is not None:
            doc["journal"] = self.journal.to_json()
        return json.dumps(doc).encode()

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        what = "manifest"
        d = _json_object(data, what)
        vol = _get(d, "volume", dict, what)
        try:
            volume = VolumeConfig.from_json(json.dumps({"version": 1, **vol}))
        except VolumeError as e:
            raise CheckpointError(f"unreadable {what}: {e}") from e
        host = d.get("host", "")
        return cls(seq=_get(d, "seq", int, what),
                   created=float(_get(d, "created", (int, float), what)),
                   host=host if isinstance(host, str) else "", volume=volume,
                   files=tuple(ManifestFile.from_json(f) for f in _get(d, "files", list, what)),
                   journal=JournalPosition.from_json(d.get("journal")))


# --- this copy's state --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CopyState:
    """Where this copy of the metadata is in the volume's sequence of checkpoints: the root
    sequence number it last wrote or was restored at (0: none), when, and a root update under
    way (``pending_seq``, ``pending_manifest``): if that reached the disks but its answer was
    lost, the next checkpoint recognises it as this copy's own."""

    seq: int = 0
    written: float = 0.0
    pending_seq: int | None = None
    pending_manifest: str | None = None

    def encode(self) -> str:
        doc: dict[str, Any] = {"seq": self.seq, "written": self.written}
        if self.pending_seq is not None:
            doc["pending_seq"], doc["pending_manifest"] = self.pending_seq, self.pending_manifest
        return json.dumps(doc)

    @classmethod
    def decode(cls, text: str) -> CopyState:
        """Lenient: what cannot be read counts as not recorded (a fresh copy)."""
        try:
            doc = json.loads(text)
        except ValueError:
            return cls()
        if not isinstance(doc, dict):
            return cls()

        def num(key: str, types: tuple[type, ...]) -> Any:
            v = doc.get(key)
            return v if isinstance(v, types) and not isinstance(v, bool) else None

        seq = num("seq", (int,))
        written = num("written", (int, float))
        manifest = doc.get("pending_manifest")
        return cls(seq=seq if seq is not None and seq >= 0 else 0,
                   written=float(written) if written is not None else 0.0,
                   pending_seq=num("pending_seq", (int,)),
                   pending_manifest=manifest if isinstance(manifest, str) else None)
