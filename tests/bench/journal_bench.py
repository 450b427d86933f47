"""What the metadata journal in the RING costs (issue 13): file creates with synced close on the
embedded ring, on a networked RING without etcd (no lease, no journal: the behaviour before the
journal) and on the same kind of RING with etcd (lease and journal), in one run.

Mounts, all started before the first row, measured back to back on every row:

  passthrough+fsync  the trivial pyfuse3 passthrough, fsync on every close: the baseline
  sofs-local         the embedded ring (6 disk directories), synced close, no journal
  sofs-net           3 ``sofs-node`` processes (2 disks each) on loopback, cluster made
                     without etcd: synced close, checkpoints only
  sofs-net+journal   the same with etcd (``cluster create --etcd``): the mount holds the
                     volume's lease and every close waits for its journal append

Rows (files/s): create+write+close of small files (4 KiB) and of CT-slice-sized files
(512 KiB) from one writer, and of small files from 8 concurrent writers (their closes share
journal appends: group commit). The last column is what the journal keeps of the rate
without it on the networked RING (issue 13's bound: at least 0.5).

    scripts/bench-journal                      # ~2 minutes here (root: FUSE mounts)
    scripts/bench-journal --count 500 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.etcdnet import etcd_cluster
from tests.netcluster import NetCluster, sofsctl

from .run_bench import BenchError, Data, PassthroughMount, SofsMount, kill, log, mounted

KiB = 1 << 10
WRITERS = 8


class NetMount:
    """A volume of a networked RING mounted from a client data directory."""

    def __init__(self, name: str, work: Path, cluster: NetCluster) -> None:
        self.name, self.cluster = name, cluster
        self.mnt = work / f"mnt-{name.replace('+', '-')}"
        self.data_dir = cluster.client_dir("client")
        self.pid: int | None = None

    def start(self) -> None:
        self.mnt.mkdir()
        sofsctl(self.data_dir, "volume", "create", "bench", "--cos", "2")
        sofsctl(self.data_dir, "mount", "bench", str(self.mnt), "--checkpoint-interval",
                "3600")
        state = self.data_dir / "run" / "mounts" / "bench.json"
        self.pid = json.loads(state.read_text())["pid"]

    def problem(self) -> str | None:
        if self.pid and not os.path.exists(f"/proc/{self.pid}"):
            return f"{self.name} mount process is gone"
        return None

    def journal(self) -> dict | None:
        res = sofsctl(self.data_dir, "status", "--json", check=False)
        try:
            vols = json.loads(res.stdout)["volumes"]
        except (ValueError, KeyError):
            return None
        return next((v.get("journal") for v in vols if v["name"] == "bench"), None)

    def stop(self) -> None:
        if mounted(self.mnt) or self.pid:
            sofsctl(self.data_dir, "umount", str(self.mnt), check=False, timeout=400)
        kill(self.pid)
        if mounted(self.mnt):
            os.system(f"umount -l {self.mnt}")


def creates(root: Path, data: Data, count: int, size: int, stream: int,
            writers: int = 1) -> float:
    """Files/s of create+write+close of COUNT files of SIZE bytes, by WRITERS threads."""
    root.mkdir()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            for i in range(w, count, writers):
                fd = os.open(root / f"f{i:06d}", flags, 0o644)
                try:
                    os.write(fd, data.block(stream, i, size))
                finally:
                    os.close(fd)
        except OSError as e:
            errors.append(e)

    os.sync()
    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    if errors:
        raise BenchError(f"{root}: {errors[0]}")
    for i in range(count):
        os.unlink(root / f"f{i:06d}")
    return count / took


ROWS = [("small", "create+write+close {n} x 4 KiB, 1 writer", 4 * KiB, 1),
        ("ct", "create+write+close {n} x 512 KiB, 1 writer", 512 * KiB, 1),
        ("small8", f"create+write+close {{n}} x 4 KiB, {WRITERS} writers", 4 * KiB, WRITERS)]
NAMES = ["passthrough+fsync", "sofs-local", "sofs-net", "sofs-net+journal"]


def table(results: dict[str, dict[str, list[float]]], count: int) -> str:
    lines = [f"| test [files/s] | {' | '.join(NAMES)} | local/pt | journal/net |",
             "|" + "---|" * (len(NAMES) + 3)]
    for key, label, _, _ in ROWS:
        med = {n: statistics.median(results[n][key]) if results.get(n, {}).get(key) else None
               for n in NAMES}

        def ratio(a: str, b: str, med: dict = med) -> str:
            x, y = med[a], med[b]
            return f"{x / y:.2f}" if x and y else "-"

        cells = [f"{med[n]:,.1f}" if med[n] else "-" for n in NAMES]
        lines.append(f"| {label.format(n=count)} | {' | '.join(cells)} | "
                     f"{ratio('sofs-local', 'passthrough+fsync')} | "
                     f"{ratio('sofs-net+journal', 'sofs-net')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/bench-journal", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=300, help="files per row [300]")
    p.add_argument("--repeat", type=int, default=1, help="runs per row; medians shown [1]")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("scripts/bench-journal needs root (FUSE mounts)", file=sys.stderr)
        return 2
    if shutil.which("etcd") is None:
        print("scripts/bench-journal needs etcd (scripts/install)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="sofs-bench-journal-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    results: dict[str, dict[str, list[float]]] = {}
    journal = None
    with contextlib.ExitStack() as stack:
        plain = NetCluster(work / "plain", nodes=3, disks=2)
        stack.callback(plain.cleanup)
        _, _, with_etcd = stack.enter_context(etcd_cluster(work / "etcd", nodes=3, disks=2))
        local = SofsMount(work)
        local.name = "sofs-local"
        mounts = [PassthroughMount(work, fsync_on_close=True), local,
                  NetMount("sofs-net", work, plain), NetMount("sofs-net+journal", work, with_etcd)]
        for m in mounts:
            stack.callback(m.stop)
        for m in mounts:
            log(f"starting {m.name} ...")
            m.start()
        data = Data()
        for rep in range(args.repeat):
            for r, (key, _label, size, writers) in enumerate(ROWS):
                order = mounts if (rep + r) % 2 == 0 else mounts[::-1]
                for i, m in enumerate(order):
                    log(f"[{m.name}] {key} (run {rep + 1}) ...")
                    rate = creates(m.mnt / f"{key}{rep}", data, args.count, size,
                                   stream=rep * 16 + r * 4 + i, writers=writers)
                    results.setdefault(m.name, {}).setdefault(key, []).append(rate)
                    problem = m.problem()
                    if problem:
                        raise BenchError(problem)
        journal = mounts[3].journal()
    shutil.rmtree(work, ignore_errors=True)
    print(table(results, args.count))
    if journal:
        print(f"\njournal of sofs-net+journal: {journal['groups']} appends for all its "
              f"commits, {journal['entries']} entries, {journal['bytes'] / KiB:,.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
