"""Which files use a chunk, and what a file is made of: the admin's two views between the file
layer and the RING (``sofsctl chunk which KEY`` and ``sofsctl file info PATH``).

Everything here reads one volume's metadata (a :class:`~sofs.metadata.MetaStore`, or a
read-only view of one a mount process has open) and changes nothing. Chunks are found through
their refcount records first (one lookup per key per volume), then by one scan of the block maps;
paths by two scans of the directory entries (the files' own names, then their directories'),
as a volume keeps no reverse index from an inode to its names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from chunkstore import errors as cerr
from chunkstore.placement.keys import KEY_SIZE, ChunkRef

from . import schema
from .errors import FsError, NoSuchEntry, VolumeError
from .inode import ROOT_INO, Inode
from .metadata import MetaStore
from .volume import volume_dir

Progress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class FileBlock:
    """Block ``index`` of a file: ``length`` bytes of file data, stored as chunk ``ref``."""

    index: int
    length: int
    ref: ChunkRef


@dataclasses.dataclass(frozen=True)
class ChunkUse:
    """A volume's use of one chunk: its refcount and the blocks (inode, block index) naming it."""

    key: bytes
    refcount: int
    ref: ChunkRef | None
    blocks: tuple[tuple[int, int], ...]


def has_metadata(data_dir: Path, name: str) -> bool:
    """False for a volume created but never mounted: it has no files yet."""
    return (volume_dir(data_dir, name) / "meta").is_dir()


@contextlib.contextmanager
def reading_volume(data_dir: Path, name: str) -> Iterator[MetaStore]:
    """Volume ``name``'s metadata to read: opened here when no process has it, else a
    read-only view beside its mount process (:meth:`MetaStore.open_view`)."""
    path = volume_dir(data_dir, name) / "meta"
    if not path.is_dir():
        raise VolumeError(f"volume {name} has no metadata at {path}")
    try:
        meta = MetaStore(path)
    except VolumeError:
        with tempfile.TemporaryDirectory(prefix="sofs-view-") as scratch:
            view = MetaStore.open_view(path, Path(scratch))
            try:
                yield view
            finally:
                view.close()
        return
    try:
        yield meta
    finally:
        meta.close()


def file_blocks(meta: MetaStore, ino: int) -> list[FileBlock]:
    """The block map of inode ``ino``, in block order (holes have no entry)."""
    out = []
    for key, value in meta.scan(schema.block_prefix(ino)):
        length, ref_bytes = schema.parse_block_value(value)
        try:
            ref = ChunkRef.from_bytes(ref_bytes)
        except cerr.FormatError as e:
            raise FsError(f"inode {ino} block {schema.parse_block_key(key)}: {e}") from None
        out.append(FileBlock(schema.parse_block_key(key), length, ref))
    return out


def chunk_uses(meta: MetaStore, keys: Iterable[bytes],
               progress: Progress | None = None) -> dict[bytes, ChunkUse]:
    """For each of ``keys`` this volume knows (a refcount record, or a block naming it), its
    use. Keys the volume never used are left out."""
    wanted = set(keys)
    counts: dict[bytes, tuple[int, ChunkRef | None]] = {}
    for key in wanted:
        value = meta.get(schema.refcount_key(key))
        if value is not None:
            count, ref_bytes = schema.parse_refcount_value(value)
            try:
                counts[key] = (count, ChunkRef.from_bytes(ref_bytes))
            except cerr.FormatError:
                counts[key] = (count, None)
    blocks: dict[bytes, list[tuple[int, int]]] = {}
    total = max(meta.approximate_size(), 1)  # bytes on disk: the scan's progress is a guess
    seen = 0
    for n, (bkey, value) in enumerate(meta.scan(b"B")):
        seen += len(bkey) + len(value)
        if progress is not None and n % 10_000 == 0:
            progress(min(seen, total), total)
        ck = bytes(value[5:5 + KEY_SIZE])
        if ck in wanted:
            ino = schema.parse_ino_key(bkey)
            blocks.setdefault(ck, []).append((ino, schema.parse_block_key(bkey)))
            if counts.get(ck, (0, None))[1] is None:
                _, ref_bytes = schema.parse_block_value(value)
                try:
                    counts[ck] = (counts.get(ck, (0, None))[0], ChunkRef.from_bytes(ref_bytes))
                except cerr.FormatError:
                    pass
    if progress is not None:
        progress(total, total)
    out = {}
    for key in wanted:
        if key in counts or key in blocks:
            count, ref = counts.get(key, (0, None))
            out[key] = ChunkUse(key, count, ref, tuple(blocks.get(key, ())))
    return out


def paths_of(meta: MetaStore, inos: Iterable[int]) -> dict[int, list[str]]:
    """Every path of each inode (several for hard links; none for an inode unlinked while
    open). Paths are absolute within the volume, ``/`` for the root."""
    wanted = set(inos)
    links = _names_of(meta, wanted)
    dirs: set[int] = set()
    for entries in links.values():
        for parent, _ in entries:
            while parent != ROOT_INO and parent not in dirs:
                dirs.add(parent)
                value = meta.get(schema.parent_key(parent))
                parent = schema.parse_le_u64(value) if value else ROOT_INO
    dir_names = {ino: entries[0] for ino, entries in _names_of(meta, dirs).items() if entries}

    def dir_path(ino: int, depth: int = 0) -> str | None:
        if ino == ROOT_INO:
            return ""
        if ino not in dir_names or depth > 4096:
            return None  # a directory fsck would report as detached
        parent, name = dir_names[ino]
        above = dir_path(parent, depth + 1)
        return None if above is None else f"{above}/{name}"

    out: dict[int, list[str]] = {}
    for ino in wanted:
        if ino == ROOT_INO:
            out[ino] = ["/"]
            continue
        paths = []
        for parent, name in links.get(ino, []):
            above = dir_path(parent)
            if above is not None:
                paths.append(f"{above}/{name}")
        out[ino] = sorted(paths)
    return out


def _names_of(meta: MetaStore, inos: set[int]) -> dict[int, list[tuple[int, str]]]:
    """(parent, name) of every directory entry naming one of ``inos``: one scan of ``D``."""
    found: dict[int, list[tuple[int, str]]] = {}
    if not inos:
        return found
    for key, value in meta.scan(b"D"):
        ino, _ = schema.parse_dentry_value(value)
        if ino in inos:
            parent = schema.parse_ino_key(key)
            name = bytes(key[9:]).decode("utf-8", "surrogateescape")
            found.setdefault(ino, []).append((parent, name))
    return found


def inode_of(meta: MetaStore, ino: int) -> Inode:
    """The inode record; FsError if there is none."""
    value = meta.get(schema.inode_key(ino))
    if value is None:
        raise NoSuchEntry(f"no inode {ino} in this volume")
    return Inode.unpack(ino, value)


def resolve(meta: MetaStore, path: str) -> int:
    """The inode at ``path`` within the volume (``/`` the root; symlinks are not followed)."""
    ino = ROOT_INO
    for part in (p for p in path.split("/") if p and p != "."):
        value = meta.get(schema.dentry_key(ino, part.encode("utf-8", "surrogateescape")))
        if value is None:
            raise NoSuchEntry(f"{path}: no such file in the volume")
        ino = schema.parse_dentry_value(value)[0]
    return ino
