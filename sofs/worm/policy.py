"""A WORM domain's policy and the retention arithmetic it implies (no I/O).

A WORM domain is a directory tree of a volume whose regular files become immutable once
committed (issue 12; SnapLock and SmartLock are the models). Its policy, fixed at creation
(the mode can never change):

* ``mode``: ``compliance`` (nothing removes a file before its retention ends) or
  ``enterprise`` (``sofsctl worm delete --privileged`` may, and is recorded);
* ``default``, ``minimum``, ``maximum`` retention: a committed file is retained until the time
  its atime asks for, clamped to [commit + minimum, commit + maximum], or commit + default
  when it asks for nothing later than its commit time;
* ``autocommit``: a file not modified for this long is committed (at least 5 minutes, never
  0, so a PACS can still write a temporary file and rename it into place).

After commit a retention can only be extended, never shortened (:func:`extended`). Durations
are given as ``20y``, ``6mo``, ``30d``, ``12h``, ``15m`` or ``90s`` (:func:`parse_duration`):
a year counts 365 days and a month 30, the conservative reading for a legal minimum is the
caller's (round up when in doubt). Times are unix nanoseconds of the compliance clock
(:mod:`.clock`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidArgument

NS = 1_000_000_000
MINUTE = 60 * NS
DAY = 86400 * NS
UNITS = {"s": NS, "m": MINUTE, "h": 3600 * NS, "d": DAY, "mo": 30 * DAY, "y": 365 * DAY}
MIN_AUTOCOMMIT_NS = 5 * MINUTE
MAX_RETENTION_NS = 1000 * 365 * DAY  # what a duration may say at most (far past any law)
MODES = ("compliance", "enterprise")
_DURATION = re.compile(r"\s*([0-9]+)\s*(mo|y|d|h|m|s)\s*")


def parse_duration(text: str) -> int:
    """``20y``, ``6mo``, ``30d``, ``12h``, ``15m``, ``90s`` -> nanoseconds; InvalidArgument
    naming what is wrong otherwise."""
    m = _DURATION.fullmatch(text or "")
    if m is None:
        raise InvalidArgument(f"not a duration: {text!r} (write it as a number and a unit: "
                              "20y, 6mo, 30d, 12h, 15m or 90s)")
    ns = int(m.group(1)) * UNITS[m.group(2)]
    if ns > MAX_RETENTION_NS:
        raise InvalidArgument(f"duration {text!r} is longer than 1000 years")
    return ns


def format_duration(ns: int) -> str:
    """The shortest exact spelling of ``ns`` in the units :func:`parse_duration` reads."""
    for unit in ("y", "mo", "d", "h", "m", "s"):
        if ns and ns % UNITS[unit] == 0:
            return f"{ns // UNITS[unit]}{unit}"
    return f"{ns // NS}s"


@dataclass(frozen=True)
class DomainPolicy:
    """The policy of one WORM domain (module docstring); durations in nanoseconds."""

    mode: str
    default_ns: int
    minimum_ns: int
    maximum_ns: int
    autocommit_ns: int

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidArgument(f"WORM mode must be compliance or enterprise, not "
                                  f"{self.mode!r}")
        if self.autocommit_ns < MIN_AUTOCOMMIT_NS:
            raise InvalidArgument(f"autocommit {format_duration(self.autocommit_ns)} is "
                                  "shorter than 5 minutes: a file being written could be "
                                  "committed half-written (and it is never 0)")
        if not 0 <= self.minimum_ns <= self.default_ns <= self.maximum_ns:
            raise InvalidArgument(
                f"retention needs minimum <= default <= maximum, got minimum "
                f"{format_duration(self.minimum_ns)}, default "
                f"{format_duration(self.default_ns)}, maximum "
                f"{format_duration(self.maximum_ns)}")

    @classmethod
    def parse(cls, mode: str, default: str = "20y", minimum: str = "1d",
              maximum: str = "70y", autocommit: str = "15m") -> "DomainPolicy":
        """From the words of ``sofsctl worm domain create`` (its defaults here)."""
        return cls(mode, parse_duration(default), parse_duration(minimum),
                   parse_duration(maximum), parse_duration(autocommit))

    def retain_until(self, commit_ns: int, asked_ns: int) -> int:
        """The retention of a file committed at ``commit_ns`` whose atime asks for
        ``asked_ns``: the domain's default when it asks for nothing after its commit, else
        what it asks, clamped to [minimum, maximum] after the commit."""
        if asked_ns <= commit_ns:
            return commit_ns + self.default_ns
        return min(max(asked_ns, commit_ns + self.minimum_ns), commit_ns + self.maximum_ns)

    def extended(self, commit_ns: int, current_ns: int, asked_ns: int) -> int:
        """A committed file's retention after a request for ``asked_ns``: it only ever grows,
        to at most commit + maximum; a request for less than ``current_ns`` changes nothing
        (the caller refuses it, EPERM)."""
        if asked_ns <= current_ns:
            return current_ns
        return min(asked_ns, max(current_ns, commit_ns + self.maximum_ns))

    def autocommit_due(self, modified_ns: int, now_ns: int) -> bool:
        """Whether a file last modified at ``modified_ns`` is committed by now."""
        return now_ns - modified_ns >= self.autocommit_ns
