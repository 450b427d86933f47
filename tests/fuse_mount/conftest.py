"""Fixtures for real FUSE-mount tests: a local ring in a temp dir, mounted through sofsctl.

Every test that mounts is marked ``integration``. Teardown always unmounts (lazily if needed)
and kills the mount process by pid, even when the test failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SOFSCTL = [sys.executable, "-m", "sofsctl"]

needs_fuse = pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0,
                                reason="FUSE mount tests need /dev/fuse and root")


def sofsctl(data_dir: Path, *args: str, check: bool = True, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run sofsctl on ``data_dir``; ``env``: variables added to this process's environment
    (a background ``sofsctl mount`` passes its environment on to the mount process)."""
    res = subprocess.run([*SOFSCTL, "--data-dir", str(data_dir), *args], capture_output=True,
                         text=True, timeout=timeout,
                         env=None if env is None else {**os.environ, **env})
    if check and res.returncode != 0:
        raise AssertionError(f"sofsctl {' '.join(args)} failed ({res.returncode}):\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


def wait_dead(pid: int, timeout: float = 30) -> bool:
    """True once ``pid`` is gone or a zombie (dead, only its parent has not reaped it yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.02)
    return False


def stop_pid(pid: int, sig: int | None = signal.SIGTERM, timeout: float = 30) -> None:
    """Send ``sig`` (None: none) to ``pid``, wait up to ``timeout`` for it to end, then
    kill it."""
    try:
        if sig is not None:
            os.kill(pid, sig)
    except ProcessLookupError:
        return
    if not wait_dead(pid, timeout):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop_ring_host(data_dir: Path) -> None:
    """Stop the embedded ring's host process of ``data_dir`` if one runs (by its pid)."""
    try:
        pid = json.loads((Path(data_dir) / "run" / "ringhost.json").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return
    if pid > 0:
        stop_pid(pid)


def _mounted(mnt: Path) -> bool:
    real = os.path.realpath(mnt)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == real for line in f)


class Archive:
    """A local ring + one volume, mounted at ``mnt`` by a background sofsctl mount.

    ``mount_env``: environment variables every mount process of it gets on top of this
    process's environment (e.g. ``SOFS_WALL_STEP_FILE``, see chunkstore/clock.py)."""

    def __init__(self, root: Path, volume: str = "vol", disks: int = 6,
                 create_args: tuple[str, ...] = (), before_init=None,
                 mount_env: dict[str, str] | None = None) -> None:
        self.data = root / "data"
        self.mount_env = mount_env
        self.mnt = root / "mnt"
        self.mnt.mkdir()
        if before_init is not None:
            before_init(self)
        self.volume = volume
        self.pids: set[int] = set()
        sofsctl(self.data, "cluster", "init", "--disks", str(disks))
        sofsctl(self.data, "volume", "create", volume, *create_args)

    @property
    def disk_dirs(self) -> list[Path]:
        return sorted((self.data / "disks").iterdir())

    def mount(self, *extra: str) -> int:
        sofsctl(self.data, "mount", self.volume, str(self.mnt), *extra, timeout=120,
                env=self.mount_env)
        state = json.loads((self.data / "run" / "mounts" / f"{self.volume}.json").read_text())
        self.pids.add(state["pid"])
        return state["pid"]

    def umount(self) -> None:
        sofsctl(self.data, "umount", str(self.mnt), timeout=300)

    def remount(self) -> None:
        self.umount()
        self.mount()

    def cleanup(self) -> None:
        if _mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True)
        if _mounted(self.mnt):
            subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)
        for pid in self.pids:
            stop_pid(pid, sig=None)
        stop_ring_host(self.data)

    def log(self) -> str:
        path = self.data / "log" / f"mount-{self.volume}.log"
        return path.read_text() if path.exists() else ""

    def host_log(self) -> str:
        """The log of the data directory's ring host (it heals and scrubs the ring)."""
        path = self.data / "log" / "ringhost.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def archive(tmp_path):
    a = Archive(tmp_path)
    a.mount()
    try:
        yield a
    finally:
        a.cleanup()


@pytest.fixture
def make_archive(tmp_path):
    made = []

    def make(name: str = "a", **kw) -> Archive:
        root = tmp_path / name
        root.mkdir()
        a = Archive(root, **kw)
        made.append(a)
        return a

    yield make
    for a in made:
        a.cleanup()


@pytest.fixture
def full_archive(make_archive):
    """An archive whose disks share one 48 MiB tmpfs (about 60 MiB of file data with the
    default policy: a RING that fills up), mounted; the tmpfs goes at the end."""
    mounted = []

    def tmpfs_disks(a):
        disks = a.data / "disks"
        disks.mkdir(parents=True)
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(disks)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs for a full-disk test: {res.stderr.strip()}")
        mounted.append(disks)

    a = make_archive(before_init=tmpfs_disks)
    try:
        a.mount()
        yield a
    finally:
        a.cleanup()
        for m in mounted:
            subprocess.run(["umount", "-l", str(m)], capture_output=True)
