"""What a metadata checkpoint into the RING costs (sofs.metacheckpoint), next to a plain copy of
the same metadata directory made in the same run.

One embedded ring (6 disk directories) and a volume filled through the Filesystem API (no FUSE)
with N files in folders of 1,000 (one in 50 with a small block of data, so the file maps are
real). Rows:

  copy       baseline: ``cp -a`` of a rocksdb checkpoint of the metadata to one disk
             directory's filesystem, then ``sync`` (what a naive local backup costs)
  first      the first checkpoint into the RING (every piece sent, protected like file data)
  again      a checkpoint after 1% more files (only changed pieces are sent)
  restore    the newest checkpoint fetched, verified and written to a new directory

Read the ratios (row / copy) from one run; these machines are noisy.

    scripts/bench-checkpoint                    # 200,000 files (~1 minute here)
    scripts/bench-checkpoint --files 1000000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from chunkstore.ring.localcluster import init_local_cluster
from chunkstore.ring.open import open_ring
from sofs import metacheckpoint as mc
from sofs.fs import Filesystem
from sofs.inode import ROOT_INO
from sofs.volume import create_volume, volume_dir


def fill(fs: Filesystem, start: int, count: int, per_dir: int = 1000) -> None:
    for d in range(start, start + count, per_dir):
        dino = fs.mkdir(ROOT_INO, b"d%08d" % d, 0o755).ino
        for i in range(min(per_dir, start + count - d)):
            fh, _ = fs.create(dino, b"IM-%06d.dcm" % i, 0o644, os.O_WRONLY)
            if i % 50 == 0:
                fs.write(fh, 0, os.urandom(2048))
            fs.release(fh)
    fs.meta.commit(fs.meta.batch(), sync=True)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench-checkpoint", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200_000)
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="sofs-bench-cp-", dir="/var/tmp"))
    rows = []
    try:
        init_local_cluster(root, disks=6)
        create_volume(root, "bench")
        ring = open_ring(root)
        fs = Filesystem.open_volume(root, "bench", ring)
        try:
            t0 = time.perf_counter()
            fill(fs, 0, args.files)
            print(f"{args.files:,} files created in {time.perf_counter() - t0:.1f} s")
            vdir = volume_dir(root, "bench")

            snap, copy = vdir / "snap", root / "disks" / "d0" / "meta-copy"
            t0 = time.perf_counter()
            fs.meta.checkpoint(snap)
            subprocess.run(["cp", "-a", str(snap), str(copy)], check=True)
            subprocess.run(["sync"], check=True)
            rows.append(("copy (cp -a + sync)", time.perf_counter() - t0, dir_bytes(copy)))
            shutil.rmtree(snap)
            shutil.rmtree(copy)

            cp = mc.Checkpointer(fs.meta, ring, fs.config, vdir)
            first = cp.write()
            rows.append(("first checkpoint", first.took, first.sent_bytes))
            fill(fs, 10_000_000, max(1000, args.files // 100))
            again = cp.write()
            rows.append((f"again after +{max(1000, args.files // 100):,} files "
                         f"({again.reused_pieces} pieces reused)", again.took, again.sent_bytes))
            t0 = time.perf_counter()
            mc.restore(ring, fs.config.uuid, root / "restored" / "meta")
            rows.append(("restore", time.perf_counter() - t0,
                         dir_bytes(root / "restored" / "meta")))
            meta_size = first.bytes
        finally:
            fs.close()
            ring.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = rows[0][1]
    print(f"metadata of {args.files:,} files: {meta_size / 2**20:.1f} MiB "
          f"({meta_size / args.files:.0f} B per file)")
    print("| step | seconds | MiB moved | time / copy |")
    print("|---|---|---|---|")
    for label, secs, nbytes in rows:
        print(f"| {label} | {secs:.2f} | {nbytes / 2**20:.1f} | {secs / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
