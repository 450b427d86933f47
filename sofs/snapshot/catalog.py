"""The catalog of a volume's snapshots: their names, where they live, and the file listing them.

Layout, under the volume's directory (``VOLUME_DIR``, :mod:`sofs.volume`)::

    VOLUME_DIR/snapshots.json        the catalog (this module): the snapshots and their state
    VOLUME_DIR/snapshots/NAME/       a snapshot: a RocksDB checkpoint of VOLUME_DIR/meta
    VOLUME_DIR/snapshots/.new-NAME/  a snapshot being taken (a crash leaves it: removed later)

The catalog is the truth: a directory under ``snapshots/`` that it does not list is a leftover
of a crash and is removed by the next create or delete (:meth:`Snapshots.tidy
<sofs.snapshot.manager.Snapshots.tidy>`). It is replaced atomically (:mod:`chunkstore.atomicfile`)
and made empty before the first snapshot is taken, so a ``snapshots/`` directory with a
snapshot in it and no catalog means the catalog was lost: the garbage collector then stops
(:mod:`.pins`). Document::

    {"format": "sofs-snapshots", "version": 1, "next_slot": N,
     "snapshots": [{"name": NAME, "created_ns": N, "meta_bytes": N, "state": "ready",
                    "scheduled": false, "slot": N}, ...]}

``state`` is ``ready`` or ``deleting`` (listed no more, its chunks being given back to the
collector: :meth:`Snapshots.delete <sofs.snapshot.manager.Snapshots.delete>`); ``scheduled``
says the mount's schedule took it (and deletes it in time, :mod:`.schedule`). ``slot`` is the
snapshot's number, never given to another snapshot of the volume (``next_slot`` is the next
one): a mount places the snapshot's inode numbers by it (:mod:`fuse_mount.snapshotview`), so an
NFS file handle of a snapshot's file stays that file's across remounts and never finds a file
of another snapshot.

Names: 1 to 80 characters out of letters, digits and ``@ . _ + -``, not starting with ``.``;
the default is the time of creation as Samba's ``shadow_copy2`` module reads it,
``@GMT-YYYY.MM.DD-HH.MM.SS`` (UTC), so Windows clients can see the snapshots as "previous
versions".
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from pathlib import Path

from chunkstore.atomicfile import atomic_write

from ..errors import InvalidArgument, SnapshotUnreadable

SNAPSHOTS_DIR = "snapshots"
CATALOG_FILE = "snapshots.json"
NEW_PREFIX = ".new-"
READY = "ready"
DELETING = "deleting"
GMT_FORMAT = "@GMT-%Y.%m.%d-%H.%M.%S"
FIRST_SLOT = 2  # slot 1 is the mount's .snapshots directory itself
MAX_SLOT = (1 << 23) - 1  # what a mount can place (fuse_mount.snapshotview)
_FORMAT = "sofs-snapshots"
_NAME = re.compile(r"^[A-Za-z0-9@_+-][A-Za-z0-9@._+-]{0,79}$")


def check_name(name: str) -> str:
    """``name`` if a snapshot may be called so; InvalidArgument (saying why) otherwise."""
    if not _NAME.match(name):
        raise InvalidArgument(f"bad snapshot name {name!r}: use 1 to 80 letters, digits, '@', "
                              "'.', '_', '+', '-', not starting with '.'")
    return name


def default_name(now_ns: int) -> str:
    """The name of a snapshot taken at ``now_ns`` (unix ns): ``@GMT-YYYY.MM.DD-HH.MM.SS``."""
    when = datetime.datetime.fromtimestamp(now_ns // 1_000_000_000, datetime.timezone.utc)
    return when.strftime(GMT_FORMAT)


def snapshots_dir(vdir: Path) -> Path:
    return Path(vdir) / SNAPSHOTS_DIR


def catalog_path(vdir: Path) -> Path:
    return Path(vdir) / CATALOG_FILE


def snapshot_path(vdir: Path, name: str) -> Path:
    """Where the snapshot ``name`` of the volume in ``vdir`` keeps its metadata."""
    return snapshots_dir(vdir) / check_name(name)


@dataclasses.dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot as the catalog lists it."""

    name: str
    created_ns: int
    meta_bytes: int  # the size of its metadata files (hard links: shared with the volume at first)
    state: str = READY
    scheduled: bool = False  # taken by the schedule (:mod:`.schedule`), which also deletes it
    slot: int = FIRST_SLOT  # never reused (module docstring)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: object) -> "SnapshotInfo":
        if not isinstance(raw, dict):
            raise ValueError("a snapshot entry is not an object")
        info = cls(name=str(raw["name"]), created_ns=int(raw["created_ns"]),
                   meta_bytes=int(raw["meta_bytes"]), state=str(raw["state"]),
                   scheduled=bool(raw.get("scheduled", False)), slot=int(raw["slot"]))
        check_name(info.name)
        if not FIRST_SLOT <= info.slot <= MAX_SLOT:
            raise ValueError(f"slot {info.slot} out of range")
        if info.state not in (READY, DELETING):
            raise ValueError(f"unknown state {info.state!r}")
        return info


def load(vdir: Path) -> list[SnapshotInfo] | None:
    """The snapshots of the volume in ``vdir``, oldest first; None when it has no catalog.
    SnapshotUnreadable when the catalog cannot be read or is not one."""
    got = _read(vdir)
    return None if got is None else got[0]


def next_slot(vdir: Path) -> int:
    """The slot of the next snapshot of the volume in ``vdir`` (module docstring)."""
    got = _read(vdir)
    return FIRST_SLOT if got is None else got[1]


def _read(vdir: Path) -> tuple[list[SnapshotInfo], int] | None:
    path = catalog_path(vdir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SnapshotUnreadable(f"{path}: cannot read the snapshot catalog: {e}") from e
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT or doc.get("version") != 1:
            raise ValueError("not a snapshot catalog of version 1")
        items = doc["snapshots"]
        if not isinstance(items, list):
            raise ValueError("'snapshots' is not a list")
        infos = [SnapshotInfo.from_dict(raw) for raw in items]
        slot = int(doc["next_slot"])
        if slot <= max((i.slot for i in infos), default=0) or len({i.slot for i in infos}) < len(infos):
            raise ValueError("its slots overlap")
    except (ValueError, KeyError, TypeError, InvalidArgument) as e:
        raise SnapshotUnreadable(f"{path}: the snapshot catalog is damaged: {e}") from None
    return sorted(infos, key=lambda i: (i.created_ns, i.name)), slot


def save(vdir: Path, infos: list[SnapshotInfo]) -> None:
    """Replace the catalog of the volume in ``vdir`` (atomically, durably); ``next_slot``
    only grows."""
    slot = max(next_slot(vdir), max((i.slot + 1 for i in infos), default=FIRST_SLOT))
    doc = {"format": _FORMAT, "version": 1, "next_slot": slot,
           "snapshots": [i.as_dict() for i in infos]}
    atomic_write(catalog_path(vdir), json.dumps(doc, indent=2) + "\n", mode=0o600)


def has_snapshot_dirs(vdir: Path) -> bool:
    """Whether ``snapshots/`` holds a snapshot's directory (not a leftover ``.new-``)."""
    sdir = snapshots_dir(vdir)
    return sdir.is_dir() and any(not p.name.startswith(".") for p in sdir.iterdir())
