"""fsck of a mounted volume: checked in place while clients keep writing; repairs refused."""

from __future__ import annotations

import os
import re
import threading

import pytest

from .conftest import needs_fuse, sofsctl

pytestmark = [pytest.mark.integration, needs_fuse]


def _counts(out: str) -> tuple[int, int]:
    m = re.search(r"(\d+) inodes \((\d+) files", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def test_fsck_of_a_mounted_volume_under_load(archive):
    m = archive.mnt
    for i in range(40):
        (m / f"f{i}").write_bytes(os.urandom(1000 * i))
    (m / "big").write_bytes(os.urandom(9 << 20))
    res = sofsctl(archive.data, "fsck", archive.volume)
    assert "checking a checkpoint" in res.stderr and res.stdout.strip().endswith("clean")
    assert _counts(res.stdout) == (42, 41)  # root + 41 files: it really read this volume

    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:  # creates, overwrites, renames, unlinks, all the while
        i = 0
        try:
            while not stop.is_set():
                p = m / f"w{i % 7}"
                with open(p, "wb") as f:
                    f.write(os.urandom(5000 + 300_000 * (i % 3)))
                    if i % 2:
                        os.fsync(f.fileno())
                if i % 3 == 0:
                    os.replace(p, m / f"f{i % 40}")
                if i % 5 == 0 and (m / f"w{(i + 1) % 7}").exists():
                    os.unlink(m / f"w{(i + 1) % 7}")
                i += 1
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(3):
            res = sofsctl(archive.data, "fsck", archive.volume, check=False)
            assert res.returncode == 0, res.stdout + res.stderr
            assert res.stdout.strip().endswith("clean")
    finally:
        stop.set()
        t.join()
    assert not errors
    refused = sofsctl(archive.data, "fsck", "--repair", archive.volume, check=False)
    assert refused.returncode == 1 and "unmounted" in refused.stderr
    assert not any(p.name == "fsck-checkpoint"
                   for p in (archive.data / "volumes" / archive.volume).iterdir())
    archive.umount()
    offline = sofsctl(archive.data, "fsck", archive.volume)
    assert offline.stdout.strip().endswith("clean")
