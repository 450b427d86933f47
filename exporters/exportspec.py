"""What an export is: its spec record, the protocol options and their defaults, and parsing of
the options an admin gives.

A spec (``DATA_DIR/exports/VOLUME-KIND/spec.json``, see :mod:`exporters.registry`) names the
volume, the protocol (KIND: ``nfs`` or ``smb``) and the options: an :class:`ExportSpec` holding
:class:`NfsOptions` or :class:`SmbOptions` (frozen dataclasses; their defaults are the
production defaults, which sofsctl exposes as options). ``to_json``/``from_json`` give and read
the JSON form, strictly (:mod:`exporters.jsonfields`): an unknown field or a value of the wrong
type is refused with an ExportError naming the file and the field; an option missing from an
older file takes its default. The JSON form is the one spec.json always had::

    {"created": 1718000000.25, "kind": "nfs", "volume": "pacs",
     "options": {"clients": [["10.1.2.0/24", "RW"]], "read_only": false, "squash": "root_squash",
                 "port": 2049, "bind": "0.0.0.0", "v3": false, "mount_port": null,
                 "grace": 90, "attr_cache": 0}}
    {..., "kind": "smb", "options": {"users": [["radiology", 2001, 2001]], "read_only": false,
     "port": 445, "bind": "0.0.0.0", "min_protocol": "SMB2_02", "signing": "mandatory",
     "encrypt": "desired"}}

The options an admin gives to ``sofsctl export`` are parsed here too (client rules, SMB users),
with clear errors.
"""

from __future__ import annotations

import pwd
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import ExportError
from .jsonfields import JsonFields, is_int
from .probe import PROBE_USER
from .samba import NAME_RE
from .validate import check_volume_name

KINDS = ("nfs", "smb")
SERVICE_NAMES = {"nfs": "nfs-ganesha", "smb": "smbd"}
LIVE_STATES = ("starting", "running", "restarting", "stopping")


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ExportError(f"invalid export kind {kind!r}: nfs or smb")
    return kind


# --- NFS -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NfsClient:
    """One client rule of an NFS export: a network (CIDR or address) and its access, "RW",
    "RO" or "None" (refused). JSON: ``[cidr, access]``."""

    cidr: str
    access: str = "RW"

    def to_json(self) -> list[Any]:
        return [self.cidr, self.access]

    @classmethod
    def from_json(cls, doc: object, fields: JsonFields, name: str) -> NfsClient:
        """Read the rule in NAME (e.g. ``clients[0]``) of FIELDS' object."""
        if (not isinstance(doc, list) or len(doc) != 2
                or not all(isinstance(x, str) for x in doc)):
            raise fields.error(name, 'must be a [CIDR, access] pair of strings, e.g. ["10.1.0.0/16", "RW"]')
        return cls(doc[0], doc[1])


@dataclass(frozen=True)
class NfsOptions:
    """The options of an NFS export (the defaults are production's)."""

    clients: tuple[NfsClient, ...] = ()  # first match wins; required: nobody by default
    read_only: bool = False
    squash: str = "root_squash"
    port: int = 2049
    bind: str = "0.0.0.0"
    v3: bool = False
    v42: bool = False     # also NFSv4.2 (ALLOCATE, DEALLOCATE, SEEK...): opt-in, see ganesha.py
    mount_port: int | None = None
    grace: int = 90       # seconds; 0 = Graceless (tests only: NFSv4 clients lose reclaim)
    attr_cache: int = 0   # seconds Ganesha trusts cached attributes (0: always ask the mount)

    def to_json(self) -> dict[str, Any]:
        return {"clients": [c.to_json() for c in self.clients], "read_only": self.read_only,
                "squash": self.squash, "port": self.port, "bind": self.bind, "v3": self.v3,
                "mount_port": self.mount_port, "grace": self.grace, "attr_cache": self.attr_cache,
                # written only when on: a spec from before the key is written back as it was
                **({"v42": True} if self.v42 else {})}

    @classmethod
    def from_json(cls, doc: object, where: str = "spec.json") -> NfsOptions:
        return cls.from_fields(JsonFields(doc, where, "options."))

    @classmethod
    def from_fields(cls, f: JsonFields) -> NfsOptions:
        d = cls()
        clients = tuple(NfsClient.from_json(c, f, f"clients[{i}]")
                        for i, c in enumerate(f.array("clients", [])))
        opts = cls(clients=clients, read_only=f.flag("read_only", d.read_only),
                   squash=f.text("squash", d.squash), port=f.integer("port", d.port),
                   bind=f.text("bind", d.bind), v3=f.flag("v3", d.v3),
                   v42=f.flag("v42", d.v42), mount_port=f.opt_integer("mount_port"), grace=f.integer("grace", d.grace),
                   attr_cache=f.integer("attr_cache", d.attr_cache))
        f.done()
        return opts


