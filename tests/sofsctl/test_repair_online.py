"""``sofsctl repair --init-disk`` while a volume is mounted: the mount process holds the
embedded ring and runs the sweep, and it must honour --init-disk too (it ignored it: the disk
stayed left out and the command exited 5)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.fuse_mount.conftest import Archive, needs_fuse, sofsctl

pytestmark = [pytest.mark.integration, needs_fuse]


@pytest.fixture
def archive(tmp_path):
    a = Archive(tmp_path)
    a.mount()
    try:
        yield a
    finally:
        a.cleanup()


def test_init_disk_is_honoured_by_the_mount_process(archive, tmp_path):
    a = archive
    payload = os.urandom(9 << 20)
    (a.mnt / "study.dcm").write_bytes(payload)
    os.sync()
    shutil.move(str(a.data / "disks" / "d1"), str(tmp_path / "d1-failed"))  # the drive died
    res = sofsctl(a.data, "repair", check=False)
    assert res.returncode == 5, res.stdout + res.stderr
    assert "--init-disk d1" in res.stderr
    res = sofsctl(a.data, "repair", "--init-disk", "d1", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "disks back in use: d1" in res.stdout and "all chunks fully protected" in res.stdout
    assert any((a.data / "disks" / "d1" / "containers").iterdir())
    st = sofsctl(a.data, "status", check=False)
    assert st.stdout.startswith("HEALTH_OK"), st.stdout
    assert (a.mnt / "study.dcm").read_bytes() == payload
