"""Fixtures shared by every test package."""

import os
import signal
import time

import pytest

from .netlab import netlab  # noqa: F401  (the network-namespace lab fixture, see tests/netlab.py)


def _ring_hosts_under(root: str) -> list[int]:
    """Pids of ring host processes (fuse_mount.ringhost) whose data directory is under root."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "fuse_mount.ringhost" in argv and "--data-dir" in argv:
            data_dir = argv[argv.index("--data-dir") + 1]
            if os.path.realpath(data_dir).startswith(os.path.realpath(root) + os.sep):
                pids.append(int(entry))
    return pids


@pytest.fixture(scope="session", autouse=True)
def no_ring_host_left(tmp_path_factory):
    """At the end of the run, no ring host of a test's data directory is left running (each
    ends by itself a few seconds after its last mount; this stops the rest by pid)."""
    yield
    pids = _ring_hosts_under(str(tmp_path_factory.getbasetemp()))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
        time.sleep(0.1)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
