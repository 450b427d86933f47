"""Scheduled snapshots: when the mount takes one, and which of them it keeps.

A volume's schedule is a :class:`Keep`, e.g. ``hourly=24,daily=30,monthly=12``, stored in
``VOLUME_DIR/snapshot-schedule.json`` (``{"format": "sofs-snapshot-schedule", "version": 1,
"keep": {"hourly": 24, ...}}``, replaced atomically; no file: no schedule). The mount process
applies it (:func:`run_schedule`, from :mod:`fuse_mount.snapshotsched`):

* **taking**: a scheduled snapshot (named ``@GMT-...``, the default name) is due when the
  current period of the finest rule (hour, day, ISO week or month, UTC) has none yet;
* **keeping**: for each rule ``KIND=N``, the newest scheduled snapshot of each of the last N
  periods of that kind that have one is kept; a scheduled snapshot that no rule keeps is
  deleted. Snapshots taken by hand (``sofsctl snapshot create``) are never deleted by the
  schedule.

The rules are pure functions of the catalog and the time, so tests give both.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Callable
from pathlib import Path

from chunkstore.atomicfile import atomic_write

from ..errors import InvalidArgument, SnapshotUnreadable
from .catalog import SnapshotInfo

SCHEDULE_FILE = "snapshot-schedule.json"
KINDS = ("hourly", "daily", "weekly", "monthly")  # finest first
MAX_KEEP = 100_000
_FORMAT = "sofs-snapshot-schedule"

Period = tuple[int, ...]


def _utc(ns: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.timezone.utc)


_PERIODS: dict[str, Callable[[datetime.datetime], Period]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
}


def period(kind: str, ns: int) -> Period:
    """The period of ``kind`` (UTC) that the time ``ns`` (unix ns) falls in."""
    return _PERIODS[kind](_utc(ns))


@dataclasses.dataclass(frozen=True)
class Keep:
    """How many scheduled snapshots of each kind are kept (0: none of that kind)."""

    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def __post_init__(self) -> None:
        for kind in KINDS:
            n = getattr(self, kind)
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_KEEP:
                raise InvalidArgument(f"snapshot schedule: {kind} must be a number of "
                                      f"snapshots from 0 to {MAX_KEEP}, not {n!r}")
        if not any(getattr(self, kind) for kind in KINDS):
            raise InvalidArgument("a snapshot schedule keeps at least one snapshot of some "
                                  "kind (e.g. hourly=24,daily=30,monthly=12)")

    @classmethod
    def parse(cls, text: str) -> "Keep":
        """``hourly=24,daily=30,monthly=12`` (any of hourly, daily, weekly, monthly)."""
        counts: dict[str, int] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            kind, sep, value = part.partition("=")
            kind = kind.strip()
            if not sep or kind not in KINDS or kind in counts:
                raise InvalidArgument(f"snapshot schedule: {part!r} is not KIND=N with KIND one "
                                      f"of {', '.join(KINDS)} (each once)")
            try:
                counts[kind] = int(value)
            except ValueError:
                raise InvalidArgument(f"snapshot schedule: {part!r}: N is not a number") from None
        return cls(**counts)

    def kinds(self) -> list[str]:
        return [kind for kind in KINDS if getattr(self, kind)]

    def __str__(self) -> str:
        return ",".join(f"{kind}={getattr(self, kind)}" for kind in self.kinds())

    def as_dict(self) -> dict:
        return {kind: getattr(self, kind) for kind in self.kinds()}


def is_due(keep: Keep, infos: list[SnapshotInfo], now_ns: int) -> bool:
    """Whether a scheduled snapshot is to be taken at ``now_ns``."""
    finest = keep.kinds()[0]
    now = period(finest, now_ns)
    return not any(i.scheduled and period(finest, i.created_ns) == now for i in infos)


def expired(keep: Keep, infos: list[SnapshotInfo]) -> list[str]:
    """The scheduled snapshots that no rule of ``keep`` keeps (module docstring), oldest
    first."""
    scheduled = sorted((i for i in infos if i.scheduled), key=lambda i: i.created_ns,
                       reverse=True)
    kept: set[str] = set()
    for kind in keep.kinds():
        seen: set[Period] = set()
        for info in scheduled:
            p = period(kind, info.created_ns)
            if p in seen:
                continue
            if len(seen) >= getattr(keep, kind):
                break
            seen.add(p)
            kept.add(info.name)  # the newest of its period: the list runs newest first
    return [i.name for i in reversed(scheduled) if i.name not in kept]


def schedule_path(vdir: Path) -> Path:
    return Path(vdir) / SCHEDULE_FILE


def load_schedule(vdir: Path) -> Keep | None:
    """The volume's schedule; None when it has none. SnapshotUnreadable for a damaged file."""
    path = schedule_path(vdir)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise SnapshotUnreadable(f"{path}: cannot read the snapshot schedule: {e}") from None
    try:
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT or doc.get("version") != 1:
            raise ValueError("not a snapshot schedule of version 1")
        keep = doc["keep"]
        if not isinstance(keep, dict) or set(keep) - set(KINDS):
            raise ValueError("'keep' is not an object of kinds")
        return Keep(**keep)
    except (ValueError, KeyError, TypeError, InvalidArgument) as e:
        raise SnapshotUnreadable(f"{path}: the snapshot schedule is damaged: {e}") from None


def save_schedule(vdir: Path, keep: Keep | None) -> None:
    """Set (or, with None, remove) the volume's schedule."""
    path = schedule_path(vdir)
    if keep is None:
        path.unlink(missing_ok=True)
        return
    doc = {"format": _FORMAT, "version": 1, "keep": keep.as_dict()}
    atomic_write(path, json.dumps(doc, indent=2) + "\n", mode=0o600)
