"""sofs over a networked RING of 6 nodes, next to the embedded ring and a passthrough, in one run.

Mounts, all started before the first row and measured back to back on every row (interleaved,
as in ``run_bench``):

  passthrough   the trivial pyfuse3 passthrough (tests/bench/passthrough.py): the baseline
  sofs-local    the embedded ring: 6 disk directories in the mount process, EC 4+2
  sofs-net      6 ``sofs-node`` processes, 2 disks each, each in its own network namespace on
                one bridge (tests/netlab.py), the mount in a 7th namespace, EC 4+2; every
                piece crosses a veth pair and the loopback TCP stack

Rows: seq write of a large file (1 MiB writes + fsync), seq read of it with cold caches
(MiB/s), and create+write+close of CT-slice-sized files (files/s). Then the rebuild: one node
of sofs-net is killed, its arcs move (``--down-after`` 2 s) and the healer rebuilds them; the
table shows the MiB of pieces rebuilt per second of the sweep.

    scripts/bench-net                     # ~3 minutes here (root: namespaces and mounts)
    scripts/bench-net --size-gib 0.25 --ct-count 200
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fuse_mount import control
from tests.netcluster import NetCluster, sofsctl
from tests.netlab import NetLab

from .run_bench import REPO, BenchError, Data, FilesTest, LargeTest, PassthroughMount, SofsMount, kill, log, mounted, tail

MiB = 1 << 20
GiB = 1 << 30


class NetSofsMount:
    """sofs on a 6-node networked RING in network namespaces, mounted from its own namespace."""

    name = "sofs-net"

    def __init__(self, work: Path, lab: NetLab) -> None:
        self.work, self.lab = work, lab
        self.mnt = work / "mnt-net"
        self.cluster: NetCluster | None = None
        self.pid: int | None = None
        self.data_dir: Path | None = None

    def start(self) -> None:
        self.mnt.mkdir()
        self.cluster = NetCluster(self.work / "net", nodes=6, disks=2, lab=self.lab)
        self.data_dir = self.cluster.client_dir("client")
        sofsctl(self.data_dir, "volume", "create", "bench", "--ec", "4+2")
        host = self.lab.add_host("client")
        res = host.run([sys.executable, "-m", "sofsctl", "--data-dir", str(self.data_dir),
                        "mount", "bench", str(self.mnt), "--down-after", "2"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
        if res.returncode != 0:
            raise BenchError(f"net mount failed: {res.stdout}{res.stderr}")
        import json
        self.pid = json.loads((self.data_dir / "run" / "mounts" / "bench.json").read_text())["pid"]

    def problem(self) -> str | None:
        if self.pid and not os.path.exists(f"/proc/{self.pid}"):
            return f"sofs-net mount process is gone:\n{tail(self.data_dir / 'log' / 'mount-bench.log')}"
        return None

    def rebuild(self) -> dict:
        """Kill n4, wait for the healer's sweep of the new map; its report."""
        assert self.cluster is not None and self.data_dir is not None
        before = control.call(self.data_dir, "cluster", volume="bench")["rebuild"]["sweeps"]
        self.cluster.nodes["n4"].kill()
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            info = control.call(self.data_dir, "cluster", volume="bench")
            down = any(n["id"] == "n4" and n["state"] == "down" for n in info["nodes"])
            rb = info["rebuild"]
            if down and rb["state"] == "idle" and rb["epoch"] == info["epoch"] and \
                    rb["sweeps"] > before:
                return rb["last_report"]
            time.sleep(0.5)
        raise BenchError("the rebuild did not finish in 30 minutes")

    def stop(self) -> None:
        if self.data_dir is not None and (mounted(self.mnt) or self.pid):
            sofsctl(self.data_dir, "umount", str(self.mnt), check=False, timeout=400)
        kill(self.pid)
        if mounted(self.mnt):
            os.system(f"umount -l {self.mnt}")
        if self.cluster is not None:
            self.cluster.cleanup()


class LocalSofsMount(SofsMount):
    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.name = "sofs-local"


ROWS = [("write", "seq write {size} (1 MiB writes + fsync)", "MiB/s"),
        ("read", "seq read {size}, cold cache", "MiB/s"),
        ("create-ct", "create+write+close {ct} x 512 KiB", "files/s")]


