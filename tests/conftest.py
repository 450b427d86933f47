"""Fixtures shared by every test package."""

import os
import signal
import subprocess
import time

import pytest
from xdist.scheduler import LoadScopeScheduling

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


# scripts/test runs two pytest-xdist workers. Each test module stays on one worker (its module
# fixtures are set up once), and every export test goes to the same worker: they share the
# host's rpcbind and create the same system users (tests/exporters/exportenv.py).
SERIAL_PACKAGES = ("exporters",)


class _ModuleScheduling(LoadScopeScheduling):
    """xdist's loadfile, but one unit for each package of SERIAL_PACKAGES."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        parts = path.split("/")
        if len(parts) > 2 and parts[0] == "tests" and parts[1] in SERIAL_PACKAGES:
            return "/".join(parts[:2])
        return path


# The longest units first (measured on CI), so that the two workers finish together: xdist's
# own order (the units with the most tests first) left the long single-test modules for last.
LONGEST_FIRST = (
    "tests/exporters", "tests/fuse_mount/test_net_cluster.py", "tests/fuse_mount/test_model.py",
    "tests/fuse_mount/test_meta_checkpoint.py", "tests/fuse_mount/test_crash.py",
    "tests/chunkstore/ring/test_net.py", "tests/fuse_mount/test_faults.py",
    "tests/powercut/test_powercut.py", "tests/fuse_mount/test_net_volumes.py",
    "tests/fuse_mount/test_trash.py", "tests/fuse_mount/test_ringhost.py",
    "tests/sofsctl/test_volume_delete.py", "tests/sofsctl/test_disk_add.py",
    "tests/fuse_mount/test_orthanc.py")


def pytest_xdist_make_scheduler(config, log):
    config.option.loadscopereorder = False  # keep the order of pytest_collection_modifyitems
    return _ModuleScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    root = str(config.rootpath)

    def rank(item) -> int:
        rel = os.path.relpath(str(item.path), root)
        for i, prefix in enumerate(LONGEST_FIRST):
            if rel == prefix or rel.startswith(prefix + os.sep):
                return i
        return len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: a module's tests keep their order


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
