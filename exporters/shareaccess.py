"""Who an SMB export's users are on this host, and whether they can write to the share root.

Samba acts as the POSIX user of each SMB user (:mod:`exporters.samba`), so an export creates the
missing ones and the health probe's system account ``sofs-probe`` (:mod:`exporters.probe`):
:func:`set_up_users` does that and says, per user, whether it was created or already existed
(:class:`UserReport`). A new volume's root is ``root:root 0755``: nobody but root may create
files in it, and SMB clients get NT_STATUS_ACCESS_DENIED. :func:`write_access` judges, for each
user, what the kernel will decide when smbd (acting as that uid, with its groups) creates a
file in the share root: search permission on every directory above it, write and search
permission on the root itself, from each directory's mode, owner, group and POSIX access ACL
(the rules of the kernel's ``generic_permission``: owner bits for the owner, then named-user
ACL entries, then the owning group and named-group entries, masked, then other).
:func:`set_root_owner` is ``--owner USER[:GROUP]``: it chowns the volume root through the mount
point (as root), before the export starts.

Windows ACLs that SMB clients set later (``security.NTACL``, kept by Samba's acl_xattr) may
restrict access further; they do not exist on a fresh volume and are not judged here.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sofs import acl
from sofs.errors import InvalidArgument

from .errors import ExportError
from .probe import PROBE_USER, ensure_probe_posix_user
from .samba import NAME_RE, SmbUser, ensure_posix_user

R, W, X = 4, 2, 1


@dataclass(frozen=True)
class UserReport:
    """A POSIX user an SMB export acts as: created now, or already there."""

    name: str
    uid: int
    gid: int
    created: bool
    group_created: bool = False   # its group (same name, gid) was created with it
    probe: bool = False           # the health probe's account, not one of the share's users

    def line(self) -> str:
        """``created user NAME (uid N)...`` or ``user NAME exists (uid N)...``."""
        if self.created:
            text = f"created user {self.name} (uid {self.uid}"
            text += f", new group {self.name} gid {self.gid})" if self.group_created \
                else f", group {_group_name(self.gid)})"
        else:
            text = f"user {self.name} exists (uid {self.uid}, group {_group_name(self.gid)})"
        if self.probe:
            text += ": the export's health probe account"
        return text


@dataclass(frozen=True)
class OwnerChange:
    """The volume root's owner before and after ``--owner``."""

    path: str
    uid: int
    gid: int
    old_uid: int
    old_gid: int

    def line(self) -> str:
        return (f"owner of the share root {self.path}: {_owner(self.uid, self.gid)} "
                f"(was {_owner(self.old_uid, self.old_gid)})")


@dataclass(frozen=True)
class WriteAccess:
    """Whether one user can create files in the share root, and if not, why and the fix."""

    user: str
    uid: int
    can_write: bool
    reason: str = ""   # what denies it: the directory, its owner, group and mode
    fix: str = ""

    def warning(self) -> str:
        return f"{self.user} cannot write to the share root: {self.reason}; {self.fix}"


# --- users -------------------------------------------------------------------------------