# --- SMB -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SmbAccount:
    """A user of an SMB export and the POSIX identity Samba acts as (no password: that is
    in Samba's passdb). JSON: ``[name, uid, gid]``."""

    name: str
    uid: int
    gid: int

    def to_json(self) -> list[Any]:
        return [self.name, self.uid, self.gid]

    @classmethod
    def from_json(cls, doc: object, fields: JsonFields, name: str) -> SmbAccount:
        """Read the user in NAME (e.g. ``users[0]``) of FIELDS' object."""
        if (not isinstance(doc, list) or len(doc) != 3 or not isinstance(doc[0], str)
                or not is_int(doc[1]) or not is_int(doc[2])):
            raise fields.error(name, 'must be a [name, uid, gid] triple, e.g. ["radiology", 2001, 2001]')
        return cls(doc[0], doc[1], doc[2])


@dataclass(frozen=True)
class SmbOptions:
    """The options of an SMB export (the defaults are production's)."""

    users: tuple[SmbAccount, ...] = ()
    read_only: bool = False
    port: int = 445
    bind: str = "0.0.0.0"
    min_protocol: str = "SMB2_02"
    signing: str = "mandatory"
    encrypt: str = "desired"

    def to_json(self) -> dict[str, Any]:
        return {"users": [u.to_json() for u in self.users], "read_only": self.read_only,
                "port": self.port, "bind": self.bind, "min_protocol": self.min_protocol,
                "signing": self.signing, "encrypt": self.encrypt}

    @classmethod
    def from_json(cls, doc: object, where: str = "spec.json") -> SmbOptions:
        return cls.from_fields(JsonFields(doc, where, "options."))

    @classmethod
    def from_fields(cls, f: JsonFields) -> SmbOptions:
        d = cls()
        users = tuple(SmbAccount.from_json(u, f, f"users[{i}]")
                      for i, u in enumerate(f.array("users", [])))
        opts = cls(users=users, read_only=f.flag("read_only", d.read_only),
                   port=f.integer("port", d.port), bind=f.text("bind", d.bind),
                   min_protocol=f.text("min_protocol", d.min_protocol),
                   signing=f.text("signing", d.signing), encrypt=f.text("encrypt", d.encrypt))
        f.done()
        return opts



# --- the spec --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportSpec:
    """One export: volume VOLUME over protocol KIND with its OPTIONS (NfsOptions for "nfs",
    SmbOptions for "smb"); CREATED is when it was first saved (wall-clock seconds)."""

    kind: str
    volume: str
    options: NfsOptions | SmbOptions
    created: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        check_kind(self.kind)
        want = NfsOptions if self.kind == "nfs" else SmbOptions
        if not isinstance(self.options, want):
            raise ExportError(f"the options of an {self.kind} export are {want.__name__}, "
                              f"not {type(self.options).__name__}")

    @property
    def nfs(self) -> NfsOptions:
        """The options of an NFS export (ExportError for an SMB one)."""
        if not isinstance(self.options, NfsOptions):
            raise ExportError(f"the {self.kind} export of {self.volume} has no NFS options")
        return self.options

    @property
    def smb(self) -> SmbOptions:
        """The options of an SMB export (ExportError for an NFS one)."""
        if not isinstance(self.options, SmbOptions):
            raise ExportError(f"the {self.kind} export of {self.volume} has no SMB options")
        return self.options

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "volume": self.volume, "options": self.options.to_json(),
                "created": self.created}

    @classmethod
    def from_json(cls, doc: object, where: str = "spec.json") -> ExportSpec:
        """Read a spec.json document (decoded); ExportError naming WHERE and the field for
        anything that is not a spec: unknown fields, wrong types, a bad kind or volume name."""
        f = JsonFields(doc, where)
        kind = f.text("kind")
        if kind not in KINDS:
            raise f.error("kind", f"must be nfs or smb, not {kind!r}")
        volume = f.text("volume")
        try:
            check_volume_name(volume)
        except ExportError as exc:
            raise f.error("volume", f"is invalid: {exc}") from None
        opts = f.obj("options")
        options: NfsOptions | SmbOptions = (
            NfsOptions.from_fields(opts) if kind == "nfs" else SmbOptions.from_fields(opts))
        created = f.number("created", 0.0)
        f.done()
        return cls(kind=kind, volume=volume, options=options, created=created)


def parse_client(text: str, read_only: bool = False) -> NfsClient:
    """``CIDR[:ro|rw|none]`` -> its rule; access defaults to RW (RO with READ_ONLY)."""
    cidr, access = text.strip(), ("RO" if read_only else "RW")
    head, sep, tail = cidr.rpartition(":")
    if sep and tail.lower() in ("ro", "rw", "none"):
        cidr, access = head, {"ro": "RO", "rw": "RW", "none": "None"}[tail.lower()]
    if not cidr:
        raise ExportError(f"invalid client {text!r}: CIDR[:ro|rw], e.g. 10.1.0.0/16:ro")
    return NfsClient(cidr, access)


def resolve_smb_user(spec: str) -> SmbAccount:
    """``NAME[:UID]`` -> its account (name, uid, gid). An existing POSIX user keeps its uid and primary
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
        return SmbAccount(name, uid, uid)
    if uid is not None and uid != pw.pw_uid:
        raise ExportError(f"user {name} exists with uid {pw.pw_uid}, not {uid}")
    if pw.pw_uid == 0:
        raise ExportError(f"refusing to share as {name}: uid 0 (root)")
    return SmbAccount(name, pw.pw_uid, pw.pw_gid)
