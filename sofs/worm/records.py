"""The WORM records a volume keeps in its metadata (schema prefixes ``N``, ``Z``, ``Y``).

* ``N`` + domain index u32: a :class:`Domain` (JSON): its root directory, the path it was
  created at, its :class:`~sofs.worm.policy.DomainPolicy`, when (compliance clock).
* ``Z`` + ino u64: a committed file's :class:`Commit` (JSON): when and by which rule it was
  committed, and until when it is retained (also shown as its atime).
* ``Y`` + ino u64: empty; a regular file of a domain not committed yet, for the autocommit
  scanner.
* ``H`` + ino u64 + hold name: a legal :class:`Hold` (JSON) on a file of a domain; while it has
  one (:data:`HELD`), the file cannot be deleted, renamed or changed, even after its retention.

Which domain an inode belongs to, and whether it is committed, live in the inode's own
``flags`` (:data:`COMMITTED`, :data:`DOMAIN_ROOT`, the domain index in the upper 16 bits), so the
data path checks a file with one integer test and a plain directory costs nothing.
"""

from __future__ import annotations

import datetime
import json
import struct
from dataclasses import asdict, dataclass

from ..errors import MetadataDamaged
from .policy import DomainPolicy

COMMITTED = 1 << 0      # a regular file that is WORM: no change but longer retention, holds
DOMAIN_ROOT = 1 << 1    # the top directory of a domain: never removed or renamed
HELD = 1 << 2           # a file under one or more legal holds
DOMAIN_SHIFT = 16       # flags >> 16: the index of the inode's domain (0: none)
MAX_DOMAINS = (1 << 16) - 1

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def iso_utc(ns: int) -> str:
    """A time (ns since the epoch) as people read it in logs and records."""
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def domain_index(flags: int) -> int:
    return flags >> DOMAIN_SHIFT


def domain_key(index: int) -> bytes:
    return b"N" + _U32.pack(index)


def commit_key(ino: int) -> bytes:
    return b"Z" + _U64.pack(ino)


def pending_key(ino: int) -> bytes:
    return b"Y" + _U64.pack(ino)


def hold_prefix(ino: int) -> bytes:
    return b"H" + _U64.pack(ino)


def hold_key(ino: int, name: str) -> bytes:
    return hold_prefix(ino) + name.encode()


def parse_pending_key(key: bytes) -> int:
    return _U64.unpack_from(key, 1)[0]


@dataclass(frozen=True)
class Domain:
    """One WORM domain of a volume."""

    index: int
    root_ino: int
    path: str
    policy: DomainPolicy
    created_ns: int

    def to_value(self) -> bytes:
        return json.dumps({"index": self.index, "root_ino": self.root_ino, "path": self.path,
                           "policy": asdict(self.policy),
                           "created_ns": self.created_ns}).encode()

    @classmethod
    def from_value(cls, value: bytes) -> "Domain":
        try:
            d = json.loads(value)
            return cls(int(d["index"]), int(d["root_ino"]), str(d["path"]),
                       DomainPolicy(**d["policy"]), int(d["created_ns"]))
        except (ValueError, KeyError, TypeError) as e:
            raise MetadataDamaged(f"unreadable WORM domain record: {e}") from e

    def as_dict(self) -> dict:
        return {"index": self.index, "path": self.path, "root_ino": self.root_ino,
                "created_ns": self.created_ns, **asdict(self.policy)}


@dataclass(frozen=True)
class Commit:
    """How a committed file became WORM and how long it is kept."""

    committed_ns: int
    retain_until_ns: int
    rule: str  # "chmod" (write bits removed) or "autocommit"

    def to_value(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_value(cls, value: bytes) -> "Commit":
        try:
            d = json.loads(value)
            return cls(int(d["committed_ns"]), int(d["retain_until_ns"]), str(d["rule"]))
        except (ValueError, KeyError, TypeError) as e:
            raise MetadataDamaged(f"unreadable WORM commit record: {e}") from e


@dataclass(frozen=True)
class Hold:
    """One named legal hold on a file (holds stack: each case its own)."""

    name: str
    added_ns: int  # compliance clock

    def to_value(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_value(cls, value: bytes) -> "Hold":
        try:
            d = json.loads(value)
            return cls(str(d["name"]), int(d["added_ns"]))
        except (ValueError, KeyError, TypeError) as e:
            raise MetadataDamaged(f"unreadable WORM hold record: {e}") from e
