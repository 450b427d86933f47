"""Directory entries in a volume's metadata: a name's entry (``D``: name -> inode and readdir
cookie), its readdir twin (``E``: cookie -> inode and name, the listing order), and a
directory's parent key (``P``). Cookies never change while the entry exists, so a listing
resumed at a cookie neither repeats nor skips survivors; a name is at most :data:`NAME_MAX`
bytes, without ``/`` or NUL. Callers hold the filesystem lock and commit the batches."""

from __future__ import annotations

from collections.abc import Iterator

from . import schema
from .errors import InvalidArgument, NameTooLong
from .inode import ROOT_INO
from .metadata import Batch, MetaStore
from .superblock import FIRST_COOKIE, ReservedCounter

NAME_MAX = 255
MAX_DEPTH = 100_000   # a parent chain longer than this is taken as reaching the root


def check_name(name: bytes) -> None:
    """NameTooLong or InvalidArgument unless ``name`` can be a directory entry."""
    if len(name) > NAME_MAX:
        raise NameTooLong(f"name of {len(name)} bytes (max {NAME_MAX})")
    if not name or b"/" in name or b"\0" in name:
        raise InvalidArgument(f"invalid name {name!r}")


class Directories:
    """The entries of one volume's directories."""

    def __init__(self, meta: MetaStore, cookies: ReservedCounter) -> None:
        self._meta = meta
        self._cookies = cookies

    def child(self, parent: int, name: bytes) -> tuple[int, int] | None:
        """(inode, cookie) of ``name`` in ``parent``, or None."""
        value = self._meta.get(schema.dentry_key(parent, name))
        return schema.parse_dentry_value(value) if value else None

    def parent_of(self, ino: int) -> int:
        """The directory holding directory ``ino`` (the root for the root)."""
        value = self._meta.get(schema.parent_key(ino))
        return schema.parse_le_u64(value) if value else ROOT_INO

    def is_empty(self, ino: int) -> bool:
        return not self._meta.has_prefix(schema.dentry_prefix(ino))

    def is_ancestor(self, maybe_ancestor: int, ino: int) -> bool:
        """Whether directory ``maybe_ancestor`` is ``ino`` or holds it, at any depth."""
        seen = 0
        while ino != ROOT_INO and seen < MAX_DEPTH:
            if ino == maybe_ancestor:
                return True
            ino = self.parent_of(ino)
            seen += 1
        return maybe_ancestor == ROOT_INO

    def entries(self, ino: int, start: int = 0) -> Iterator[tuple[bytes, int, int]]:
        """(name, inode, cookie) of the entries of ``ino`` after cookie ``start``, in order."""
        first = schema.readdir_key(ino, max(start + 1, FIRST_COOKIE))
        for key, value in self._meta.scan(schema.readdir_prefix(ino), first):
            child, name = schema.parse_readdir_value(value)
            yield name, child, schema.parse_readdir_key(key)

    def add(self, b: Batch, parent: int, name: bytes, ino: int) -> None:
        """Stage the entry and its twin, with a new cookie."""
        cookie = self._cookies.take(b)
        b.put(schema.dentry_key(parent, name), schema.dentry_value(ino, cookie))
        b.put(schema.readdir_key(parent, cookie), schema.readdir_value(ino, name))

    def remove(self, b: Batch, parent: int, name: bytes, cookie: int) -> None:
        b.delete(schema.dentry_key(parent, name))
        b.delete(schema.readdir_key(parent, cookie))

    def set_parent(self, b: Batch, ino: int, parent: int) -> None:
        b.put(schema.parent_key(ino), schema.le_u64(parent))

    def drop_parent(self, b: Batch, ino: int) -> None:
        b.delete(schema.parent_key(ino))
