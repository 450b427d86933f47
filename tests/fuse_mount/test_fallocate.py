"""fallocate(2) on a real mount: posix_fallocate and mode 0 extend, KEEP_SIZE preallocates,
PUNCH_HOLE|KEEP_SIZE makes holes (whole and partial 4 MiB blocks), util-linux ``fallocate``,
ENOSPC past the free space, the errnos ext4 gives for the calls it refuses, and a punched hole
that survives kill -9 of the mount process.

pyfuse3 has no fallocate handler of its own (fuse_mount/fallocate_hook.py adds it): without it
the kernel answers EOPNOTSUPP to every call here.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pyfuse3
import pytest

from fuse_mount import fallocate_hook

from .conftest import Archive, needs_fuse, sofsctl, wait_dead
from .filebytes import pattern, zeroed
from .filebytes import read_uncached as read_back


def mount_test(fn):
    return pytest.mark.integration(needs_fuse(fn))


MIB = 1 << 20
BLOCK = 4 * MIB  # the default block size
KEEP_SIZE, PUNCH_HOLE, COLLAPSE_RANGE, ZERO_RANGE = 0x01, 0x02, 0x08, 0x10
PUNCH = PUNCH_HOLE | KEEP_SIZE

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_libc.fallocate.restype = ctypes.c_int


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2) itself (os.posix_fallocate knows mode 0 only)."""
    if _libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def errno_of(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0








@pytest.fixture
def archive():
    """A mounted archive under /tmp: a directory of the same filesystem, ext4 here, is the
    reference for errnos."""
    root = Path(tempfile.mkdtemp(prefix="sofs-falloc-", dir="/tmp"))
    a = Archive(root)
    a.mount()
    try:
        yield a
    finally:
        a.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@mount_test
def test_posix_fallocate_extends_with_zeros_and_survives_a_remount(archive):
    f = archive.mnt / "f"
    data = pattern(BLOCK + 1000)
    f.write_bytes(data)
    before = f.stat()
    time.sleep(0.01)  # distinct timestamps (coarse clocks), not a wait for anything
    fd = os.open(f, os.O_RDWR)
    try:
        fallocate(fd, KEEP_SIZE, 0, 1)  # posix_fallocate would fall back to writing zeros
        os.posix_fallocate(fd, BLOCK, 3 * BLOCK)
        st = os.fstat(fd)
        assert st.st_size == 4 * BLOCK
        assert st.st_mtime_ns > before.st_mtime_ns and st.st_ctime_ns > before.st_ctime_ns
        fallocate(fd, 0, 10, 100)  # inside the file: nothing changes but the times
        fallocate(fd, KEEP_SIZE, 0, 8 * BLOCK)  # preallocation past the end, size kept
        assert os.fstat(fd).st_size == 4 * BLOCK
    finally:
        os.close(fd)
    expected = data + bytes(4 * BLOCK - len(data))
    assert read_back(f) == expected
    archive.remount()
    assert f.stat().st_size == 4 * BLOCK and read_back(f) == expected


@mount_test
def test_punch_hole_zeros_whole_and_partial_blocks_and_keeps_the_size(archive):
    f = archive.mnt / "f"
    data = pattern(4 * BLOCK + 123)
    f.write_bytes(data)
    fd = os.open(f, os.O_RDWR)
    try:
        fallocate(fd, PUNCH, BLOCK, 2 * BLOCK)                # two whole blocks
        fallocate(fd, PUNCH, 100, 5000)                       # inside block 0
        fallocate(fd, PUNCH, 3 * BLOCK + BLOCK // 2, BLOCK)   # block 3's end, block 4 (to EOF)
        fallocate(fd, PUNCH, 10 * BLOCK, BLOCK)               # past the end: nothing
        assert os.fstat(fd).st_size == len(data)
        os.fsync(fd)
    finally:
        os.close(fd)
    expected = zeroed(zeroed(zeroed(data, BLOCK, 2 * BLOCK), 100, 5000),
                      3 * BLOCK + BLOCK // 2, BLOCK)
    assert read_back(f) == expected
    archive.remount()
    assert f.stat().st_size == len(data) and read_back(f) == expected


@mount_test
def test_punch_hole_of_data_still_in_the_page_cache(archive):
    """Written and not yet flushed (writeback cache): the kernel hands the range over first."""
    f = archive.mnt / "f"
    data = pattern(2 * BLOCK + 10)
    fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        fallocate(fd, PUNCH, BLOCK // 2, BLOCK)
        os.pwrite(fd, b"after", BLOCK)  # inside the hole, after the punch
    finally:
        os.close(fd)
    expected = bytearray(zeroed(data, BLOCK // 2, BLOCK))
    expected[BLOCK:BLOCK + 5] = b"after"
    assert read_back(f) == bytes(expected)
    archive.remount()
    assert read_back(f) == bytes(expected)


@mount_test
@pytest.mark.skipif(shutil.which("fallocate") is None, reason="util-linux fallocate not installed")
def test_util_linux_fallocate(archive):
    f = archive.mnt / "f"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["fallocate", *args, str(f)], capture_output=True, text=True)

    assert run("-l", str(2 * BLOCK)).returncode == 0   # creates the file
    assert f.stat().st_size == 2 * BLOCK and read_back(f) == bytes(2 * BLOCK)
    data = pattern(2 * BLOCK)
    f.write_bytes(data)
    res = run("-p", "-o", str(BLOCK - 10), "-l", "20")
    assert res.returncode == 0, res.stderr
    assert run("-n", "-l", str(10 * BLOCK)).returncode == 0  # KEEP_SIZE
    assert f.stat().st_size == 2 * BLOCK
    res = run("-z", "-l", "10")  # ZERO_RANGE is not supported
    assert res.returncode != 0 and "not supported" in res.stderr
    assert read_back(f) == zeroed(data, BLOCK - 10, 20)


@mount_test
def test_mode_0_past_the_free_space_is_enospc(archive):
    f = archive.mnt / "f"
    f.write_bytes(b"keep")
    st = os.statvfs(archive.mnt)
    too_much = 2 * st.f_bavail * st.f_frsize + BLOCK  # df's free space is after the overhead
    fd = os.open(f, os.O_RDWR)
    try:
        # fallocate(2) first: posix_fallocate falls back to writing zeros on EOPNOTSUPP
        assert errno_of(fallocate, fd, 0, 0, too_much) == errno.ENOSPC
        assert errno_of(fallocate, fd, KEEP_SIZE, 0, too_much) == errno.ENOSPC
        assert errno_of(os.posix_fallocate, fd, 0, too_much) == errno.ENOSPC
        assert os.fstat(fd).st_size == 4
        fallocate(fd, PUNCH, 0, too_much)  # a punch needs no space
    finally:
        os.close(fd)
    assert read_back(f) == bytes(4)


@mount_test
def test_refused_calls_get_the_errno_ext4_gives(archive):
    ref = archive.mnt.parent / "ext4"  # the reference directory on /tmp's filesystem
    ref.mkdir()
    for root in (ref, archive.mnt):
        (root / "d").mkdir()
        (root / "f").write_bytes(b"x" * 100)
        os.mkfifo(root / "p")

    def outcomes(root: Path) -> dict[str, int]:
        out = {}
        fd = os.open(root / "d", os.O_RDONLY)
        try:
            out["dir"] = errno_of(fallocate, fd, 0, 0, 10)
        finally:
            os.close(fd)
        fd = os.open(root / "f", os.O_RDONLY)
        try:
            out["read-only"] = errno_of(fallocate, fd, 0, 0, 10)
        finally:
            os.close(fd)
        fd = os.open(root / "p", os.O_RDWR)
        try:
            out["fifo"] = errno_of(fallocate, fd, 0, 0, 10)
        finally:
            os.close(fd)
        fd = os.open(root / "f", os.O_RDWR)
        try:
            out["mode 0"] = errno_of(fallocate, fd, 0, 50, 100)
            out["punch"] = errno_of(fallocate, fd, PUNCH, 0, 10)
            out["punch without keep-size"] = errno_of(fallocate, fd, PUNCH_HOLE, 0, 10)
            out["zero length"] = errno_of(fallocate, fd, 0, 0, 0)
            out["negative offset"] = errno_of(fallocate, fd, 0, -1, 10)
        finally:
            os.close(fd)
        return out

    assert outcomes(archive.mnt) == outcomes(ref)
    assert outcomes(ref)["mode 0"] == outcomes(ref)["punch"] == 0
    fd = os.open(archive.mnt / "f", os.O_RDWR)
    try:  # ext4 has these; sofs does not
        assert errno_of(fallocate, fd, ZERO_RANGE, 0, 10) == errno.EOPNOTSUPP
        assert errno_of(fallocate, fd, COLLAPSE_RANGE, 0, BLOCK) == errno.EOPNOTSUPP
    finally:
        os.close(fd)
    assert read_back(archive.mnt / "f") == bytes(10) + b"x" * 90 + bytes(50)




@mount_test
def test_punched_hole_and_extension_survive_kill_9_of_the_mount(archive):
    m = archive.mnt
    data = pattern(3 * BLOCK + 77)
    for name in ("synced", "returned", "grown"):
        (m / name).write_bytes(data)  # closed: stored and committed
    fd = os.open(m / "synced", os.O_RDWR)
    fallocate(fd, PUNCH, BLOCK // 3, BLOCK + 5)
    os.fsync(fd)  # acknowledged by fsync
    fd2 = os.open(m / "returned", os.O_RDWR)
    fallocate(fd2, PUNCH, BLOCK, BLOCK)  # acknowledged by fallocate's own return alone
    fd3 = os.open(m / "grown", os.O_RDWR)
    os.posix_fallocate(fd3, len(data), BLOCK)
    os.fsync(fd3)
    pid = max(archive.pids)
    os.kill(pid, signal.SIGKILL)
    assert wait_dead(pid), "the mount process outlived SIGKILL"
    archive.pids.discard(pid)
    for f in (fd, fd2, fd3):
        with contextlib.suppress(OSError):  # the dead mount fails the close's flush
            os.close(f)
    sofsctl(archive.data, "umount", str(m))
    archive.mount()
    assert read_back(m / "synced") == zeroed(data, BLOCK // 3, BLOCK + 5)
    assert read_back(m / "returned") == zeroed(data, BLOCK, BLOCK)
    assert read_back(m / "grown") == data + bytes(BLOCK)
    archive.umount()
    res = sofsctl(archive.data, "fsck", archive.volume, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_pyfuse3_is_built_so_that_the_handler_can_be_installed(caplog):
    """The hook finds pyfuse3's session and operations table by its symbol table: a pyfuse3
    built without one (stripped) would leave fallocate EOPNOTSUPP on every mount."""
    module = Path(pyfuse3.__file__)
    symbols = fallocate_hook._elf_symbols(module, {fallocate_hook.SESSION_SYMBOL,
                                                    fallocate_hook.OPS_SYMBOL,
                                                    fallocate_hook.INIT_SYMBOL})
    assert symbols[fallocate_hook.OPS_SYMBOL][1] == fallocate_hook.OPS_SLOTS * 8
    assert symbols[fallocate_hook.SESSION_SYMBOL][1] == 8

    async def handler(fh: int, mode: int, offset: int, length: int) -> None:
        raise AssertionError("never called")

    # no session in this process: everything is checked up to that, nothing is patched
    with caplog.at_level("WARNING", logger="sofs.fuse"):
        assert fallocate_hook.install(handler) is None
    assert "pyfuse3 has no session" in caplog.text
