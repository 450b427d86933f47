"""NFS and SMB protocol coverage of a real sofs export, with real clients (issue 5).

One sofs FUSE mount (a local ring under /tmp) for the whole module, exported with ``sofsctl
export nfs`` (NFSv4.1, v4.0 and, when an rpcbind can run in a private network namespace, v3)
and ``sofsctl export smb`` (users ALICE and BOB) on 127.0.0.1 and free high ports: real
supervisors, ganesha.nfsd and smbd. Clients: nfs-rs (v4.1, v4.0, v3), libnfs-utils (nfs-cp,
nfs-cat, nfs-ls: v3 only), pysmb (SMB2_02), smbprotocol (SMB3) and Samba's smbclient tool
(SMB3, signed). Every byte written is checked through the other side (the FUSE mount, the other
protocol). Each test works in its own directory of the volume. Everything started is stopped by
pid at the end (exportenv's ``ExportEnv.cleanup``), the test users removed.

test_export_cli.py covers the lifecycle (crashes, stop/start, remount and handles, mount death);
this module covers what the protocols do to the data.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import nfs_rs
import pytest
import smbclient
from smb.smb_structs import OperationFailure

from tests.fuse_mount.conftest import needs_fuse

from .clients import (
    NFS_RETRIES,
    SIZES,
    dacl_entries,
    nfs_cli_url,
    nfs_connect,
    nfs_read,
    pysmb_connect,
    pysmb_read,
    same,
    smbclient_cli,
    smbp_attributes,
    smbp_get_sd,
    smbp_path,
    smbp_session,
    smbp_set_attributes,
    smbp_set_dacl,
)
from .exportenv import ALICE, BOB, EVE, ExportEnv, mounted_env

pytestmark = [pytest.mark.integration, needs_fuse]


MANY = 1000
# FILE_ATTRIBUTE_*
READONLY, HIDDEN, SYSTEM, DIRECTORY, ARCHIVE = 0x1, 0x2, 0x4, 0x10, 0x20
FULL, READ_EXEC = 0x001F01FF, 0x001200A9  # FILE_ALL_ACCESS, FILE_GENERIC_READ|EXECUTE


@pytest.fixture(scope="module")
def env() -> Iterator[ExportEnv]:
    t0 = time.monotonic()
    with mounted_env([ALICE, BOB], prefix="sofs-proto-") as e:
        try:
            e.export_nfs(v3=e.start_rpcbind())
            e.export_smb()
            e.add_samba_user_outside_share(EVE)
            print(f"\nmount + NFS (v3: {e.v3}) + SMB exports up in "
                  f"{time.monotonic() - t0:.1f} s")
            yield e
        finally:
            if NFS_RETRIES:
                print(f"\nNFS reads retried {len(NFS_RETRIES)} times: {NFS_RETRIES[:5]}")


def fuse_dir(env: ExportEnv, name: str, owner: int | None = None):
    d = env.mnt / name
    d.mkdir()
    d.chmod(0o777)
    if owner is not None:
        os.chown(d, owner, owner)
    return d


def check_names(got, want: set[str], what: str) -> None:
    got = list(got)
    assert len(got) == len(set(got)), f"{what}: duplicate names in the listing"
    missing, extra = sorted(want - set(got)), sorted(set(got) - want)
    assert not missing and not extra, (f"{what}: {len(got)} names; missing {missing[:10]} "
                                       f"({len(missing)}), unexpected {extra[:10]}")


# --- NFS: nfs-rs -------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["4.1", "4.0", "3"])
def test_nfs_rs_files_dirs_and_listing(env, version):
    if version == "3" and not env.v3:
        pytest.skip(f"no NFSv3: {env.v3_why}")
    t0 = time.monotonic()
    top = f"nfs-{version}"
    base = env.mnt / top
    data = {name: os.urandom(size) for name, size in SIZES.items()}
    local = {name: os.urandom(size) for name, size in SIZES.items()}

    def again():
        return nfs_connect(env.nfs_port, version, mount_port=env.mount_port)

    # one connection (session) per phase: see clients.nfs_read about NFSv4.1 sessions
    with again() as c:
        c.mkdir(top)
        c.mkdir(f"{top}/w")
        for name, blob in data.items():
            with c.open(f"{top}/w/{name}", "wb") as f:
                f.write(blob)
    with again() as c:
        for name, blob in data.items():
            assert c.stat(f"{top}/w/{name}").size == len(blob)
        for name, blob in data.items():
            same(nfs_read(c, f"{top}/w/{name}", again), blob, f"NFSv{version} read of {name}")
    t_io = time.monotonic()
    # byte-identical through the FUSE mount, owned by the AUTH_SYS identity
    for name, blob in data.items():
        same((base / "w" / name).read_bytes(), blob, f"FUSE read of NFSv{version} {name}")
    assert (base / "w" / "4KiB").stat().st_uid == 1000
    # and the other way: written through FUSE, read over NFS
    (base / "local").mkdir()
    os.chown(base / "local", 1000, 1000)  # moved across directories below: needs write
    for name, blob in local.items():
        (base / "local" / name).write_bytes(blob)
    with again() as c:
        for name, blob in local.items():
            same(nfs_read(c, f"{top}/local/{name}", again), blob,
                 f"NFSv{version} read of FUSE-written {name}")
    with again() as c:
        # overwrite in the middle and extend: visible through FUSE
        with c.open(f"{top}/w/1MiB+1", "r+b") as f:
            f.seek(4000)
            f.write(b"X" * 10)
            f.seek(len(data["1MiB+1"]) + 5)
            f.write(b"tail")
        want = bytearray(data["1MiB+1"])
        want[4000:4010] = b"X" * 10
        want += b"\0" * 5 + b"tail"
        same((base / "w" / "1MiB+1").read_bytes(), bytes(want), "FUSE read after NFS r+b")

        # rename: in a directory, across directories, a directory itself, over an existing file
        c.rename(f"{top}/w/4KiB", f"{top}/w/4KiB-renamed")
        c.mkdir(f"{top}/other")
        c.rename(f"{top}/w/1B", f"{top}/other/1B")
        c.rename(f"{top}/local", f"{top}/other/local")
        c.rename(f"{top}/other/local/0B", f"{top}/other/1B")  # replaces it
        assert sorted(c.listdir(f"{top}/other")) == ["1B", "local"]
        same(nfs_read(c, f"{top}/other/local/4KiB", again), local["4KiB"],
             "read through a renamed directory")
    assert sorted(os.listdir(base / "w")) == ["0B", "1MiB+1", "4KiB-renamed", "64MiB"]
    assert (base / "other" / "1B").read_bytes() == b""
    same((base / "w" / "4KiB-renamed").read_bytes(), data["4KiB"], "renamed file")
    same((base / "other" / "local" / "64MiB").read_bytes(), local["64MiB"],
         "file in renamed directory")

    with again() as c:
        # mkdir + 1,000 entries; listed complete, also in small READDIR pages
        t_many = time.monotonic()
        c.mkdir(f"{top}/many")
        names = {f"img-{i:04d}.dcm" for i in range(MANY)}
        for n in sorted(names):
            c.touch(f"{top}/many/{n}")
        t_created = time.monotonic()
        check_names(c.listdir(f"{top}/many"), names, f"NFSv{version} listdir")
        t_listed = time.monotonic()
        check_names(os.listdir(base / "many"), names, "FUSE listdir of NFS-created entries")

        # remove: files, then the emptied directories
        for n in names:
            c.remove(f"{top}/many/{n}")
        t_removed = time.monotonic()
        assert c.listdir(f"{top}/many") == []
        c.rmdir(f"{top}/many")
        for n in ("0B", "1MiB+1", "4KiB-renamed", "64MiB"):
            c.remove(f"{top}/w/{n}")
        c.rmdir(f"{top}/w")
        with pytest.raises(nfs_rs.NfsNotFoundError):
            c.stat(f"{top}/w")
        with pytest.raises(nfs_rs.NfsError):
            c.rmdir(f"{top}/other")  # not empty
    with nfs_connect(env.nfs_port, version, mount_port=env.mount_port,
                     readdir_buffer=(1024, 2048)) as c:
        # a second connection, small pages: many READDIR round trips with cookies
        c.mkdir(f"{top}/paged")
        for i in range(300):
            (base / "paged" / f"entry-with-a-longer-name-{i:04d}").write_bytes(b"")
        check_names(c.listdir(f"{top}/paged"),
                    {f"entry-with-a-longer-name-{i:04d}" for i in range(300)},
                    f"NFSv{version} paged listdir")
    assert sorted(os.listdir(base)) == ["other", "paged"]
    print(f"\nNFSv{version}: sizes write+read {t_io - t0:.1f} s; {MANY} creates "
          f"{t_created - t_many:.1f} s, listdir {t_listed - t_created:.2f} s, removes "
          f"{t_removed - t_listed:.1f} s; total {time.monotonic() - t0:.1f} s")


# --- NFS: libnfs-utils (v3) --------------------------------------------------------------------

def test_libnfs_utils_v3(env, tmp_path):
    if not env.v3:
        pytest.skip(f"libnfs-utils speak NFSv3 here and there is no NFSv3: {env.v3_why}")
    if shutil.which("nfs-cp") is None:
        pytest.skip("apt install libnfs-utils")
    t0 = time.monotonic()

    def run(*argv, check=True) -> subprocess.CompletedProcess:
        res = subprocess.run(argv, capture_output=True, timeout=120)
        if check:
            assert res.returncode == 0, (argv, res.stdout[-500:], res.stderr[-500:])
        return res

    base = fuse_dir(env, "libnfs")
    for name, size in SIZES.items():
        src = tmp_path / name
        blob = os.urandom(size)
        src.write_bytes(blob)
        run("nfs-cp", str(src), nfs_cli_url(env, f"libnfs/{name}"))
        same((base / name).read_bytes(), blob, f"FUSE read of nfs-cp'd {name}")
        back = tmp_path / f"{name}.back"
        (base / f"{name}.fuse").write_bytes(blob[::-1])
        run("nfs-cp", nfs_cli_url(env, f"libnfs/{name}.fuse"), str(back))
        same(back.read_bytes(), blob[::-1], f"nfs-cp of FUSE-written {name}")
    (base / "note.txt").write_bytes(b"read with nfs-cat\n")
    assert run("nfs-cat", nfs_cli_url(env, "libnfs/note.txt")).stdout == b"read with nfs-cat\n"
    (base / "many").mkdir()
    names = {f"s{i:04d}" for i in range(MANY)}
    for n in names:
        (base / "many" / n).write_bytes(b"")
    out = run("nfs-ls", nfs_cli_url(env, "libnfs/many")).stdout.decode()
    check_names([ln.split()[-1] for ln in out.splitlines() if ln.strip()], names,
                "nfs-ls of 1,000 entries")
    out = run("nfs-ls", nfs_cli_url(env, "libnfs")).stdout.decode()
    row = next(ln for ln in out.splitlines() if ln.endswith(" 64MiB"))
    assert str(64 << 20) in row.split()
    # a missing file is an error, not an empty file
    res = run("nfs-cat", nfs_cli_url(env, "libnfs/nope"), check=False)
    assert res.returncode != 0
    print(f"\nlibnfs-utils: {time.monotonic() - t0:.1f} s")


# --- SMB: the same operations with each client -------------------------------------------------

def _local_files(env: ExportEnv, top: str) -> dict[str, bytes]:
    d = fuse_dir(env, f"{top}-local")
    files = {name: os.urandom(size) for name, size in SIZES.items()}
    for name, blob in files.items():
        (d / name).write_bytes(blob)
    return files


def test_pysmb_files_dirs_and_listing(env):
    t0 = time.monotonic()
    top, base = "pysmb", env.mnt / "pysmb"
    data = {name: os.urandom(size) for name, size in SIZES.items()}
    local = _local_files(env, top)
    conn, ok = pysmb_connect(env.smb_port, ALICE)
    assert ok
    try:
        conn.createDirectory("vol", top)
        for name, blob in data.items():
            conn.storeFile("vol", f"{top}/{name}", io.BytesIO(blob))
        for name, blob in data.items():
            same(pysmb_read(conn, f"{top}/{name}"), blob, f"pysmb read of {name}")
            same((base / name).read_bytes(), blob, f"FUSE read of pysmb {name}")
            assert conn.getAttributes("vol", f"{top}/{name}").file_size == len(blob)
        for name, blob in local.items():
            same(pysmb_read(conn, f"{top}-local/{name}"), blob, f"pysmb read of FUSE {name}")
        st = (base / "4KiB").stat()
        assert (st.st_uid, st.st_gid) == (ALICE.uid, ALICE.uid)
        # rename in place, across directories, a directory
        conn.rename("vol", f"{top}/4KiB", f"{top}/4KiB-renamed")
        conn.createDirectory("vol", f"{top}/sub")
        conn.rename("vol", f"{top}/1B", f"{top}/sub/1B")
        conn.rename("vol", f"{top}/sub", f"{top}/sub2")
        assert sorted(os.listdir(base)) == ["0B", "1MiB+1", "4KiB-renamed", "64MiB", "sub2"]
        same((base / "sub2" / "1B").read_bytes(), data["1B"], "FUSE read after SMB renames")
        # 1,000 entries
        t1 = time.monotonic()
        conn.createDirectory("vol", f"{top}/many")
        names = {f"img-{i:04d}.dcm" for i in range(MANY)}
        for n in sorted(names):
            conn.storeFile("vol", f"{top}/many/{n}", io.BytesIO(b""))
        t2 = time.monotonic()
        listed = [f.filename for f in conn.listPath("vol", f"{top}/many")
                  if f.filename not in (".", "..")]
        check_names(listed, names, "pysmb listPath")
        check_names(os.listdir(base / "many"), names, "FUSE listdir of SMB-created entries")
        # delete
        conn.deleteFiles("vol", f"{top}/many/*")
        t3 = time.monotonic()
        assert os.listdir(base / "many") == []
        conn.deleteDirectory("vol", f"{top}/many")
        conn.deleteFiles("vol", f"{top}/64MiB")
        assert not (base / "many").exists() and not (base / "64MiB").exists()
    finally:
        conn.close()
    print(f"\npysmb: {MANY} creates {t2 - t1:.1f} s, delete {t3 - t2:.1f} s; "
          f"total {time.monotonic() - t0:.1f} s")


def test_smbprotocol_files_dirs_and_listing(env):
    t0 = time.monotonic()
    top, base = "smb3", env.mnt / "smb3"
    data = {name: os.urandom(size) for name, size in SIZES.items()}
    local = _local_files(env, top)
    with smbp_session(env.smb_port, BOB) as kw:
        smbclient.mkdir(smbp_path(top), **kw)
        for name, blob in data.items():
            with smbclient.open_file(smbp_path(f"{top}/{name}"), "wb", **kw) as f:
                f.write(blob)
        for name, blob in data.items():
            with smbclient.open_file(smbp_path(f"{top}/{name}"), "rb", **kw) as f:
                same(f.read(), blob, f"smbprotocol read of {name}")
            same((base / name).read_bytes(), blob, f"FUSE read of smbprotocol {name}")
            assert smbclient.stat(smbp_path(f"{top}/{name}"), **kw).st_size == len(blob)
        for name, blob in local.items():
            with smbclient.open_file(smbp_path(f"{top}-local/{name}"), "rb", **kw) as f:
                same(f.read(), blob, f"smbprotocol read of FUSE {name}")
        assert (base / "0B").stat().st_uid == BOB.uid
        # append and overwrite in the middle
        with smbclient.open_file(smbp_path(f"{top}/4KiB"), "r+b", **kw) as f:
            f.seek(100)
            f.write(b"middle")
        with smbclient.open_file(smbp_path(f"{top}/4KiB"), "ab", **kw) as f:
            f.write(b"appended")
        want = data["4KiB"][:100] + b"middle" + data["4KiB"][106:] + b"appended"
        same((base / "4KiB").read_bytes(), want, "FUSE read after SMB3 r+b and append")
        # rename, replace an existing file, rename a directory
        smbclient.rename(smbp_path(f"{top}/4KiB"), smbp_path(f"{top}/4KiB-renamed"), **kw)
        smbclient.mkdir(smbp_path(f"{top}/sub"), **kw)
        smbclient.rename(smbp_path(f"{top}/1B"), smbp_path(f"{top}/sub/1B"), **kw)
        smbclient.replace(smbp_path(f"{top}/0B"), smbp_path(f"{top}/sub/1B"), **kw)
        smbclient.rename(smbp_path(f"{top}/sub"), smbp_path(f"{top}/sub2"), **kw)
        assert sorted(os.listdir(base)) == ["1MiB+1", "4KiB-renamed", "64MiB", "sub2"]
        assert (base / "sub2" / "1B").read_bytes() == b""
        # 1,000 entries
        t1 = time.monotonic()
        smbclient.mkdir(smbp_path(f"{top}/many"), **kw)
        names = {f"img-{i:04d}.dcm" for i in range(MANY)}
        for n in sorted(names):
            with smbclient.open_file(smbp_path(f"{top}/many/{n}"), "wb", **kw):
                pass
        t2 = time.monotonic()
        check_names(smbclient.listdir(smbp_path(f"{top}/many"), **kw), names,
                    "smbprotocol listdir")
        check_names(os.listdir(base / "many"), names, "FUSE listdir of SMB3-created entries")
        for n in names:
            smbclient.remove(smbp_path(f"{top}/many/{n}"), **kw)
        t3 = time.monotonic()
        smbclient.rmdir(smbp_path(f"{top}/many"), **kw)
        smbclient.remove(smbp_path(f"{top}/64MiB"), **kw)
        assert sorted(os.listdir(base)) == ["1MiB+1", "4KiB-renamed", "sub2"]
        with pytest.raises(OSError):
            smbclient.rmdir(smbp_path(f"{top}/sub2"), **kw)  # not empty
    print(f"\nsmbprotocol: {MANY} creates {t2 - t1:.1f} s, removes {t3 - t2:.1f} s; "
          f"total {time.monotonic() - t0:.1f} s")


def test_smbclient_tool_files_dirs_and_listing(env, tmp_path):
    t0 = time.monotonic()
    top, base = "smbcli", env.mnt / "smbcli"
    up, down = tmp_path / "up", tmp_path / "down"
    up.mkdir()
    down.mkdir()
    data = {name: os.urandom(size) for name, size in SIZES.items()}
    for name, blob in data.items():
        (up / name).write_bytes(blob)
    local = _local_files(env, top)

    def cli(commands: str, cwd=up) -> str:
        res = smbclient_cli(env, commands, cwd=cwd)
        assert res.returncode == 0 and "NT_STATUS" not in res.stdout + res.stderr, (
            commands[:200], res.stdout[-1000:], res.stderr[-1000:])
        return res.stdout

    puts = "; ".join(f"put {n}" for n in data)
    cli(f"mkdir {top}; cd {top}; {puts}")
    for name, blob in data.items():
        same((base / name).read_bytes(), blob, f"FUSE read of smbclient-put {name}")
    gets = "; ".join(f"get {n} {down / n}" for n in data)
    cli(f"cd {top}; {gets}")
    gets = "; ".join(f"get {n} {down / (n + '.local')}" for n in local)
    cli(f"cd {top}-local; {gets}")
    for name, blob in data.items():
        same((down / name).read_bytes(), blob, f"smbclient get of {name}")
        same((down / f"{name}.local").read_bytes(), local[name], f"smbclient get of FUSE {name}")
    cli(f"cd {top}; rename 4KiB 4KiB-renamed; mkdir sub; rename 1B sub\\1B; rename sub sub2")
    assert sorted(os.listdir(base)) == ["0B", "1MiB+1", "4KiB-renamed", "64MiB", "sub2"]
    same((base / "sub2" / "1B").read_bytes(), data["1B"], "FUSE read after smbclient renames")
    # 1,000 entries with one mput, listed with ls
    many = tmp_path / "many"
    many.mkdir()
    names = {f"img-{i:04d}.dcm" for i in range(MANY)}
    for n in names:
        (many / n).write_bytes(n.encode())
    t1 = time.monotonic()
    cli(f"mkdir {top}\\many; cd {top}\\many; prompt off; mput img-*", cwd=many)
    t2 = time.monotonic()
    out = cli(f"cd {top}\\many; ls")
    listed = [ln.split()[0] for ln in out.splitlines()
              if ln.startswith("  ") and ln.split()[0] not in (".", "..")]
    check_names(listed, names, "smbclient ls")
    assert (base / "many" / "img-0999.dcm").read_bytes() == b"img-0999.dcm"
    cli(f"cd {top}\\many; del img-*; cd ..; rmdir many; del 64MiB")
    t3 = time.monotonic()
    assert sorted(os.listdir(base)) == ["0B", "1MiB+1", "4KiB-renamed", "sub2"]
    print(f"\nsmbclient: {MANY} mput {t2 - t1:.1f} s, del {t3 - t2:.1f} s; "
          f"total {time.monotonic() - t0:.1f} s")


# --- SMB: DOS attributes, Windows ACLs, who is refused -----------------------------------------

def test_smb_dos_attributes_set_and_read_back(env):
    d = fuse_dir(env, "dosattr")
    (d / "by-fuse").write_bytes(b"x")
    os.chown(d / "by-fuse", ALICE.uid, ALICE.uid)
    with smbp_session(env.smb_port, ALICE) as kw:
        with smbclient.open_file(smbp_path("dosattr/study.dcm"), "wb", **kw) as f:
            f.write(b"DICM")
        assert smbp_attributes("dosattr/study.dcm", **kw) & ARCHIVE
        # set with smbprotocol (SET_INFO FileBasicInformation) ...
        smbp_set_attributes("dosattr/study.dcm", HIDDEN | SYSTEM | ARCHIVE, **kw)
        assert smbp_attributes("dosattr/study.dcm", **kw) & 0xFF == HIDDEN | SYSTEM | ARCHIVE
        smbp_set_attributes("dosattr/by-fuse", READONLY | ARCHIVE, **kw)
        smbclient.mkdir(smbp_path("dosattr/dir"), **kw)
        smbp_set_attributes("dosattr/dir", HIDDEN | DIRECTORY, **kw)
    # ... kept in the FUSE mount's xattrs ...
    for name in ("study.dcm", "by-fuse", "dir"):
        assert "user.DOSATTRIB" in os.listxattr(d / name), name
    # ... and read back by pysmb and by the smbclient tool
    conn, ok = pysmb_connect(env.smb_port, BOB)
    assert ok
    try:
        assert conn.getAttributes("vol", "dosattr/study.dcm").file_attributes & 0xFF == \
            HIDDEN | SYSTEM | ARCHIVE
        assert conn.getAttributes("vol", "dosattr/by-fuse").file_attributes & 0xFF == \
            READONLY | ARCHIVE
        assert conn.getAttributes("vol", "dosattr/dir").file_attributes & 0xFF == \
            HIDDEN | DIRECTORY
        assert conn.getAttributes("vol", "dosattr/dir").isDirectory
    finally:
        conn.close()
    out = smbclient_cli(env, "cd dosattr; allinfo study.dcm; allinfo by-fuse").stdout
    assert "attributes: HSA (26)" in out and "attributes: RA (21)" in out, out
    # set with the smbclient tool (setmode), read back with smbprotocol
    res = smbclient_cli(env, "cd dosattr; setmode study.dcm -hs; setmode by-fuse -r+h")
    assert res.returncode == 0, res.stdout + res.stderr
    with smbp_session(env.smb_port, ALICE) as kw:
        assert smbp_attributes("dosattr/study.dcm", **kw) & 0xFF == ARCHIVE
        assert smbp_attributes("dosattr/by-fuse", **kw) & 0xFF == HIDDEN | ARCHIVE
        # READONLY is honoured: no write access to a read-only file
        smbp_set_attributes("dosattr/study.dcm", READONLY | ARCHIVE, **kw)
        with pytest.raises(OSError):
            with smbclient.open_file(smbp_path("dosattr/study.dcm"), "ab", **kw) as f:
                f.write(b"more")
    assert (d / "study.dcm").read_bytes() == b"DICM"


def test_smb_windows_acl_set_read_back_and_enforced(env):
    fuse_dir(env, "acl")
    with smbp_session(env.smb_port, ALICE) as kw:
        with smbclient.open_file(smbp_path("acl/private.dcm"), "wb", **kw) as f:
            f.write(b"for alice only")
        with smbclient.open_file(smbp_path("acl/shared.dcm"), "wb", **kw) as f:
            f.write(b"everyone reads")
        sd = smbp_get_sd("acl/private.dcm", **kw)
        alice_sid = str(sd.get_owner())
        group_sid = str(sd.get_group())
        assert alice_sid.startswith("S-1-5-21-") and group_sid.startswith("S-1-5-21-")
        # private: only its owner; shared: owner full, Everyone read, BUILTIN\Users denied write
        smbp_set_dacl("acl/private.dcm", [(alice_sid, 0, FULL)], **kw)
        shared = [(alice_sid, 0, 0, FULL), ("S-1-5-32-545", 1, 0, 0x2),
                  ("S-1-1-0", 0, 0, READ_EXEC)]
        smbp_set_dacl("acl/shared.dcm", [(s, t, m) for s, t, _, m in shared], **kw)
        assert dacl_entries(smbp_get_sd("acl/private.dcm", **kw)) == [(alice_sid, 0, 0, FULL)]
        assert dacl_entries(smbp_get_sd("acl/shared.dcm", **kw)) == shared
        assert str(smbp_get_sd("acl/shared.dcm", **kw).get_owner()) == alice_sid
    # kept in the FUSE mount's xattrs (acl_xattr: security.NTACL)
    assert "security.NTACL" in os.listxattr(env.mnt / "acl" / "shared.dcm")
    # read back by another client (pysmb, SMB2) as another user
    conn, ok = pysmb_connect(env.smb_port, BOB)
    assert ok
    try:
        sd = conn.getSecurity("vol", "acl/shared.dcm")
        assert str(sd.owner) == alice_sid
        assert [(str(a.sid), a.type, a.mask) for a in sd.dacl.aces] == \
            [(s, t, m) for s, t, _, m in shared]
        # enforced: BOB reads the shared file but not the private one
        assert pysmb_read(conn, "acl/shared.dcm") == b"everyone reads"
        with pytest.raises(Exception, match="(?i)access|denied|0xc0000022"):
            pysmb_read(conn, "acl/private.dcm")
    finally:
        conn.close()
    with smbp_session(env.smb_port, BOB) as kw:
        with pytest.raises(OSError):
            with smbclient.open_file(smbp_path("acl/private.dcm"), "rb", **kw) as f:
                f.read()
        with pytest.raises(OSError):
            smbp_set_dacl("acl/private.dcm", [("S-1-1-0", 0, FULL)], **kw)
    with smbp_session(env.smb_port, ALICE) as kw:
        with smbclient.open_file(smbp_path("acl/private.dcm"), "rb", **kw) as f:
            assert f.read() == b"for alice only"


def test_smb_wrong_password_and_users_without_rights_refused(env):
    d = fuse_dir(env, "rights")
    private = d / "alice-only"
    private.mkdir(mode=0o755)
    os.chown(private, ALICE.uid, ALICE.uid)
    private.chmod(0o755)
    (private / "report.dcm").write_bytes(b"r")
    os.chown(private / "report.dcm", ALICE.uid, ALICE.uid)
    # a wrong password: refused by each client
    conn, ok = pysmb_connect(env.smb_port, ALICE, password="Wrong-Pass:1")
    conn.close()
    assert not ok
    with pytest.raises(Exception, match="(?i)logon|password|0xc000006d"):
        with smbp_session(env.smb_port, ALICE, password="Wrong-Pass:1"):
            pass
    res = smbclient_cli(env, "ls", password="Wrong-Pass:1")
    assert res.returncode != 0 and "NT_STATUS_LOGON_FAILURE" in res.stdout + res.stderr
    # EVE is a Samba user of this server, not in the share's valid users: no tree connect
    conn, ok = pysmb_connect(env.smb_port, EVE)
    try:
        assert ok  # authenticated...
        with pytest.raises(OperationFailure):
            conn.listPath("vol", "/")  # ...but not let into the share
        with pytest.raises(OperationFailure):
            conn.storeFile("vol", "rights/eve", io.BytesIO(b"x"))
    finally:
        conn.close()
    with pytest.raises(Exception, match="(?i)access|denied|0xc0000022"):
        with smbp_session(env.smb_port, EVE) as kw:
            smbclient.listdir(smbp_path(), **kw)
    res = smbclient_cli(env, "ls", user=EVE)
    assert res.returncode != 0 and "NT_STATUS_ACCESS_DENIED" in res.stdout + res.stderr
    # BOB may use the share but not write into ALICE's 0755 directory (POSIX modes through
    # the FUSE mount) nor delete her file; he may read it
    conn, ok = pysmb_connect(env.smb_port, BOB)
    assert ok
    try:
        assert pysmb_read(conn, "rights/alice-only/report.dcm") == b"r"
        with pytest.raises(OperationFailure):
            conn.storeFile("vol", "rights/alice-only/bob", io.BytesIO(b"x"))
        with pytest.raises(OperationFailure):
            conn.deleteFiles("vol", "rights/alice-only/report.dcm")
    finally:
        conn.close()
    with smbp_session(env.smb_port, BOB) as kw:
        with pytest.raises(OSError):
            smbclient.mkdir(smbp_path("rights/alice-only/sub"), **kw)
        with pytest.raises(OSError):
            smbclient.rename(smbp_path("rights/alice-only/report.dcm"),
                             smbp_path("rights/stolen.dcm"), **kw)
    assert sorted(os.listdir(private)) == ["report.dcm"]
    assert sorted(os.listdir(d)) == ["alice-only"]
    assert (private / "report.dcm").read_bytes() == b"r"


# --- cross-protocol ------------------------------------------------------------------------------

def test_cross_protocol_changes_are_seen_everywhere(env):
    """Beyond test_export_cli's small NFSv4.1 <-> pysmb reads: 64 MiB files, the other
    clients and NFS versions, and changes (overwrite, truncate, rename, delete) made on one
    side seen on the others."""
    fuse_dir(env, "cross")

    def nfs(v: str):
        return lambda: nfs_connect(env.nfs_port, v, mount_port=env.mount_port)
    versions = ["4.0", "3"] if env.v3 else ["4.0"]
    nfs_big = os.urandom(SIZES["64MiB"])
    smb_big = os.urandom(SIZES["64MiB"])
    fuse_big = os.urandom(SIZES["64MiB"])
    (env.mnt / "cross" / "from-fuse.bin").write_bytes(fuse_big)
    os.chown(env.mnt / "cross" / "from-fuse.bin", ALICE.uid, ALICE.uid)
    with nfs_connect(env.nfs_port, "4.1") as c:
        with c.open("cross/from-nfs.bin", "wb") as f:
            f.write(nfs_big)
    with smbp_session(env.smb_port, ALICE) as kw:
        with smbclient.open_file(smbp_path("cross/from-smb.bin"), "wb", **kw) as f:
            f.write(smb_big)
        for name, want in (("from-nfs.bin", nfs_big), ("from-fuse.bin", fuse_big)):
            with smbclient.open_file(smbp_path(f"cross/{name}"), "rb", **kw) as f:
                same(f.read(), want, f"SMB3 read of {name}")
    for v in versions:
        with nfs_connect(env.nfs_port, v, mount_port=env.mount_port) as c:
            for name, want in (("from-smb.bin", smb_big), ("from-fuse.bin", fuse_big)):
                same(nfs_read(c, f"cross/{name}", nfs(v)), want, f"NFSv{v} read of {name}")
            assert c.stat("cross/from-smb.bin").uid == ALICE.uid
    conn, ok = pysmb_connect(env.smb_port, ALICE)
    assert ok
    try:
        same(pysmb_read(conn, "cross/from-nfs.bin"), nfs_big, "pysmb read of from-nfs.bin")

        # changes over NFS, seen over SMB
        # as ALICE's uid: NFS AUTH_SYS and SMB users are the same POSIX identities
        with nfs_connect(env.nfs_port, versions[-1], mount_port=env.mount_port,
                         uid=ALICE.uid, gid=ALICE.uid) as c:
            with c.open("cross/from-smb.bin", "r+b") as f:
                f.seek(10 << 20)
                f.write(b"changed over NFS")
            c.truncate("cross/from-fuse.bin", 5000)
            c.rename("cross/from-nfs.bin", "cross/renamed-over-nfs.bin")
            c.mkdir("cross/nfs-dir")
            with c.open("cross/nfs-dir/a", "wb") as f:
                f.write(b"a")
        smb_big = smb_big[:10 << 20] + b"changed over NFS" + smb_big[(10 << 20) + 16:]
        same(pysmb_read(conn, "cross/from-smb.bin"), smb_big, "SMB read after NFS write")
        same(pysmb_read(conn, "cross/from-fuse.bin"), fuse_big[:5000], "SMB after NFS truncate")
        listed = {f.filename for f in conn.listPath("vol", "cross")} - {".", ".."}
        assert listed == {"from-smb.bin", "from-fuse.bin", "renamed-over-nfs.bin", "nfs-dir"}
        assert pysmb_read(conn, "cross/nfs-dir/a") == b"a"

        # changes over SMB, seen over NFS
        conn.storeFile("vol", "cross/from-fuse.bin", io.BytesIO(b"replaced over SMB"))
        conn.rename("vol", "cross/nfs-dir", "cross/smb-renamed-dir")
        conn.deleteFiles("vol", "cross/renamed-over-nfs.bin")
    finally:
        conn.close()
    for v in ["4.1", *versions]:
        with nfs_connect(env.nfs_port, v, mount_port=env.mount_port) as c:
            assert nfs_read(c, "cross/from-fuse.bin", nfs(v)) == b"replaced over SMB", v
            assert sorted(c.listdir("cross")) == ["from-fuse.bin", "from-smb.bin",
                                                  "smb-renamed-dir"], v
            assert nfs_read(c, "cross/smb-renamed-dir/a", nfs(v)) == b"a"
            assert not c.exists("cross/renamed-over-nfs.bin")
    # changes through FUSE, seen on both
    (env.mnt / "cross" / "smb-renamed-dir" / "a").write_bytes(b"rewritten by FUSE")
    os.rename(env.mnt / "cross" / "from-smb.bin", env.mnt / "cross" / "fuse-renamed.bin")
    with nfs_connect(env.nfs_port, "4.1") as c:
        assert nfs_read(c, "cross/smb-renamed-dir/a", nfs("4.1")) == b"rewritten by FUSE"
        same(nfs_read(c, "cross/fuse-renamed.bin", nfs("4.1")), smb_big,
             "NFS read of the FUSE-renamed file")
    with smbp_session(env.smb_port, BOB) as kw:
        with smbclient.open_file(smbp_path("cross/smb-renamed-dir/a"), "rb", **kw) as f:
            assert f.read() == b"rewritten by FUSE"
        assert sorted(smbclient.listdir(smbp_path("cross"), **kw)) == [
            "from-fuse.bin", "fuse-renamed.bin", "smb-renamed-dir"]
