"""sofs through its NFS and SMB exports, next to the same volume through the FUSE mount, in one run.

One embedded ring (6 disk directories, EC 4+2) and one volume, mounted; ``sofsctl export nfs``
(NFS-Ganesha, NFSv4.1, 127.0.0.1) and ``sofsctl export smb`` (Samba, SMB3 with signing) of that
mount. Clients: plain file I/O on the mount (the baseline), the ``nfs-rs`` Python client, and
``smbprotocol`` (the SMB3 client library Windows-compatible tools use from Python). Rows,
measured on each path back to back:

  write   one large file in 1 MiB writes (closed; the FUSE path also fsyncs)      [MiB/s]
  read    the same file after dropping the page cache                            [MiB/s]
  create  N files of 512 KiB (a CT series), create + write + close               [files/s]
  list    that folder with sizes and times, after dropping caches (what Windows
          Explorer does when a study folder is opened)                           [ms]

Read the ratios (path / FUSE) from one run; the clients are userspace Python libraries, so a
path's figure is the client's speed as much as the server's.

    scripts/bench-exports                       # 1 GiB, 2,000 files (~4 minutes here)
    scripts/bench-exports --size-gib 0.25 --count 300
    scripts/bench-exports --attr-cache 5        # NFS with Ganesha's attribute cache (see
                                                # sofsctl(8), export nfs --attr-cache)
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from exporters.samba import remove_posix_user

from .run_bench import REPO, Data, drop_caches, log

MiB = 1 << 20
GiB = 1 << 30
USER, UID, PASSWORD = "sofsbench", 61950, "Bench-pass-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sofsctl(data: Path, *args: str, timeout: float = 300) -> str:
    res = subprocess.run([sys.executable, "-m", "sofsctl", "--data-dir", str(data), *args],
                         capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if res.returncode != 0:
        raise RuntimeError(f"sofsctl {' '.join(args)}: {res.stdout}{res.stderr}")
    return res.stdout


class FusePath:
    name = "FUSE"

    def __init__(self, mnt: Path) -> None:
        self.mnt = mnt

    def write(self, rel: str, blocks) -> None:
        with open(self.mnt / rel, "wb") as f:
            for b in blocks:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())

    def read(self, rel: str) -> int:
        n = 0
        with open(self.mnt / rel, "rb", buffering=0) as f:
            while chunk := f.read(MiB):
                n += len(chunk)
        return n

    def mkdir(self, rel: str) -> None:
        os.mkdir(self.mnt / rel)

    def listing(self, rel: str) -> int:
        return sum(1 for e in os.scandir(self.mnt / rel) if e.stat().st_size >= 0)


class NfsPath:
    name = "NFS v4.1"

    def __init__(self, port: int) -> None:
        import nfs_rs
        self.c = nfs_rs.Client.connect(f"nfs://127.0.0.1:{port}/bench?version=4.1", uid=0,
                                       gid=0, connect_timeout=10, operation_timeout=120)
        self.retryable = nfs_rs.NfsRetryableError
        self.retries = 0

    def write(self, rel: str, blocks) -> None:
        blocks = list(blocks) if not isinstance(blocks, list) else blocks
        for attempt in range(3):  # nfs-rs sometimes reports NFS4ERR_RETRY_UNCACHED_REP
            try:
                with self.c.open(rel, "wb") as f:
                    for b in blocks:
                        f.write(bytes(b))
                return
            except self.retryable:
                self.retries += 1
                if attempt == 2:
                    raise

    def read(self, rel: str) -> int:
        n = 0
        with self.c.open(rel, "rb") as f:
            while chunk := f.read(MiB):
                n += len(chunk)
        return n

    def mkdir(self, rel: str) -> None:
        self.c.mkdir(rel)

    def listing(self, rel: str) -> int:
        return sum(1 for _ in self.c.scandir(rel))  # READDIR with attributes


class SmbPath:
    name = "SMB3"

    def __init__(self, port: int) -> None:
        import smbclient
        self.smb = smbclient
        self.port = port
        smbclient.register_session("127.0.0.1", username=USER, password=PASSWORD, port=port)

    def _p(self, rel: str) -> str:
        return "\\\\127.0.0.1\\bench\\" + rel.replace("/", "\\")

    def write(self, rel: str, blocks) -> None:
        with self.smb.open_file(self._p(rel), mode="wb", port=self.port) as f:
            for b in blocks:
                f.write(b)

    def read(self, rel: str) -> int:
        n = 0
        with self.smb.open_file(self._p(rel), mode="rb", port=self.port) as f:
            while chunk := f.read(MiB):
                n += len(chunk)
        return n

    def mkdir(self, rel: str) -> None:
        self.smb.mkdir(self._p(rel), port=self.port)

    def listing(self, rel: str) -> int:  # a directory query returns sizes and times
        return sum(1 for e in self.smb.scandir(self._p(rel), port=self.port)
                   if e.smb_info.end_of_file >= 0)


def run(paths, data: Data, args) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {p.name: {} for p in paths}
    n = int(args.size_gib * GiB) // MiB
    for i, p in enumerate(paths):
        log(f"[{p.name}] write {n} MiB ...")
        os.sync()
        t0 = time.perf_counter()
        p.write(f"large{i}", (data.block(i, j, MiB) for j in range(n)))
        out[p.name]["write"] = n / (time.perf_counter() - t0)
    for i, p in enumerate(paths):
        log(f"[{p.name}] read ...")
        drop_caches()
        t0 = time.perf_counter()
        got = p.read(f"large{i}")
        out[p.name]["read"] = n / (time.perf_counter() - t0)
        if got != n * MiB:
            raise RuntimeError(f"{p.name}: read {got} bytes of {n * MiB}")
    for i, p in enumerate(paths):
        log(f"[{p.name}] create {args.count} x 512 KiB ...")
        p.mkdir(f"series{i}")
        os.sync()
        t0 = time.perf_counter()
        for j in range(args.count):
            p.write(f"series{i}/im{j:05d}.dcm", [data.block(100 + i, j, 512 * 1024)])
        out[p.name]["create"] = args.count / (time.perf_counter() - t0)
    for i, p in enumerate(paths):
        log(f"[{p.name}] list the {args.count} files with their attributes ...")
        drop_caches()
        t0 = time.perf_counter()
        seen = p.listing(f"series{i}")
        out[p.name]["list"] = (time.perf_counter() - t0) * 1000
        if seen != args.count:
            raise RuntimeError(f"{p.name}: listed {seen} of {args.count}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench-exports", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gib", type=float, default=1.0)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--attr-cache", type=int, default=0, metavar="SECONDS",
                    help="sofsctl export nfs --attr-cache for the NFS path [default: 0]")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("scripts/bench-exports needs root", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="sofs-bench-exp-", dir="/var/tmp"))
    root.chmod(0o755)
    data_dir, mnt = root / "data", root / "mnt"
    mnt.mkdir()
    results = None
    try:
        sofsctl(data_dir, "cluster", "init", "--disks", "6")
        sofsctl(data_dir, "volume", "create", "bench", "--ec", "4+2")
        sofsctl(data_dir, "mount", "bench", str(mnt))
        mnt.chmod(0o777)
        nfs_port, smb_port = free_port(), free_port()
        sofsctl(data_dir, "export", "nfs", "bench", "--clients", "127.0.0.1/32:rw",
                "--no-root-squash", "--bind", "127.0.0.1", "--port", str(nfs_port),
                "--grace", "0", "--attr-cache", str(args.attr_cache))
        pw = root / "smb.pw"
        pw.write_text(f"{USER}:{PASSWORD}\n")
        pw.chmod(0o600)
        sofsctl(data_dir, "export", "smb", "bench", "--user", f"{USER}:{UID}",
                "--password-file", str(pw), "--bind", "127.0.0.1", "--port", str(smb_port))
        paths = [FusePath(mnt), NfsPath(nfs_port), SmbPath(smb_port)]
        results = run(paths, Data(), args)
        if paths[1].retries:
            log(f"note: {paths[1].retries} NFS writes were retried after a retryable error")
    finally:
        for cmd in (["export", "stop", "bench"], ["umount", str(mnt)]):
            try:
                sofsctl(data_dir, *cmd)
            except Exception as e:  # noqa: BLE001 - keep cleaning up
                log(f"cleanup {cmd}: {e}")
        remove_posix_user(USER)
        shutil.rmtree(root, ignore_errors=True)
    names = ["FUSE", "NFS v4.1", "SMB3"]
    if args.attr_cache:
        print(f"NFS export with --attr-cache {args.attr_cache}")
    rows = [("write", f"seq write {args.size_gib:g} GiB, 1 MiB writes", "MiB/s"),
            ("read", f"seq read {args.size_gib:g} GiB, cold", "MiB/s"),
            ("create", f"create {args.count} x 512 KiB", "files/s"),
            ("list", f"list {args.count} files with attributes, cold", "ms")]
    print(f"| test | {' | '.join(names)} | NFS/FUSE | SMB/FUSE |")
    print("|" + "---|" * (len(names) + 3))
    for key, label, unit in rows:
        v = {n: results[n][key] for n in names}
        print(f"| {label} [{unit}] | " + " | ".join(f"{v[n]:,.1f}" for n in names) +
              f" | {v['NFS v4.1'] / v['FUSE']:.2f} | {v['SMB3'] / v['FUSE']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