def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _gid_exists(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
        return True
    except KeyError:
        return False


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _owner(uid: int, gid: int) -> str:
    return f"{_user_name(uid)}:{_group_name(gid)}"


def set_up_users(users: Sequence[SmbUser]) -> list[UserReport]:
    """Make sure each of USERS and the probe account exist as POSIX users (creating the missing
    ones, see :func:`exporters.samba.ensure_posix_user`); what was created and what was there."""
    out = []
    for user in users:
        had_group = _gid_exists(user.gid)
        created = ensure_posix_user(user)
        pw = pwd.getpwnam(user.name)
        out.append(UserReport(user.name, pw.pw_uid, pw.pw_gid, created,
                              group_created=created and not had_group))
    had_probe = _exists(PROBE_USER)
    uid, gid = ensure_probe_posix_user()
    out.append(UserReport(PROBE_USER, uid, gid, created=not had_probe, probe=True))
    return out


# --- the owner of the root ---------------------------------------------------------------

@dataclass(frozen=True)
class OwnerSpec:
    """``--owner USER[:GROUP]`` as given: USER a name, GROUP a name or gid (None: USER's
    primary group)."""

    user: str
    group: str | None = None


def parse_owner(text: str, share_users: Sequence[str] = ()) -> OwnerSpec:
    """Check ``USER[:GROUP]``: USER must exist or be one of SHARE_USERS (created by this
    export), and not be root; GROUP a group name or number. ExportError otherwise."""
    user, sep, group = text.partition(":")
    if not NAME_RE.fullmatch(user):
        raise ExportError(f"invalid --owner {text!r}: USER[:GROUP], USER a user name")
    if sep and not (group.isdigit() or NAME_RE.fullmatch(group)):
        raise ExportError(f"invalid group in --owner {text!r}: a group name or number")
    if user not in share_users and not _exists(user):
        raise ExportError(f"--owner {user}: no such user (give it with --user {user}:UID "
                          "to create it)")
    if _exists(user) and pwd.getpwnam(user).pw_uid == 0:
        raise ExportError(f"--owner {user}: the root is root's already")
    if sep and not group.isdigit():
        try:
            grp.getgrnam(group)
        except KeyError:
            raise ExportError(f"--owner {text}: no such group {group}") from None
    return OwnerSpec(user, group if sep else None)


def set_root_owner(mountpoint: str | Path, owner: OwnerSpec) -> OwnerChange:
    """chown the volume root (through its FUSE mount point, as root) to OWNER; its user must
    exist by now."""
    try:
        pw = pwd.getpwnam(owner.user)
    except KeyError:
        raise ExportError(f"--owner {owner.user}: no such user") from None
    if owner.group is None:
        gid = pw.pw_gid
    elif owner.group.isdigit():
        gid = int(owner.group)
    else:
        try:
            gid = grp.getgrnam(owner.group).gr_gid
        except KeyError:
            raise ExportError(f"--owner: no such group {owner.group}") from None
    path = str(mountpoint)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            before = os.fstat(fd)
            os.fchown(fd, pw.pw_uid, gid)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ExportError(f"cannot change the owner of {path}: {exc.strerror}") from None
    return OwnerChange(path, pw.pw_uid, gid, before.st_uid, before.st_gid)


# --- can they write? ---------------------------------------------------------------------

@dataclass(frozen=True)
class DirFacts:
    """What the kernel's permission check looks at for one directory."""

    path: str
    mode: int
    uid: int
    gid: int
    acl: tuple[acl.Entry, ...] | None = None  # the POSIX access ACL, if it has one

    def describe(self) -> str:
        text = f"{self.path} is {_owner(self.uid, self.gid)} {stat.S_IMODE(self.mode):04o}"
        return text + " with an ACL" if self.acl else text


def permitted(d: DirFacts, uid: int, groups: frozenset[int], want: int) -> bool:
    """Whether UID (member of GROUPS) has every bit of WANT (R|W|X) on D, as the kernel
    decides it for a non-root caller (``acl_permission_check``, ``posix_acl_permission``)."""
    mode = d.mode
    if uid == 0:
        return True
    if uid == d.uid:
        return want & ~(mode >> 6) & 7 == 0
    entries = d.acl if d.acl and not acl.is_minimal(list(d.acl)) else None
    if entries is None:
        bits = (mode >> 3) & 7 if d.gid in groups else mode & 7
        return want & ~bits == 0
    mask = next((e.perm for e in entries if e.tag == acl.MASK), 7)
    for e in entries:
        if e.tag == acl.USER and e.id == uid:
            return want & ~(e.perm & mask) == 0
    matched = False
    for e in entries:
        member = (e.tag == acl.GROUP_OBJ and d.gid in groups) or (
            e.tag == acl.GROUP and e.id in groups)
        if member:
            matched = True
            if want & ~(e.perm & mask) == 0:
                return True
    if matched:
        return False
    other = next(e.perm for e in entries if e.tag == acl.OTHER)
    return want & ~other == 0


def dir_facts(path: str | Path) -> DirFacts:
    """The mode, owner, group and access ACL of the directory PATH."""
    p = str(path)
    st = os.stat(p)
    entries: tuple[acl.Entry, ...] | None = None
    try:
        entries = tuple(acl.decode(os.getxattr(p, acl.ACCESS.decode())))
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    except InvalidArgument:
        entries = None  # not a form we know: judged by its mode bits (the ACL's mask is in them)
    return DirFacts(p, st.st_mode, st.st_uid, st.st_gid, entries)


def user_groups(name: str, gid: int) -> frozenset[int]:
    """NAME's primary group GID and its supplementary groups, as smbd takes them."""
    try:
        return frozenset(os.getgrouplist(name, gid))
    except OSError:
        return frozenset({gid})


def judge(user: str, uid: int, groups: frozenset[int], chain: Sequence[DirFacts]
          ) -> WriteAccess:
    """USER's write access to the last directory of CHAIN (every directory from '/' down to
    the share root): search on each, write and search on the last."""
    root = chain[-1]
    for d in chain[:-1]:
        if not permitted(d, uid, groups, X):
            return WriteAccess(user, uid, False,
                               f"it cannot even reach {root.path}: {d.describe()}",
                               f"let it search {d.path} (chmod o+x {d.path}) or mount the "
                               "volume elsewhere")
    if permitted(root, uid, groups, W | X):
        return WriteAccess(user, uid, True)
    return WriteAccess(
        user, uid, False, root.describe(),
        f"to let it write: chown {user} {root.path} (what export smb --owner {user} does), "
        f"or setfacl -m u:{user}:rwx {root.path}")


def write_access(mountpoint: str | Path, users: Sequence[tuple[str, int, int]]
                 ) -> list[WriteAccess]:
    """For each (name, uid, gid) of USERS: can smbd, acting as it, create files in the share
    root MOUNTPOINT?"""
    root = Path(os.path.realpath(mountpoint))
    chain = [dir_facts(p) for p in [*reversed(root.parents), root]]
    return [judge(name, uid, user_groups(name, gid), chain) for name, uid, gid in users]
