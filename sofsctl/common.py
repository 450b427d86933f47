"""What every sofsctl command module shares: the data directory, errors, sizes and tables."""

from __future__ import annotations

import datetime
import math
import os
from pathlib import Path

import click

DEFAULT_HOME_ROOT = Path("/var/lib/sofs")


def default_data_dir() -> Path:
    env = os.environ.get("SOFS_HOME")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return DEFAULT_HOME_ROOT
    return Path.home() / ".local" / "share" / "sofs"


def utc_ns(ns: int | None) -> str:
    """A time in nanoseconds since the epoch as the tables show it ("-" for none)."""
    if ns is None:
        return "-"
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def parse_size(text: str) -> int:
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    suffix = t[-1] if t and t[-1] in "kmg" else ""
    try:
        return int(t[: len(t) - len(suffix)]) * units[suffix]
    except ValueError:
        raise click.BadParameter(f"not a size: {text!r} (try 4M, 1024K)") from None


class FiniteFloat(click.FloatRange):
    """A number in a range that is also finite: click's FloatRange lets ``nan`` through every
    bound (each comparison with it is false) and ``inf`` through an open one."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class Failure(click.ClickException):
    exit_code = 1


def fail(e: Exception | str) -> Failure:
    """The click error that ends a command with message E (exit status 1)."""
    return Failure(str(e))


pass_home = click.make_pass_decorator(Path)


def table(rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())

