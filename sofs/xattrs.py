"""Extended attributes of a volume's inodes (``X`` keys), POSIX ACLs among them.

The two ACL attributes (``system.posix_acl_access`` and ``_default``, :mod:`sofs.acl`) are
stored like the others but kept in step with the mode bits: setting an access ACL sets the mode's
permission bits (and a minimal one is not stored at all, as on ext4), a chmod rewrites the ACL's
owner, mask and other entries (:meth:`Xattrs.chmod_acl`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from chunkstore.clock import Clock

from . import acl, schema
from .errors import AttributeNameInvalid, AttributeTooLarge, EntryExists, InvalidArgument, NoSuchAttribute
from .inode import Inode
from .inodes import InodeTable
from .metadata import Batch, MetaStore
from .timestamps import wall_ns

XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536
XATTR_CREATE = 1
XATTR_REPLACE = 2

StageInode = Callable[[Batch, Inode], None]


@dataclasses.dataclass(frozen=True)
class Inherited:
    """The ACLs a new inode takes from its directory's default ACL."""

    access: list[acl.Entry]   # its access ACL
    default: bytes            # the default ACL (encoded), passed on to a new directory


class Xattrs:
    """The xattr operations of one volume. ``lock`` is the filesystem's; ``stage_inode``
    stages an inode whose ctime (or, for an ACL, mode) changed."""

    def __init__(self, meta: MetaStore, lock: threading.RLock, inodes: InodeTable,
                 stage_inode: StageInode, clock: Clock) -> None:
        self._meta = meta
        self._lock = lock
        self._inodes = inodes
        self._stage_inode = stage_inode
        self._clock = clock

    def get(self, ino: int, name: bytes) -> bytes:
        with self._lock:
            self._inodes.get(ino)
            value = self._meta.get(schema.xattr_key(ino, name))
        if value is None:
            raise NoSuchAttribute(name.decode(errors="replace"))
        return value

    def has(self, ino: int, name: bytes) -> bool:
        with self._lock:
            return self._meta.get(schema.xattr_key(ino, name)) is not None

    def names(self, ino: int) -> list[bytes]:
        with self._lock:
            self._inodes.get(ino)
            prefix = schema.xattr_prefix(ino)
            return [k[len(prefix):] for k, _ in self._meta.scan(prefix)]

    def set(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        if not name or len(name) > XATTR_NAME_MAX:
            raise AttributeNameInvalid("xattr name empty or over 255 bytes")
        if len(value) > XATTR_SIZE_MAX:
            raise AttributeTooLarge("xattr value over 64 KiB")
        with self._lock:
            node = self._inodes.get(ino)
            key = schema.xattr_key(ino, name)
            exists = self._meta.get(key) is not None
            if flags & XATTR_CREATE and exists:
                raise EntryExists(name.decode(errors="replace"))
            if flags & XATTR_REPLACE and not exists:
                raise NoSuchAttribute(name.decode(errors="replace"))
            b = self._meta.batch()
            if name in (acl.ACCESS, acl.DEFAULT):
                self._set_acl(b, node, name, key, bytes(value))
            else:
                b.put(key, bytes(value))
            self._changed(b, node)

    def remove(self, ino: int, name: bytes) -> None:
        with self._lock:
            node = self._inodes.get(ino)
            key = schema.xattr_key(ino, name)
            if self._meta.get(key) is None:
                raise NoSuchAttribute(name.decode(errors="replace"))
            b = self._meta.batch()
            b.delete(key)
            self._changed(b, node)

    def _changed(self, b: Batch, node: Inode) -> None:
        node.ctime_ns = wall_ns(self._clock)
        self._stage_inode(b, node)
        self._meta.commit(b)

    def _set_acl(self, b: Batch, node: Inode, name: bytes, key: bytes, value: bytes) -> None:
        acl.check_target(name, node.mode)
        entries = acl.decode(value)
        if name == acl.DEFAULT:
            if entries:
                b.put(key, acl.encode(entries))
            else:
                b.delete(key)
            return
        if not entries:
            raise InvalidArgument("an access ACL cannot be empty")
        node.mode = (node.mode & ~0o777) | acl.mode_bits(entries)
        if acl.is_minimal(entries):
            b.delete(key)  # the mode bits say it all, as ext4 stores it
        else:
            b.put(key, acl.encode(entries))

    def inherit(self, parent: int, mode: int, umask: int) -> tuple[int, Inherited | None]:
        """The mode of a new inode in ``parent`` (``mode`` as the caller asked), and the ACLs
        it inherits for :meth:`stage_inherited`: the umask applies unless the parent has a
        default ACL, which is inherited instead (masked by ``mode``), as on ext4."""
        default = self._meta.get(schema.xattr_key(parent, acl.DEFAULT))
        if default is None:
            return mode & ~(umask & 0o777), None
        access, mode = acl.inherit(acl.decode(default), mode)
        return mode, Inherited(access, default)

    def stage_inherited(self, b: Batch, node: Inode, inherited: Inherited) -> None:
        """Stage a new inode's inherited ACLs: its access ACL (unless the mode bits say it
        all) and, for a directory, the parent's default ACL."""
        if not acl.is_minimal(inherited.access):
            b.put(schema.xattr_key(node.ino, acl.ACCESS), acl.encode(inherited.access))
        if node.is_dir:
            b.put(schema.xattr_key(node.ino, acl.DEFAULT), inherited.default)

    def chmod_acl(self, b: Batch, node: Inode) -> None:
        """A mode change rewrites the owner, mask and other entries of an access ACL."""
        key = schema.xattr_key(node.ino, acl.ACCESS)
        value = self._meta.get(key)
        if value is not None:
            b.put(key, acl.encode(acl.apply_mode(acl.decode(value), node.mode)))
