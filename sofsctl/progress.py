"""The progress line of a long sofsctl job on the admin's terminal.

One line per job, redrawn in place on stderr::

    repair   [#########-----------]  45%  1.2 GiB / 2.7 GiB  85.3 MiB/s  ETA 0:00:18

counts where bytes make no sense (``12,034 / 40,000 inodes  3,100/s  ETA 0:00:09``), and
without bar, percentage and ETA while the total is not known yet. The rate is measured over
a sliding window of the last :data:`WINDOW_S` seconds on an injectable clock (tests drive it
with :class:`chunkstore.clock.FakeClock`); the ETA is the amount left at that rate.
:meth:`ProgressLine.finish` draws the last state and ends the line: at exactly 100% with the
job's average rate and duration on success, or what was done and why it stopped otherwise.
Nothing is ever written to a stream that is not a terminal (scripts, ``--json``).

:class:`PhaseLines` draws one such line per phase of a job of several phases (fsck);
:func:`job_callback` adapts a line to the layers' ``progress(done, total, *rest)``
callbacks, whose optional ``(bytes_done, bytes_total)`` after the counts are drawn as bytes.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from chunkstore.clock import SYSTEM_CLOCK, Clock

from .common import human

BYTES = "B"           # the unit of amounts drawn as bytes (KiB, MiB, ... as they grow)
WINDOW_S = 10.0       # the rate is measured over this many seconds
REDRAW_S = 0.1        # a line is redrawn at most this often (and at every change of unit)
BAR_WIDTH = 20
MIN_BAR_WIDTH = 6     # on a narrow terminal the bar shrinks to this before the line is cut
MIN_SPAN_S = 0.5      # no rate is shown before the samples span this long
LABEL_WIDTH = 8


def is_terminal(stream: TextIO) -> bool:
    """Whether STREAM is a terminal (a closed or fake stream is not)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def format_amount(n: float, unit: str) -> str:
    """``1.2 GiB`` for bytes, ``12,034 inodes`` for a count (``12,034`` without unit)."""
    if unit == BYTES:
        return human(n)
    return f"{int(n):,} {unit}".rstrip()


def format_rate(rate: float | None, unit: str) -> str:
    """``85.3 MiB/s`` for bytes, ``3,100/s`` for counts; ``--/s`` when not known yet."""
    if rate is None:
        return "--/s"
    if unit == BYTES:
        return f"{human(rate)}/s"
    return f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.1f}/s"


def format_duration(seconds: float | None) -> str:
    """``0:00:18``; ``--:--:--`` when not known."""
    if seconds is None:
        return "--:--:--"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclass(frozen=True)
class _Sample:
    t: float
    done: int