def run_rows(mounts, data: Data, args, results: dict) -> None:
    for rep in range(args.repeat):
        order = mounts if rep % 2 == 0 else mounts[::-1]
        large = {m.name: LargeTest(_fresh(m.mnt, f"large{rep}"), data, int(args.size_gib * GiB),
                                   stream=rep * 8 + i) for i, m in enumerate(order)}
        for step, key in enumerate(("write", "read")):
            for m in order:
                log(f"[{m.name}] {key} (run {rep + 1}) ...")
                results.setdefault(m.name, {}).setdefault(key, []).append(large[m.name].step(step))
        files = {m.name: FilesTest(_fresh(m.mnt, f"ct{rep}"), data, args.ct_count, 512 * 1024,
                                   rep * 8 + 4 + i, [], m.name) for i, m in enumerate(order)}
        for m in order:
            log(f"[{m.name}] create-ct (run {rep + 1}) ...")
            results[m.name].setdefault("create-ct", []).append(files[m.name].step(0))
            files[m.name].step(2)  # unlink, untimed here


def _fresh(mnt: Path, name: str) -> Path:
    p = mnt / name
    p.mkdir()
    return p


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/bench-net", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-gib", type=float, default=1.0, help="large file size [1]")
    p.add_argument("--ct-count", type=int, default=500, help="512 KiB files [500]")
    p.add_argument("--repeat", type=int, default=1, help="runs per row; medians shown [1]")
    p.add_argument("--no-rebuild", action="store_true", help="skip the rebuild measurement")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("scripts/bench-net needs root (namespaces, FUSE mounts)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="sofs-bench-net-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    results: dict[str, dict[str, list[float]]] = {}
    rebuild = None
    with NetLab() as lab:
        mounts = [PassthroughMount(work), LocalSofsMount(work), NetSofsMount(work, lab)]
        try:
            for m in mounts:
                log(f"starting {m.name} ...")
                m.start()
            data = Data()
            run_rows(mounts, data, args, results)
            if not args.no_rebuild:
                net = mounts[2]
                log("writing the data set for the rebuild ...")
                big = LargeTest(_fresh(net.mnt, "rebuild"), data, int(args.size_gib * GiB), 99)
                big.write()
                log("killing node n4 and waiting for the rebuild ...")
                rebuild = net.rebuild()
        finally:
            for m in mounts:
                try:
                    m.stop()
                except Exception as e:  # noqa: BLE001 - keep stopping the others
                    log(f"stopping {m.name}: {e}")
    shutil.rmtree(work, ignore_errors=True)
    print(table(results, args))
    if rebuild:
        mib = rebuild["bytes_rebuilt"] / MiB
        print(f"\nrebuild after killing 1 of 6 nodes: {mib:,.0f} MiB of pieces rebuilt in "
              f"{rebuild['seconds']:.1f} s = {mib / max(rebuild['seconds'], 1e-3):,.1f} MiB/s "
              f"({rebuild['pieces_rebuilt']} pieces, {rebuild['pieces_removed']} removed, "
              f"{rebuild['unrecoverable']} unrecoverable)")
    return 0


def table(results: dict, args) -> str:
    size = f"{args.size_gib:g} GiB"
    names = ["passthrough", "sofs-local", "sofs-net"]
    head = f"| test | {' | '.join(names)} | local/pt | net/pt | net/local |"
    lines = [head, "|" + "---|" * (len(names) + 4)]
    for key, label, unit in ROWS:
        med = {n: statistics.median(results[n][key]) if results.get(n, {}).get(key) else None
               for n in names}

        def ratio(a, b, med=med):
            return f"{med[a] / med[b]:.2f}" if med[a] and med[b] else "-"

        cells = [f"{med[n]:,.1f}" if med[n] else "-" for n in names]
        lines.append(f"| {label.format(size=size, ct=args.ct_count)} [{unit}] | "
                     f"{' | '.join(cells)} | {ratio('sofs-local', 'passthrough')} | "
                     f"{ratio('sofs-net', 'passthrough')} | {ratio('sofs-net', 'sofs-local')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
