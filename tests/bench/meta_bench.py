"""Metadata scale benchmark of the SOFS layer (no FUSE, no chunk I/O): how many bytes of
metadata each file costs, and whether name lookups stay flat as a directory grows.

Run: ``scripts/bench-meta [--files N] [--dir-sizes 1000 10000 100000]``.

* bytes/inode: N empty files in directories of 1,000 entries are created through the
  Filesystem API, the rocksdb database is flushed and compacted, and its on-disk size (all
  files of the metadata directory) is divided by N. Goal of the first slice: under 500 B.
* lookup: for each directory size, the directory is filled, then random existing names are
  looked up (warm: the inode cache is cleared first, rocksdb's block cache is not); the table
  gives microseconds per lookup, which should stay flat from 1k to 100k entries.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from chunkstore.ring.memory import MemoryChunkStore
from sofs.fs import Filesystem
from sofs.inode import ROOT_INO
from sofs.volume import create_volume, volume_dir


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bytes_per_inode(root: Path, files: int) -> tuple[float, float]:
    create_volume(root, "meta")
    fs = Filesystem.open_volume(root, "meta", MemoryChunkStore())
    t0 = time.perf_counter()
    per_dir = 1000
    for d in range(0, files, per_dir):
        dino = fs.mkdir(ROOT_INO, b"d%07d" % d, 0o755).ino
        for i in range(min(per_dir, files - d)):
            fh, _ = fs.create(dino, b"IM-%04d-%06d.dcm" % (d // per_dir, i), 0o644, os.O_WRONLY)
            fs.release(fh)
    rate = files / (time.perf_counter() - t0)
    fs.meta._db.flush()
    fs.meta._db.compact_range(None, None)
    fs.close()
    size = dir_bytes(volume_dir(root, "meta") / "meta")
    return size / files, rate


def lookup_times(root: Path, sizes: list[int], probes: int = 20000) -> list[tuple[int, float]]:
    create_volume(root, "lookup")
    fs = Filesystem.open_volume(root, "lookup", MemoryChunkStore())
    out = []
    try:
        for size in sizes:
            dino = fs.mkdir(ROOT_INO, b"dir%d" % size, 0o755).ino
            for i in range(size):
                fh, _ = fs.create(dino, b"IM-%08d.dcm" % i, 0o644, os.O_WRONLY)
                fs.release(fh)
            names = [b"IM-%08d.dcm" % random.randrange(size) for _ in range(probes)]
            fs.meta._db.flush()  # look up from SST files, as a long-lived volume does
            fs._inodes.clear()
            for name in names[:2000]:  # warm the block cache like a working set would
                fs.lookup(dino, name)
            t0 = time.perf_counter()
            for name in names:
                fs.lookup(dino, name)
            out.append((size, (time.perf_counter() - t0) / probes * 1e6))
    finally:
        fs.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=200_000)
    p.add_argument("--dir-sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="sofs-meta-bench-"))
    try:
        per_inode, rate = bytes_per_inode(root, args.files)
        lookups = lookup_times(root, args.dir_sizes)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"metadata: {per_inode:.0f} bytes per file over {args.files:,} files "
          f"(created at {rate:,.0f} files/s through the API)")
    print("entries in directory   lookup (us)")
    for size, us in lookups:
        print(f"{size:>20,}   {us:10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
