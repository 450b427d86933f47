"""What an export is: its spec record, the protocol defaults, and parsing of its options.

A spec (``DATA_DIR/exports/VOLUME-KIND/spec.json``, see :mod:`exporters.registry`) names the
volume, the protocol (KIND: ``nfs`` or ``smb``) and the options; the options an admin gives to
``sofsctl export`` are parsed here (client rules, SMB users) with clear errors.
"""

from __future__ import annotations

import pwd
import time
from dataclasses import dataclass, field

from .errors import ExportError
from .probe import PROBE_USER
from .samba import NAME_RE

KINDS = ("nfs", "smb")
SERVICE_NAMES = {"nfs": "nfs-ganesha", "smb": "smbd"}
LIVE_STATES = ("starting", "running", "restarting", "stopping")

# Production defaults (sofsctl exposes them as options).
NFS_DEFAULTS = {
    "clients": [],          # [[cidr, "RW"|"RO"|"None"], ...]: required, nobody by default
    "read_only": False,
    "squash": "root_squash",
    "port": 2049,
    "bind": "0.0.0.0",
    "v3": False,
    "mount_port": None,
    "grace": 90,            # seconds; 0 = Graceless (tests only: NFSv4 clients lose reclaim)
    "attr_cache": 0,        # seconds Ganesha trusts cached attributes (0: always ask the mount)
}
SMB_DEFAULTS = {
    "users": [],            # [[name, uid, gid], ...]
    "read_only": False,
    "port": 445,
    "bind": "0.0.0.0",
    "min_protocol": "SMB2_02",
    "signing": "mandatory",
    "encrypt": "desired",
}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ExportError(f"invalid export kind {kind!r}: nfs or smb")
    return kind


@dataclass
class ExportSpec:
    kind: str
    volume: str
    options: dict
    created: float = field(default_factory=time.time)


def parse_client(text: str, read_only: bool = False) -> list:
    """``CIDR[:ro|rw|none]`` -> [cidr, access]; access defaults to RW (RO with READ_ONLY)."""
    cidr, access = text.strip(), ("RO" if read_only else "RW")
    head, sep, tail = cidr.rpartition(":")
    if sep and tail.lower() in ("ro", "rw", "none"):
        cidr, access = head, {"ro": "RO", "rw": "RW", "none": "None"}[tail.lower()]
    if not cidr:
        raise ExportError(f"invalid client {text!r}: CIDR[:ro|rw], e.g. 10.1.0.0/16:ro")
    return [cidr, access]


def resolve_smb_user(spec: str) -> tuple[str, int, int]:
    """``NAME[:UID]`` -> (name, uid, gid). An existing POSIX user keeps its uid and primary
    group (a UID given must match); a new one needs UID and gets its own group of that id."""
    name, _, uid_text = spec.partition(":")
    if not NAME_RE.fullmatch(name):
        raise ExportError(f"invalid user name {name!r}: lower-case letters, digits, '_' or '-'")
    if name == PROBE_USER:
        raise ExportError(f"{PROBE_USER} is reserved for the export's health probe")
    uid = None
    if uid_text:
        try:
            uid = int(uid_text)
        except ValueError:
            raise ExportError(f"invalid uid in {spec!r}: NAME:UID with a number") from None
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        if uid is None:
            raise ExportError(f"user {name} does not exist: give {name}:UID to create it") from None
        if not 1 <= uid < 2**31:
            raise ExportError(f"invalid uid {uid} for {name}: from 1 to 2^31-1 (not root)") from None
        return name, uid, uid
    if uid is not None and uid != pw.pw_uid:
        raise ExportError(f"user {name} exists with uid {pw.pw_uid}, not {uid}")
    if pw.pw_uid == 0:
        raise ExportError(f"refusing to share as {name}: uid 0 (root)")
    return name, pw.pw_uid, pw.pw_gid
