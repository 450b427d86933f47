"""Fixtures shared by every test package."""

import os
import signal
import subprocess
import time

import pytest

from .netlab import netlab  # noqa: F401  (the network-namespace lab fixture, see tests/netlab.py)


def _daemons_under(root: str) -> list[tuple[int, list[str]]]:
    """(pid, argv) of the mount and ring host processes (fuse_mount.daemon, .ringhost) whose
    data directory is under root."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if ("fuse_mount.ringhost" in argv or "fuse_mount.daemon" in argv) \
                and "--data-dir" in argv:
            data_dir = argv[argv.index("--data-dir") + 1]
            if os.path.realpath(data_dir).startswith(os.path.realpath(root) + os.sep):
                found.append((int(entry), argv))
    return found


# scripts/test runs two pytest-xdist workers (--dist loadgroup). Each test module stays on one
# worker (its module fixtures are set up once), and every export test shares one worker: they
# create the same system users (tests/exporters/exportenv.py) and must not race on them.
SERIAL_PACKAGES = ("exporters",)


def pytest_collection_modifyitems(config, items):
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        rel = os.path.relpath(str(item.path), tests_dir)
        top = rel.split(os.sep)[0]
        group = top if top in SERIAL_PACKAGES else rel
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session", autouse=True)
def no_daemon_left(tmp_path_factory):
    """At the end of the run, no mount or ring host of a test's data directory is left
    running (a test's own cleanup stops what it started, and a ring host ends by itself
    after its last mount; this stops the rest by pid, and detaches their mount points)."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    left = _daemons_under(base)
    for _, argv in left:
        if "fuse_mount.daemon" in argv and os.path.isabs(argv[-1]):
            subprocess.run(["umount", "-l", argv[-1]], capture_output=True)
    pids = [pid for pid, _ in left]
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
