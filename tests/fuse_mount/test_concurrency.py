"""Many writers and readers at once on a real mount: no corruption, no deadlock."""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import needs_fuse
from .test_mount import MIB, pattern

pytestmark = [pytest.mark.integration, needs_fuse]

WORKERS = 16


def _own_files(mnt, w: int) -> dict[str, bytes]:
    rnd = random.Random(w)
    out = {}
    for i in range(6):
        size = rnd.choice([0, 100, 60 * 1024 + 1, 1 * MIB + 3, 4 * MIB, 6 * MIB + 5])
        data = pattern(size, w * 100 + i)
        name = f"w{w}-f{i}"
        with open(mnt / name, "wb") as f:
            pos = 0
            while pos < size:  # uneven writes cross block boundaries in odd places
                n = rnd.randint(1, 700_000)
                f.write(data[pos:pos + n])
                pos += n
        assert (mnt / name).read_bytes() == data
        out[name] = data
    return out


def _shared_slices(path, w: int, slice_size: int) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        data = pattern(slice_size, 5000 + w)
        os.pwrite(fd, data, w * slice_size)
        os.fsync(fd)
        assert os.pread(fd, slice_size, w * slice_size) == data
    finally:
        os.close(fd)


def test_sixteen_writers_and_readers(archive):
    mnt = archive.mnt
    slice_size = 1 * MIB + 4097  # slices straddle 4 MiB blocks: read-modify-write races
    shared = mnt / "shared"
    shared.write_bytes(b"")
    with ThreadPoolExecutor(WORKERS) as pool:
        own = list(pool.map(lambda w: _own_files(mnt, w), range(WORKERS)))
        list(pool.map(lambda w: _shared_slices(shared, w, slice_size), range(WORKERS)))
    expected_shared = b"".join(pattern(slice_size, 5000 + w) for w in range(WORKERS))

    def verify() -> None:
        for files in own:
            for name, data in files.items():
                assert (mnt / name).read_bytes() == data, name
        assert shared.read_bytes() == expected_shared

    with ThreadPoolExecutor(8) as pool:  # concurrent readers
        list(pool.map(lambda _: verify(), range(4)))
    archive.remount()
    verify()
