"""A full RING under a real mount: a write that fails with ENOSPC never shows data that is not
stored, the error reaches the writer (at the write, fsync or close), and the unmount reports the
files that lost writes instead of the mount process dying on them."""

from __future__ import annotations

import errno
import json
import os
import time

import pytest

from .conftest import needs_fuse, sofsctl
from .test_mount import MIB, pattern

pytestmark = [pytest.mark.integration, needs_fuse]


def settled(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "the kernel's view never matched what is stored"
        time.sleep(0.05)


def fill_until_enospc(path, seed: int, closed: list[bool]) -> tuple[bytes, OSError]:
    """Write 4 MiB pieces to ``path`` until the RING is full; (what was written, the error)."""
    written = bytearray()
    f = open(path, "wb")
    try:
        for i in range(100):
            piece = pattern(4 * MIB, seed + i)
            f.write(piece)
            written += piece
            if i % 4 == 3:
                f.flush()
                os.fsync(f.fileno())
        raise AssertionError("100 pieces of 4 MiB fitted on 48 MiB of disks")
    except OSError as e:
        err = e
    finally:
        try:
            f.close()
            closed.append(True)
        except OSError as e:
            closed.append(False)
            err = err or e
    return bytes(written), err


def test_a_failed_write_shows_only_stored_data_and_the_unmount_names_it(full_archive):
    a = full_archive
    keep = pattern(3 * MIB, 5)
    (a.mnt / "keep").write_bytes(keep)
    written, err = fill_until_enospc(a.mnt / "fill", 100, [])
    assert err.errno == errno.ENOSPC, err
    # what readers see now is what the RING holds: what the last fsync left, every byte of
    # which is still there after a remount; opening and closing it is no error any more
    info = json.loads(sofsctl(a.data, "file", "info", "--json", f"{a.volume}:/fill").stdout)
    size = info["size"]
    settled(lambda: os.stat(a.mnt / "fill").st_size == size)  # the kernel is told just after
    seen = (a.mnt / "fill").read_bytes()
    assert len(seen) == size and size % (16 * MIB) == 0, size
    assert seen == written[:size], "the file shows bytes that were never stored there"
    assert (a.mnt / "keep").read_bytes() == keep
    res = sofsctl(a.data, "umount", str(a.mnt), timeout=300)
    assert "/fill: %d bytes kept of" % size in res.stdout, res.stdout
    assert "Traceback" not in a.log(), a.log()
    a.mount()
    assert os.stat(a.mnt / "fill").st_size == size
    assert (a.mnt / "fill").read_bytes() == seen
    assert (a.mnt / "keep").read_bytes() == keep
