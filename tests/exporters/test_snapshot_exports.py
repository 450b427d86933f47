"""Snapshots through the exports: over NFSv4.1 (nfs-rs) the hidden ``.snapshots`` directory
is reached by name and is read-only; over SMB, Samba's shadow_copy2 (exporters.samba) shows the
``@GMT-`` snapshots as Windows "previous versions", seen and read by Samba's smbclient."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import nfs_rs
import pytest

from tests.fuse_mount.conftest import needs_fuse

from .clients import nfs_connect, smbclient_cli
from .exportenv import ALICE, ExportEnv, mounted_env, sofsctl

pytestmark = [pytest.mark.integration, needs_fuse]


@pytest.fixture(scope="module")
def env() -> Iterator[ExportEnv]:
    with mounted_env([ALICE], prefix="sofs-snap-") as e:
        e.export_nfs()
        e.export_smb()
        yield e


def test_snapshots_are_read_only_directories_over_nfs(env):
    d = env.mnt / "nfs"
    d.mkdir()
    (d / "ct.dcm").write_bytes(b"DICM old")
    sofsctl(env.data, "snapshot", "create", "vol", "nfs-snap")
    (d / "ct.dcm").write_bytes(b"DICM new")
    with nfs_connect(env.nfs_port, "4.1", uid=0, gid=0) as c:
        with c.open(".snapshots/nfs-snap/nfs/ct.dcm", "rb") as f:
            assert f.read() == b"DICM old"
        with c.open("nfs/ct.dcm", "rb") as f:
            assert f.read() == b"DICM new"
        assert "nfs-snap" in c.listdir(".snapshots")
        assert c.listdir(".snapshots/nfs-snap/nfs") == ["ct.dcm"]
        with pytest.raises(nfs_rs.NfsError):
            with c.open(".snapshots/nfs-snap/nfs/new.dcm", "wb") as f:
                f.write(b"x")
    assert not (env.mnt / ".snapshots" / "nfs-snap" / "nfs" / "new.dcm").exists()


def test_a_snapshot_is_a_previous_version_over_smb(env, tmp_path):
    d = env.mnt / "study"
    d.mkdir()
    (d / "report.txt").write_bytes(b"first draft")
    res = sofsctl(env.data, "snapshot", "create", "vol")
    name = res.stdout.split()[1]
    assert re.fullmatch(r"@GMT-\d{4}\.\d\d\.\d\d-\d\d\.\d\d\.\d\d", name), res.stdout
    (d / "report.txt").write_bytes(b"final version")
    time.sleep(1)  # a second snapshot must have another name (one per second)
    sofsctl(env.data, "snapshot", "create", "vol", "by-hand")  # not a @GMT name: not shown
    out = smbclient_cli(env, "cd study; allinfo report.txt")
    assert out.returncode == 0, out.stdout + out.stderr
    versions = re.findall(r"@GMT-[0-9.\-]+", out.stdout)
    assert versions == [name], out.stdout
    got = tmp_path / "old.txt"
    res = smbclient_cli(env, f'get "{name}\\study\\report.txt" "{got}"')
    assert res.returncode == 0, res.stdout + res.stderr
    assert got.read_bytes() == b"first draft"
    res = smbclient_cli(env, f'put "{got}" "{name}\\study\\new.txt"')
    assert res.returncode != 0 or "NT_STATUS" in res.stdout + res.stderr  # read-only
    assert not (env.mnt / "study" / "new.txt").exists()
    assert (d / "report.txt").read_bytes() == b"final version"
