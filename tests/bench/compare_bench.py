"""scripts/bench before and after a change, in one run: another revision's code against this
checkout's, interleaved, on the same machine.

The other revision is checked out into a temporary git worktree; each round runs
``tests.bench.run_bench`` once from that tree and once from this one (alternating which goes
first), each measuring sofs against its own trivial pyfuse3 passthrough mount. Both sides
print their own table; the summary compares each row's sofs/passthrough ratio, side by side
(median over the rounds), so machine noise that moves both mounts alike cancels out. A row whose
ratio changed by less than the spread between rounds of the same side changed by noise. The
summary also gives sofs's own median rate per side: when the passthrough is the noisy one
(a 1 GiB write through the page cache varies 2x here), the interleaved absolute rates are the
better reading.

    scripts/bench-compare 1663721                       # 2 rounds of the default rows
    scripts/bench-compare HEAD~3 --rounds 3 -- --size-gib 0.5 --small-count 2000
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Row:
    """One row of a bench table: sofs's rate and its ratio to the passthrough's."""

    sofs: float
    ratio: float


def _rate(cell: str) -> float:
    """``245.0 MiB/s`` or ``1,309/s`` -> the number."""
    return float(cell.split()[0].removesuffix("/s").replace(",", ""))


def parse_table(text: str) -> dict[str, Row]:
    """The rows of the first table run_bench printed (``--mounts sofs passthrough``)."""
    rows: dict[str, Row] = {}
    in_table = False
    for line in text.splitlines():
        if line.startswith("test "):
            in_table = True
            continue
        if not in_table or line.startswith("---"):
            continue
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 4 and cells[1] != "-" and cells[3] != "-":
            rows[cells[0]] = Row(_rate(cells[1]), float(cells[3]))
    return rows


def run_side(tree: Path, bench_args: list[str]) -> tuple[str, dict[str, Row]]:
    """One run of the bench from TREE; its output and its rows."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-m", "tests.bench.run_bench", "--mounts", "sofs", "passthrough", *bench_args]
    res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"bench in {tree} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res.stdout, parse_table(res.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/bench-compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Arguments after -- go to scripts/bench on both sides.")
    p.add_argument("rev", help="the revision to compare with (a commit, tag or branch)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of both sides (default 2)")
    argv = sys.argv[1:] if argv is None else argv
    bench_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.bench_args = bench_args
    with tempfile.TemporaryDirectory(prefix="sofs-bench-compare-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.rev],
                       check=True, capture_output=True)
        try:
            sides = {args.rev: base, "this checkout": REPO}
            got: dict[str, list[dict[str, Row]]] = {name: [] for name in sides}
            for r in range(args.rounds):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for name in order:
                    print(f"== round {r + 1}: {name}", flush=True)
                    out, ratios = run_side(sides[name], args.bench_args)
                    print(out, flush=True)
                    got[name].append(ratios)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)],
                           capture_output=True)
    labels = list(got["this checkout"][0])
    names = list(sides)
    rows = [["row"] + [f"sofs/pt {n}" for n in names] + ["change"]
            + [f"sofs {n}" for n in names] + ["change", "sofs/pt single values"]]
    for label in labels:
        runs = {n: [run[label] for run in got[n] if label in run] for n in names}
        cells = [label]
        for field in ("ratio", "sofs"):
            meds = [statistics.median(getattr(r, field) for r in runs[n]) if runs[n] else None for n in names]
            fmt = "{:.2f}" if field == "ratio" else "{:,.1f}"
            cells += [fmt.format(m) if m is not None else "-" for m in meds]
            before, after = meds
            cells.append(f"{(after / before - 1) * 100:+.0f}%" if before and after else "-")
        cells.append("; ".join(" ".join(f"{r.ratio:.2f}" for r in runs[n]) for n in names))
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"== summary: median of {args.rounds} rounds per side; sofs/pt is the ratio to the passthrough "
          "measured next to it, sofs its rate (MiB/s or files/s)")
    for row in rows:
        print("  ".join(c.ljust(w) if i in (0, len(row) - 1) else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