class ProgressLine:
    """The progress line of one job (see the module docstring): feed it :meth:`update`, end
    it with :meth:`finish`, or use it as a context manager around the job (success, failure
    and Ctrl-C each end the line as they should). Does nothing at all when STREAM (default:
    stderr) is not a terminal."""

    def __init__(self, label: str, unit: str = BYTES, *, stream: TextIO | None = None,
                 clock: Clock = SYSTEM_CLOCK, initial_done: int = 0,
                 window_s: float = WINDOW_S, redraw_s: float = REDRAW_S,
                 columns: int | None = None) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = is_terminal(self.stream)
        self.clock = clock
        self.window_s = window_s
        self.redraw_s = redraw_s
        self.columns = columns
        self.done, self.total = initial_done, 0
        self.t0 = clock.monotonic()
        self.start_done = initial_done   # the average rate at the end counts from here
        self.samples: deque[_Sample] = deque([_Sample(self.t0, initial_done)])
        self.updated = False             # an update came: finish draws a last line
        self.finished = False
        self._drawn_at: float | None = None
        self._width = 0                  # of the line on the terminal, to blank what is left

    # ------------------------------------------------------------------ feeding

    def update(self, done: int, total: int, unit: str | None = None) -> None:
        """DONE of TOTAL (0: not known yet) are done, in UNIT (default: the line's)."""
        if self.finished:
            return
        now = self.clock.monotonic()
        changed = unit is not None and unit != self.unit
        if changed:
            self.unit = unit or self.unit
        if (changed and self.updated) or done < self.samples[-1].done:
            self.samples.clear()  # another measure, or it went back: measure afresh
            self.t0, self.start_done = now, done
        self.done, self.total, self.updated = done, total, True
        if self.samples and self.samples[-1].t == now:
            self.samples.pop()
        self.samples.append(_Sample(now, done))
        while len(self.samples) > 2 and self.samples[1].t <= now - self.window_s:
            self.samples.popleft()
        if changed or self._drawn_at is None or now - self._drawn_at >= self.redraw_s:
            self._draw(self.render(now), now)

    def finish(self, ok: bool = True, note: str | None = None) -> None:
        """Draw the last state and end the line (once). OK: the job succeeded, the line ends
        at 100% with the average rate and the duration; otherwise it shows what was done and
        NOTE (default ``stopped``). Draws nothing if no update ever came."""
        if self.finished:
            return
        self.finished = True
        if not self.updated:
            return
        now = self.clock.monotonic()
        if ok:
            self.total = max(self.total, self.done)
            self.done = self.total
        self._draw(self.render(now, final=True, ok=ok, note=note), now)
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        """The job's end: success without exception, else interrupted (Ctrl-C) or failed."""
        if kind is None:
            self.finish(ok=True)
        else:
            self.finish(ok=False, note="interrupted" if issubclass(kind, KeyboardInterrupt)
                        else "failed")

    # ------------------------------------------------------------------ measuring

    def rate(self) -> float | None:
        """Amount per second over the window; None until the samples span MIN_SPAN_S."""
        first, last = self.samples[0], self.samples[-1]
        dt = last.t - first.t
        return (last.done - first.done) / dt if dt >= MIN_SPAN_S else None

    def average_rate(self, now: float) -> float | None:
        dt = now - self.t0
        return (self.done - self.start_done) / dt if dt > 0 else None

    def eta(self) -> float | None:
        """Seconds left at the current rate; None without a total or a rate."""
        rate = self.rate()
        if not self.total or not rate or rate <= 0:
            return None
        return max(self.total - self.done, 0) / rate

    # ------------------------------------------------------------------ drawing

    def render(self, now: float, final: bool = False, ok: bool = True,
               note: str | None = None) -> str:
        """The line as drawn at NOW (FINAL: the last one, with OK and NOTE), fitted to the
        terminal's width (a narrower bar, then cut)."""
        fit = max(self._columns() - 1, 20)
        line = self._compose(now, final, ok, note, BAR_WIDTH)
        if len(line) > fit and self.total > 0:
            line = self._compose(now, final, ok, note, max(BAR_WIDTH - (len(line) - fit),
                                                           MIN_BAR_WIDTH))
        return line[:fit]

    def _compose(self, now: float, final: bool, ok: bool, note: str | None,
                 bar_width: int) -> str:
        head = f"{self.label:<{LABEL_WIDTH}}"
        if self.total > 0:
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * bar_width)
            pct = 100 if self.done >= self.total else min(int(frac * 100), 99)
            amount = (f"{format_amount(self.done, BYTES)} / {format_amount(self.total, BYTES)}"
                      if self.unit == BYTES else
                      f"{self.done:,} / {format_amount(self.total, self.unit)}")
            head += f" [{'#' * filled}{'-' * (bar_width - filled)}] {pct:>3}%  {amount}"
        else:
            head += f" {format_amount(self.done, self.unit)}"
        elapsed = format_duration(now - self.t0)
        if not final:
            eta = f"  ETA {format_duration(self.eta())}" if self.total > 0 else ""
            return f"{head}  {format_rate(self.rate(), self.unit)}{eta}"
        rate = format_rate(self.average_rate(now), self.unit)
        if ok:
            return f"{head}  {rate}  in {elapsed}"
        return f"{head}  {rate}  {note or 'stopped'} after {elapsed}"

    def _draw(self, line: str, now: float) -> None:
        self._drawn_at = now
        if not self.enabled:
            return
        pad = " " * max(self._width - len(line), 0)
        self.stream.write(f"\r{line}{pad}")
        self.stream.flush()
        self._width = len(line)

    def _columns(self) -> int:
        if self.columns is not None:
            return self.columns
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (AttributeError, ValueError, OSError):
            return 80


class PhaseLines:
    """One :class:`ProgressLine` per phase of a job of several phases: call it as
    ``progress(phase, done, total)``; each phase's line ends (at 100%) when the next begins.
    UNITS names the unit of each phase's counts."""

    def __init__(self, units: dict[str, str] | None = None, *, stream: TextIO | None = None,
                 clock: Clock = SYSTEM_CLOCK, columns: int | None = None) -> None:
        self.units = units or {}
        self.stream = stream
        self.clock = clock
        self.columns = columns
        self.line: ProgressLine | None = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.line is None or self.line.label != phase:
            self.finish()
            self.line = ProgressLine(phase, self.units.get(phase, ""), stream=self.stream,
                                     clock=self.clock, columns=self.columns)
        self.line.update(done, total)

    def finish(self, ok: bool = True, note: str | None = None) -> None:
        """End the current phase's line (OK: it completed)."""
        if self.line is not None:
            self.line.finish(ok, note)
            self.line = None


def job_callback(line: ProgressLine, unit: str) -> Callable[..., None]:
    """A layer's progress callback drawing on LINE: ``progress(done, total)`` counts in UNIT,
    ``progress(done, total, bytes_done, bytes_total)`` bytes (a ``phase=`` keyword, which
    the mount process adds to some, is ignored)."""
    def progress(done: int, total: int, *rest: int, phase: str = "") -> None:
        if len(rest) >= 2:
            line.update(rest[0], rest[1], BYTES)
        else:
            line.update(done, total, unit)
    return progress
