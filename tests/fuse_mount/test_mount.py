"""A real sofs FUSE mount used with shell tools and Python, across remounts and faults."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import time

import pytest

from .conftest import needs_fuse, sofsctl

pytestmark = [pytest.mark.integration, needs_fuse]

KIB = 1024
MIB = 1024 * KIB
SIZES = [0, 1, 60 * KIB - 1, 60 * KIB + 1, 4 * MIB - 1, 4 * MIB + 1]


def pattern(size: int, seed: int) -> bytes:
    """Deterministic, incompressible bytes (so blocks neither shrink nor dedup)."""
    return random.Random(seed).randbytes(size)


def digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def write_set(mnt, big: bool = False) -> dict[str, str]:
    """Files of every interesting size, written with Python and with shell tools."""
    expected = {}
    for i, size in enumerate(SIZES):
        data = pattern(size, i)
        with open(mnt / f"py-{size}", "wb") as f:
            f.write(data)
        expected[f"py-{size}"] = hashlib.sha256(data).hexdigest()
        src = mnt.parent / f"src-{size}"
        src.write_bytes(data)
        subprocess.run(["cp", str(src), str(mnt / f"cp-{size}")], check=True)
        expected[f"cp-{size}"] = expected[f"py-{size}"]
        src.unlink()
    subprocess.run(["dd", "if=/dev/zero", f"of={mnt / 'dd-zeros'}", "bs=1M", "count=9",
                    "status=none"], check=True)
    expected["dd-zeros"] = hashlib.sha256(bytes(9 * MIB)).hexdigest()
    if big:
        h = hashlib.sha256()
        with open(mnt / "big-200M", "wb") as f:
            for n in range(50):
                block = pattern(4 * MIB, 1000 + n)
                h.update(block)
                f.write(block)
        expected["big-200M"] = h.hexdigest()
    return expected


def check_set(mnt, expected: dict[str, str]) -> None:
    for name, want in expected.items():
        assert digest(mnt / name) == want, name


def test_sizes_round_trip_through_remount(archive):
    expected = write_set(archive.mnt, big=True)
    check_set(archive.mnt, expected)
    archive.remount()
    check_set(archive.mnt, expected)
    assert sorted(os.listdir(archive.mnt)) == sorted(expected)
    shell = subprocess.run(["sh", "-c", f"cat {archive.mnt}/cp-{4 * MIB + 1} | sha256sum"],
                           capture_output=True, text=True, check=True)
    assert shell.stdout.split()[0] == expected[f"cp-{4 * MIB + 1}"]


def test_posix_basics_on_the_mount(archive):
    m = archive.mnt
    (m / "d" / "e").mkdir(parents=True)
    (m / "d" / "f").write_bytes(b"hello")
    os.rename(m / "d" / "f", m / "d" / "e" / "g")
    os.link(m / "d" / "e" / "g", m / "h")
    os.symlink("d/e/g", m / "s")
    assert os.stat(m / "h").st_nlink == 2
    assert (m / "s").read_bytes() == b"hello"
    assert os.stat(m / "d").st_nlink == 3
    os.setxattr(m / "h", "user.DOSATTRIB", b"\x20")
    assert os.getxattr(m / "h", "user.DOSATTRIB") == b"\x20"
    with pytest.raises(OSError) as e:
        os.rmdir(m / "d")
    assert e.value.errno == errno.ENOTEMPTY
    with pytest.raises(OSError) as e:
        os.mkdir(m / ("x" * 256))
    assert e.value.errno == errno.ENAMETOOLONG
    with open(m / "t", "wb") as f:
        f.write(b"0123456789")
        f.truncate(4)
    assert (m / "t").read_bytes() == b"0123"
    os.truncate(m / "t", 8)
    assert (m / "t").read_bytes() == b"0123\0\0\0\0"
    st = os.statvfs(m)
    assert st.f_blocks > 0 and st.f_namemax == 255
    archive.remount()
    assert (m / "d" / "e" / "g").read_bytes() == b"hello"
    assert os.getxattr(m / "h", "user.DOSATTRIB") == b"\x20"
    assert os.readlink(m / "s") == "d/e/g"
    assert sorted(os.listdir(m)) == ["d", "h", "s", "t"]


def test_killed_mount_loses_nothing_closed_and_umount_recovers(archive):
    data = pattern(5 * MIB + 3, 7)
    with open(archive.mnt / "closed", "wb") as f:
        f.write(data)
    fd = os.open(archive.mnt / "synced", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, data[:100_000])
    os.fsync(fd)  # acknowledged by fsync; the file is still open when the mount dies
    os.write(fd, b"never acknowledged")
    os.kill(max(archive.pids), signal.SIGKILL)
    time.sleep(0.5)
    with pytest.raises(OSError):
        os.close(fd)
    with pytest.raises(OSError) as e:
        os.listdir(archive.mnt)
    assert e.value.errno == errno.ENOTCONN
    res = sofsctl(archive.data, "mount", archive.volume, str(archive.mnt), check=False)
    assert res.returncode == 1 and "sofsctl umount" in res.stderr
    sofsctl(archive.data, "umount", str(archive.mnt))
    archive.mount()
    assert (archive.mnt / "closed").read_bytes() == data
    assert (archive.mnt / "synced").read_bytes() == data[:100_000]


def test_umount_refuses_while_busy_then_succeeds(archive):
    f = open(archive.mnt / "open", "wb")
    try:
        f.write(b"x")
        res = sofsctl(archive.data, "umount", str(archive.mnt), check=False)
        assert res.returncode == 1 and "busy" in res.stderr
    finally:
        f.close()
    archive.umount()
    assert not os.path.ismount(archive.mnt)


def test_a_mounted_volume_is_not_mounted_twice_and_another_volume_is(archive, tmp_path):
    """The same volume twice would fork its metadata: refused, naming where it is mounted.
    Another volume of the data directory mounts beside it (served by the ring host)."""
    other = tmp_path / "other"
    other.mkdir()
    res = sofsctl(archive.data, "mount", archive.volume, str(other), check=False)
    assert res.returncode == 1
    assert (f"volume {archive.volume} is already mounted at {archive.mnt}" in res.stderr
            and "umount" in res.stderr), res.stderr
    assert not os.path.ismount(other)
    sofsctl(archive.data, "volume", "create", "second")
    sofsctl(archive.data, "mount", "second", str(other), timeout=120)
    try:
        (other / "f").write_bytes(b"second volume")
        assert not (archive.mnt / "f").exists()
    finally:
        sofsctl(archive.data, "umount", str(other), timeout=120)


def test_df_on_the_mount_shows_the_volumes_own_usage(archive):
    """statfs on the mount: used is what the volume's files hold (the host's own usage used
    to show up there), free what the RING can still take."""
    def used() -> int:
        st = os.statvfs(archive.mnt)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    assert used() == 0
    (archive.mnt / "f").write_bytes(pattern(5 * MIB + 3, 7))
    assert 5 * MIB < used() <= 5 * MIB + 4096
    os.unlink(archive.mnt / "f")
    assert 5 * MIB < used() <= 5 * MIB + 4096  # the trash keeps it
    sofsctl(archive.data, "trash", "purge", archive.volume, "--all", "--yes")
    assert used() == 0


def test_a_mount_waits_for_a_sofsctl_job_holding_the_ring_instead_of_failing(make_archive):
    """A ``sofsctl status`` or ``df`` holds the embedded ring for a moment; a mount started
    then used to fail with 'cluster in use'. It waits for it now (not for a mount)."""
    from chunkstore.ring.open import open_ring

    from .conftest import SOFSCTL

    a = make_archive()
    held = open_ring(a.data)  # as a sofsctl job does
    try:
        proc = subprocess.Popen([*SOFSCTL, "--data-dir", str(a.data), "mount", a.volume,
                                 str(a.mnt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 60
        while "waiting up to" not in a.log():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, a.log()
            time.sleep(0.05)
    finally:
        held.close()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    a.pids.add(json.loads((a.data / "run" / "mounts" / f"{a.volume}.json").read_text())["pid"])
    (a.mnt / "f").write_bytes(b"mounted after the job let go")
    a.umount()
