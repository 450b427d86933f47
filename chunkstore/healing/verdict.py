"""The RING's health verdict: ``HEALTH_OK`` / ``HEALTH_WARN`` / ``HEALTH_ERR`` with reasons.

Pure logic, no I/O: callers gather the facts (a :class:`~chunkstore.healing.sweep.HealthReport`,
which disks are missing or unreadable, how full each disk's file system is, the volumes'
policies) and this module turns them into :class:`Reason` values and a :class:`Verdict`
(the worst level wins). ``sofsctl status`` prints the verdict as its first line and exits with
its level (0 / 1 / 2, as a Nagios or Zabbix check expects); other layers may add reasons of
their own (a dead mount, a failed export) built with :class:`Reason`.

A missing disk never leaves the chunk counts saying "fully protected": see :func:`chunk_line`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from chunkstore.healing.sweep import HealthReport
from chunkstore.protection.policy import Policy

FILL_WARN = 0.90  # a disk's file system this full is a warning
FILL_ERR = 0.97   # and this full an error (writes will soon fail with ENOSPC)


class Level(enum.IntEnum):
    """A verdict's level; its value is ``sofsctl status``'s exit status."""

    OK = 0
    WARN = 1
    ERR = 2

    @property
    def label(self) -> str:
        return f"HEALTH_{self.name}"


@dataclass(frozen=True)
class Reason:
    level: Level
    text: str


@dataclass(frozen=True)
class Verdict:
    level: Level
    reasons: tuple[Reason, ...]

    def line(self) -> str:
        """``HEALTH_OK``, or ``HEALTH_WARN: reason; reason`` (the worst reasons first)."""
        if not self.reasons:
            return self.level.label
        return f"{self.level.label}: " + "; ".join(r.text for r in self.reasons)


def combine(reasons: Iterable[Reason | None]) -> Verdict:
    """The verdict of REASONS (``None`` entries skipped): the worst level wins; the reasons are
    kept, errors before warnings, otherwise in the order given."""
    kept = [r for r in reasons if r is not None]
    kept.sort(key=lambda r: -r.level)  # stable: same-level reasons keep their order
    level = max((r.level for r in kept), default=Level.OK)
    return Verdict(level, tuple(kept))


def tolerance(policies: Iterable[Policy]) -> int | None:
    """How many disks may be lost before some chunk of some of POLICIES becomes unreadable:
    the smallest ``width - min_pieces`` among them (None without any policy)."""
    return min((p.width - p.min_pieces for p in policies), default=None)


def disk_reasons(problems: Mapping[str, str], tolerated: int | None,
                 counted_without: bool = False) -> list[Reason]:
    """PROBLEMS maps each disk that is missing, not initialised or unreadable to a description
    (``"missing (/srv/sofs/disks/d3)"``); each is a warning, and more of them than TOLERATED
    (see :func:`tolerance`) is an error, unless COUNTED_WITHOUT: the chunk count already saw
    every one of these disks as unavailable, so its degraded and unrecoverable figures (see
    :func:`chunk_reasons`) say what the data has lost (a networked ring whose down nodes'
    data was rebuilt elsewhere is a warning, not an error)."""
    out = [Reason(Level.WARN, f"disk {d} {what}") for d, what in sorted(problems.items())]
    if tolerated is not None and len(problems) > tolerated and not counted_without:
        out.insert(0, Reason(Level.ERR, f"{len(problems)} disks unavailable, more than the "
                                        f"volumes' policies tolerate ({tolerated}): data "
                                        "may be unreadable"))
    return out


def chunk_reasons(h: HealthReport) -> list[Reason]:
    """Degraded chunks are a warning, unrecoverable ones an error."""
    out = []
    if h.unrecoverable:
        out.append(Reason(Level.ERR, f"{h.unrecoverable} chunks unrecoverable"))
    if h.degraded:
        out.append(Reason(Level.WARN, f"{h.degraded} chunks degraded"))
    return out


def fill_reason(disk_ids: Sequence[str], used: float) -> Reason | None:
    """DISK_IDS share one file system whose USED fraction (0..1) is this; None below 90%."""
    if used < FILL_WARN:
        return None
    level = Level.ERR if used >= FILL_ERR else Level.WARN
    which = f"disk {disk_ids[0]}" if len(disk_ids) == 1 else f"disks {', '.join(disk_ids)}"
    return Reason(level, f"{which} {used * 100:.0f}% full")


def chunk_line(h: HealthReport, missing: Sequence[str] = ()) -> str:
    """The ``chunks:`` line of ``sofsctl status``.

    MISSING names the disks found missing or unusable by the caller. While any disk is (there
    or in ``h.disks_unavailable``) the line never says "fully protected": if the count saw
    those disks as unavailable, its degraded and unrecoverable figures stand; if it did not
    (a mount process whose disk indexes are still open after the directory went away), no
    figure about protection is trusted."""
    gone = sorted(set(missing) | set(h.disks_unavailable))
    if not gone:
        return (f"chunks: {h.chunks} ({h.protected} fully protected, {h.degraded} degraded, "
                f"{h.unrecoverable} unrecoverable)")
    names = ", ".join(gone)
    disk = f"disk {names} is" if len(gone) == 1 else f"disks {names} are"
    if set(gone) <= set(h.disks_unavailable):
        return (f"chunks: {h.chunks} ({h.degraded} degraded, {h.unrecoverable} unrecoverable; "
                f"{h.protected} with every piece in place, but {disk} unavailable: "
                "run sofsctl repair)")
    return (f"chunks: {h.chunks} (protection unknown while {disk} missing: "
            "run sofsctl repair)")
