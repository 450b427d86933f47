"""Recovering what NFS and SMB clients deleted or destroyed: with real exports (ganesha.nfsd NFSv4.1,
smbd SMB3) of a volume with a trash, files removed over NFS, removed over SMB and replaced by
an SMB rename are listed by ``sofsctl trash list`` with their paths, restored by ``sofsctl
trash restore`` and read back over both protocols byte-identical, with their owner, mode and
modification time; and a "ransomware" run over SMB (every file rewritten in place and renamed)
undone from the latest snapshot."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
import smbclient

from tests.fuse_mount.conftest import needs_fuse

from .clients import nfs_connect, nfs_read, same, smbp_path, smbp_session
from .exportenv import ALICE, ExportEnv, mounted_env, sofsctl

pytestmark = [pytest.mark.integration, needs_fuse]


@pytest.fixture(scope="module")
def env() -> Iterator[ExportEnv]:
    with mounted_env([ALICE], prefix="sofs-recovery-") as e:
        e.export_nfs()
        e.export_smb()
        yield e


def _stat(path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns


def test_files_deleted_over_nfs_and_smb_come_back_from_the_trash(env):
    top = env.mnt / "trash"
    top.mkdir()
    top.chmod(0o777)
    blobs = {name: os.urandom(size) for name, size in
             (("by-nfs.dcm", 3 * 2**20 + 5), ("by-smb.dcm", 700_000), ("replaced.dcm", 4096))}
    with smbp_session(env.smb_port, ALICE) as kw:  # the share's files, as a user made them
        for name, blob in blobs.items():
            with smbclient.open_file(smbp_path(f"trash/{name}"), "wb", **kw) as f:
                f.write(blob)
    before = {name: _stat(top / name) for name in blobs}
    with nfs_connect(env.nfs_port, "4.1") as c:
        c.remove("trash/by-nfs.dcm")
    with smbp_session(env.smb_port, ALICE) as kw:
        smbclient.remove(smbp_path("trash/by-smb.dcm"), **kw)
        with smbclient.open_file(smbp_path("trash/replaced.dcm.tmp"), "wb", **kw) as f:
            f.write(b"ransom note")
        smbclient.replace(smbp_path("trash/replaced.dcm.tmp"), smbp_path("trash/replaced.dcm"),
                          **kw)
    assert sorted(os.listdir(top)) == ["replaced.dcm"]
    listed = json.loads(sofsctl(env.data, "trash", "list", env.archive.volume,
                                "--json").stdout)
    assert sorted(r["path"] for r in listed) == [f"/trash/{n}" for n in sorted(blobs)]
    os.unlink(top / "replaced.dcm")  # the note goes too, then every original comes back
    note = sofsctl(env.data, "trash", "list", env.archive.volume).stdout.splitlines()[-1]
    assert note.endswith("/trash/replaced.dcm") and "11 B" in note  # the latest of that path
    for entry in listed:
        sofsctl(env.data, "trash", "restore", env.archive.volume, str(entry["ino"]))
    assert sorted(os.listdir(top)) == sorted(blobs)
    for name, blob in blobs.items():
        same((top / name).read_bytes(), blob, f"FUSE read of restored {name}")
        assert _stat(top / name) == before[name]
    with nfs_connect(env.nfs_port, "4.1") as c:
        for name, blob in blobs.items():
            same(nfs_read(c, f"trash/{name}"), blob, f"NFSv4.1 read of restored {name}")
    with smbp_session(env.smb_port, ALICE) as kw:
        for name, blob in blobs.items():
            with smbclient.open_file(smbp_path(f"trash/{name}"), "rb", **kw) as f:
                same(f.read(), blob, f"SMB3 read of restored {name}")


def test_a_ransomware_run_over_smb_is_undone_from_the_latest_snapshot(env):
    """A client encrypts every file of the share in place and renames it (what ransomware
    does: nothing is deleted, so the trash has nothing); the latest snapshot still holds
    every original, and copying them back restores them byte-identical, read over SMB."""
    top = "studies"
    (env.mnt / top).mkdir()
    (env.mnt / top).chmod(0o777)
    names = [f"pat{p}/img-{i:03d}.dcm" for p in range(3) for i in range(20)]
    blobs = {n: os.urandom(20_000 + 997 * i) for i, n in enumerate(names)}
    with smbp_session(env.smb_port, ALICE) as kw:
        for p in range(3):
            smbclient.mkdir(smbp_path(f"{top}/pat{p}"), **kw)
        for n, blob in blobs.items():
            with smbclient.open_file(smbp_path(f"{top}/{n}"), "wb", **kw) as f:
                f.write(blob)
    sofsctl(env.data, "snapshot", "create", env.archive.volume, "before-attack")
    sofsctl(env.data, "snapshot", "create", env.archive.volume)  # the latest, @GMT-...
    snaps = json.loads(sofsctl(env.data, "snapshot", "list", env.archive.volume,
                               "--json").stdout)
    latest = max(snaps, key=lambda s: s["created_ns"])["name"]
    assert latest.startswith("@GMT-")
    with smbp_session(env.smb_port, ALICE) as kw:  # the attack
        for n, blob in blobs.items():
            path = smbp_path(f"{top}/{n}")
            with smbclient.open_file(path, "r+b", **kw) as f:
                f.write(bytes(b ^ 0x5A for b in blob))
            smbclient.rename(path, path + ".locked", **kw)
    for n in names:
        assert not (env.mnt / top / n).exists()
    snap = env.mnt / ".snapshots" / latest / top
    for n, blob in blobs.items():  # the restore: copy back from the snapshot
        same((snap / n).read_bytes(), blob, f"{n} in snapshot {latest}")
        (env.mnt / top / n).write_bytes((snap / n).read_bytes())
        os.unlink(env.mnt / top / (n + ".locked"))
    with smbp_session(env.smb_port, ALICE) as kw:
        for n, blob in blobs.items():
            with smbclient.open_file(smbp_path(f"{top}/{n}"), "rb", **kw) as f:
                same(f.read(), blob, f"SMB3 read of recovered {n}")
