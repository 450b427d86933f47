"""POSIX access control lists, as the SOFS layer stores and keeps them.

With ACL support negotiated (``FUSE_POSIX_ACL``) the kernel enforces ACLs itself and hands
the two ACL xattrs, ``system.posix_acl_access`` and ``system.posix_acl_default``, to the
filesystem, which must do three things ext4 does in its own code:

* keep the mode bits in sync when an access ACL is set (owner, mask-or-group, other), and
  store no ACL at all when it says no more than the mode bits;
* rewrite the access ACL's owner, mask (or group) and other entries on chmod;
* at create time, give the new inode its parent's default ACL, masked by the create mode
  (the umask is then ignored), and to a new directory the default ACL itself.

The xattr form is the kernel's: a little-endian u32 version (2), then 8-byte entries of
u16 tag, u16 permission bits (rwx = 4|2|1) and u32 uid or gid (unused ids are 0xffffffff).
"""

from __future__ import annotations

import stat
import struct
from dataclasses import dataclass

from .errors import InvalidArgument

ACCESS = b"system.posix_acl_access"
DEFAULT = b"system.posix_acl_default"

VERSION = 2
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
UNDEFINED_ID = 0xFFFFFFFF
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
_TAG_ORDER = {USER_OBJ: 0, USER: 1, GROUP_OBJ: 2, GROUP: 3, MASK: 4, OTHER: 5}


@dataclass
class Entry:
    tag: int
    perm: int
    id: int = UNDEFINED_ID


def decode(value: bytes) -> list[Entry]:
    """Parse and validate an ACL xattr; raise InvalidArgument for anything malformed."""
    if len(value) < _HEADER.size or (len(value) - _HEADER.size) % _ENTRY.size:
        raise InvalidArgument("ACL xattr has a bad length")
    (version,) = _HEADER.unpack_from(value)
    if version != VERSION:
        raise InvalidArgument(f"ACL version {version} is not {VERSION}")
    entries = [Entry(*_ENTRY.unpack_from(value, off))
               for off in range(_HEADER.size, len(value), _ENTRY.size)]
    _validate(entries)
    return entries


def encode(entries: list[Entry]) -> bytes:
    out = [_HEADER.pack(VERSION)]
    for e in sorted(entries, key=lambda e: (_TAG_ORDER[e.tag], e.id)):
        ident = e.id if e.tag in (USER, GROUP) else UNDEFINED_ID
        out.append(_ENTRY.pack(e.tag, e.perm, ident))
    return b"".join(out)


def _validate(entries: list[Entry]) -> None:
    if not entries:
        return  # an empty ACL: valid as a default ACL (it removes it)
    seen: dict[int, int] = {}
    ids: set[tuple[int, int]] = set()
    for e in entries:
        if e.tag not in _TAG_ORDER:
            raise InvalidArgument(f"ACL entry tag {e.tag:#x} unknown")
        if e.perm & ~0o7:
            raise InvalidArgument("ACL permission bits beyond rwx")
        seen[e.tag] = seen.get(e.tag, 0) + 1
        if e.tag in (USER, GROUP):
            if (e.tag, e.id) in ids:
                raise InvalidArgument("ACL names one user or group twice")
            ids.add((e.tag, e.id))
    for tag in (USER_OBJ, GROUP_OBJ, OTHER):
        if seen.get(tag) != 1:
            raise InvalidArgument("ACL needs exactly one owner, group and other entry")
    if seen.get(MASK, 0) > 1:
        raise InvalidArgument("ACL has two mask entries")
    if (seen.get(USER) or seen.get(GROUP)) and not seen.get(MASK):
        raise InvalidArgument("ACL with named entries needs a mask entry")


def _find(entries: list[Entry], tag: int) -> Entry | None:
    return next((e for e in entries if e.tag == tag), None)


def _required(entries: list[Entry], tag: int) -> Entry:
    """The entry every valid ACL has (owner, owning group, other)."""
    e = _find(entries, tag)
    if e is None:
        raise InvalidArgument(f"ACL without its entry of tag {tag:#x}")
    return e


def is_minimal(entries: list[Entry]) -> bool:
    """True when the ACL says no more than the mode bits (owner, group, other only)."""
    return all(e.tag in (USER_OBJ, GROUP_OBJ, OTHER) for e in entries)


def mode_bits(entries: list[Entry]) -> int:
    """The rwxrwxrwx bits an access ACL implies: group bits come from the mask if any."""
    group = _find(entries, MASK) or _required(entries, GROUP_OBJ)
    return (_required(entries, USER_OBJ).perm << 6) | (group.perm << 3) | _required(entries, OTHER).perm


def apply_mode(entries: list[Entry], mode: int) -> list[Entry]:
    """chmod on a file with an ACL: owner, mask (else group) and other follow ``mode``."""
    out = [Entry(e.tag, e.perm, e.id) for e in entries]
    has_mask = _find(out, MASK) is not None
    for e in out:
        if e.tag == USER_OBJ:
            e.perm = (mode >> 6) & 7
        elif e.tag == (MASK if has_mask else GROUP_OBJ):
            e.perm = (mode >> 3) & 7
        elif e.tag == OTHER:
            e.perm = mode & 7
    return out


def inherit(default: list[Entry], mode: int) -> tuple[list[Entry], int]:
    """A new inode under a directory with a default ACL: its access ACL and its mode.

    Each of owner, mask (else group) and other keeps only what both the default ACL and
    the create mode allow; the mode's permission bits become those of the result.
    """
    acl = [Entry(e.tag, e.perm, e.id) for e in default]
    has_mask = _find(acl, MASK) is not None
    shifts = {USER_OBJ: 6, (MASK if has_mask else GROUP_OBJ): 3, OTHER: 0}
    for e in acl:
        if e.tag in shifts:
            e.perm &= (mode >> shifts[e.tag]) & 7
    new_mode = (mode & ~0o777) | mode_bits(acl)
    return acl, new_mode


def check_target(name: bytes, mode: int) -> None:
    """Default ACLs exist only on directories."""
    if name == DEFAULT and not stat.S_ISDIR(mode):
        raise InvalidArgument("a default ACL can only be set on a directory")
