"""The README's first command, run for real (twice) against a temp data dir and mount point."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.fuse_mount.conftest import needs_fuse, sofsctl

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.integration, needs_fuse]


def test_setup_and_run_twice_then_stop(tmp_path):
    env = dict(os.environ, SOFS_HOME=str(tmp_path / "data"), SOFS_MOUNT=str(tmp_path / "mnt"))
    try:
        for _ in range(2):
            res = subprocess.run([str(ROOT / "scripts" / "setup-and-run")], env=env,
                                 capture_output=True, text=True, timeout=900)
            assert res.returncode == 0, res.stdout + res.stderr
            assert f"mounted at {tmp_path / 'mnt'}" in res.stdout
            assert "umount" in res.stdout
        (tmp_path / "mnt" / "study.dcm").write_bytes(b"DICM" * 1000)
        listing = sofsctl(tmp_path / "data", "volume", "list").stdout
        assert "archive" in listing and "ec4+2" in listing
    finally:
        subprocess.run([str(ROOT / ".venv" / "bin" / "sofsctl"), "--data-dir",
                        str(tmp_path / "data"), "umount", str(tmp_path / "mnt")],
                       capture_output=True)
        subprocess.run(["umount", "-l", str(tmp_path / "mnt")], capture_output=True)
    assert not os.path.ismount(tmp_path / "mnt")
