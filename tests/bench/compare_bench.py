"""scripts/bench before and after a change, in one run: another revision's code against this
checkout's, interleaved, on the same machine.

The other revision is checked out into a temporary git worktree; each round runs
``tests.bench.run_bench`` once from that tree and once from this one (alternating which goes
first), each measuring sofs against its own trivial pyfuse3 passthrough mount. Both sides
print their own table; the summary compares each row's sofs/passthrough ratio, side by side
(median over the rounds), so machine noise that moves both mounts alike cancels out. A row whose
ratio changed by less than the spread between rounds of the same side changed by noise.

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
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RATIO_RE = re.compile(r"^(?P<label>\S.*?)\s{2,}.*\s(?P<ratio>\d+\.\d\d)\s*$")


def run_side(tree: Path, bench_args: list[str]) -> tuple[str, dict[str, float]]:
    """One run of the bench from TREE; its output and each row's sofs/pt ratio."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-m", "tests.bench.run_bench", "--mounts", "sofs", "passthrough", *bench_args]
    res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"bench in {tree} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    ratios: dict[str, float] = {}
    in_table = False
    for line in res.stdout.splitlines():
        if line.startswith("test "):
            in_table = True
            continue
        if in_table and not line.strip():
            break
        m = RATIO_RE.match(line) if in_table else None
        if m:
            ratios[m.group("label")] = float(m.group("ratio"))
    return res.stdout, ratios


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
            got: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
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
    rows = [["row"] + [f"sofs/pt {n}" for n in names] + ["change", "single values"]]
    for label in labels:
        vals = {n: [run[label] for run in got[n] if label in run] for n in names}
        meds = [statistics.median(vals[n]) if vals[n] else None for n in names]
        before, after = meds
        rows.append([label] + [f"{m:.2f}" if m is not None else "-" for m in meds]
                    + [f"{(after / before - 1) * 100:+.0f}%" if before and after else "-",
                       "; ".join(" ".join(f"{v:.2f}" for v in vals[n]) for n in names)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"== summary: sofs/passthrough per row, median of {args.rounds} rounds")
    for row in rows:
        print("  ".join(c.ljust(w) if i in (0, len(row) - 1) else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
