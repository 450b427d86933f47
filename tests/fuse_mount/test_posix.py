"""POSIX behaviour on a real mount, as ext4 would give it: permissions for non-root users,
sticky and setgid directories, xattr limits, timestamps, sparse and large files, mmap."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from .conftest import Archive, needs_fuse

pytestmark = [pytest.mark.integration, needs_fuse]

ALICE, BOB = 1000, 1001
USER_PYTHON = "/usr/bin/python3"  # readable by every user, unlike a venv under /root


@pytest.fixture
def archive():
    """A mounted archive under a directory other users can traverse (pytest's tmp is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="sofs-posix-", dir="/tmp"))
    os.chmod(root, 0o755)
    a = Archive(root)
    os.chmod(a.mnt, 0o755)
    a.mount()
    try:
        yield a
    finally:
        a.cleanup()
        shutil.rmtree(root, ignore_errors=True)


needs_user_python = pytest.mark.skipif(not os.access(USER_PYTHON, os.X_OK),
                                       reason=f"{USER_PYTHON} is needed to act as other users")


def as_user(uid: int, *cmd: str) -> subprocess.CompletedProcess:
    """Run a command as another user (no supplementary groups)."""
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                           *cmd], capture_output=True, text=True)


def py_as(uid: int, code: str) -> subprocess.CompletedProcess:
    return as_user(uid, USER_PYTHON, "-c", code)


def errno_of(res: subprocess.CompletedProcess) -> str:
    return res.stdout.strip()


TRY = """
import os, sys
try:
    {op}
    print("ok")
except OSError as e:
    print(__import__("errno").errorcode[e.errno])
"""


def attempt(uid: int, op: str) -> str:
    res = py_as(uid, TRY.format(op=op))
    assert res.returncode == 0, res.stderr
    return errno_of(res)


@needs_user_python
def test_mode_bits_owner_and_sticky_rules_for_other_users(archive):
    m = archive.mnt
    os.mkdir(m / "private", 0o700)
    os.mkdir(m / "shared")
    os.chmod(m / "shared", 0o1777)
    assert attempt(ALICE, f"open('{m}/private/x', 'w')") == "EACCES"
    assert attempt(ALICE, f"os.listdir('{m}/private')") == "EACCES"
    assert attempt(ALICE, f"open('{m}/shared/alice', 'w').write('a')") == "ok"
    st = os.stat(m / "shared" / "alice")
    assert (st.st_uid, st.st_gid) == (ALICE, ALICE)
    assert attempt(BOB, f"os.unlink('{m}/shared/alice')") in ("EPERM", "EACCES")
    assert attempt(BOB, f"os.rename('{m}/shared/alice', '{m}/shared/bob')") in ("EPERM", "EACCES")
    assert attempt(BOB, f"open('{m}/shared/alice', 'a')") == "EACCES"  # 0644 from umask
    assert attempt(BOB, f"os.chmod('{m}/shared/alice', 0o777)") == "EPERM"
    assert attempt(ALICE, f"os.chown('{m}/shared/alice', {BOB}, -1)") == "EPERM"
    assert attempt(ALICE, f"os.chmod('{m}/shared/alice', 0o600)") == "ok"
    assert attempt(BOB, f"open('{m}/shared/alice').read()") == "EACCES"
    assert attempt(ALICE, f"os.unlink('{m}/shared/alice')") == "ok"


@needs_user_python
def test_setgid_directory_and_suid_cleared_on_write_by_others(archive):
    m = archive.mnt
    os.mkdir(m / "group")
    os.chown(m / "group", 0, 4242)
    os.chmod(m / "group", 0o2777)
    assert attempt(ALICE, f"os.mkdir('{m}/group/sub')") == "ok"
    sub = os.stat(m / "group" / "sub")
    assert sub.st_gid == 4242 and sub.st_mode & stat.S_ISGID
    assert attempt(ALICE, f"open('{m}/group/f', 'w')") == "ok"
    assert os.stat(m / "group" / "f").st_gid == 4242
    (m / "suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(m / "suid", 0o4777)
    assert attempt(ALICE, f"open('{m}/suid', 'a').write('x')") == "ok"
    assert not os.stat(m / "suid").st_mode & stat.S_ISUID


WRITE = "fd = os.open(P, os.O_WRONLY); os.write(fd, b'x'); os.close(fd)"
SETGID_CASES = (  # (who, what, mode): each on a fresh file owned by alice, group root
    (ALICE, WRITE, 0o2745),
    (ALICE, "os.truncate(P, 0)", 0o2745),
    (ALICE, "os.chown(P, -1, -1)", 0o2745),
    (BOB, "os.chown(P, -1, -1)", 0o2745),
    (ALICE, f"os.chown(P, -1, {ALICE})", 0o2745),
    (0, WRITE, 0o2745),
    (0, WRITE, 0o6777),
    (0, "os.truncate(P, 1)", 0o6777),
    (0, "os.chown(P, -1, -1)", 0o2775),
    (ALICE, WRITE, 0o6777),
)


def setgid_outcomes(directory: Path) -> list[tuple[str, int]]:
    """What each of SETGID_CASES returns and leaves of the mode, in ``directory``."""
    found = []
    for n, (who, op, mode) in enumerate(SETGID_CASES):
        p = directory / f"sgid{n}"
        p.write_bytes(b"data")
        os.chown(p, ALICE, 0)
        os.chmod(p, mode)
        result = attempt(who, f"P = '{p}'; " + op) if who else _run_as_root(p, op)
        found.append((result, stat.S_IMODE(os.stat(p).st_mode)))
    return found


def _run_as_root(p: Path, op: str) -> str:
    exec(op, {"os": os, "P": str(p)})
    return "ok"


@needs_user_python
def test_setgid_without_group_execute_follows_the_local_filesystem(archive):
    """Linux 6.x drops set-group-ID on a write, truncate or chown by a caller outside the
    file's group even without group-execute, and refuses chown(f, -1, -1) to a non-owner then;
    the FUSE client leaves that to the filesystem. Compared with ext4, case by case."""
    ref = Path(tempfile.mkdtemp(prefix="sofs-ref-", dir="/tmp"))
    try:
        os.chmod(ref, 0o755)
        expected = setgid_outcomes(ref)
    finally:
        shutil.rmtree(ref, ignore_errors=True)
    assert expected[0] == ("ok", 0o745) and expected[3] == ("EPERM", 0o2745)  # the rule holds
    assert setgid_outcomes(archive.mnt) == expected
    archive.remount()
    assert [stat.S_IMODE(os.stat(archive.mnt / f"sgid{n}").st_mode)
            for n in range(len(SETGID_CASES))] == [mode for _, mode in expected]


def test_names_links_and_xattr_limits(archive):
    m = archive.mnt
    odd = "ünïcødé \t\n\x01!*?"
    (m / odd).write_bytes(b"x")
    assert odd in os.listdir(m)
    with pytest.raises(OSError) as e:
        (m / ("n" * 256)).write_bytes(b"")
    assert e.value.errno == errno.ENAMETOOLONG
    (m / ("n" * 255)).write_bytes(b"")
    os.symlink("loop2", m / "loop1")
    os.symlink("loop1", m / "loop2")
    with pytest.raises(OSError) as e:
        open(m / "loop1")
    assert e.value.errno == errno.ELOOP
    os.symlink("/nonexistent/target", m / "dangling")
    assert os.readlink(m / "dangling") == "/nonexistent/target"
    with pytest.raises(OSError) as e:
        os.setxattr(m / odd, "user." + "a" * 251, b"v")
    assert e.value.errno == errno.ERANGE
    with pytest.raises(OSError) as e:
        os.setxattr(m / odd, "user.big", b"v" * 65537)
    assert e.value.errno in (errno.E2BIG, errno.ENOSPC)
    os.setxattr(m / odd, "user.max", b"v" * 65536)
    assert len(os.getxattr(m / odd, "user.max")) == 65536
    os.setxattr(m / odd, "trusted.sofs", b"t")
    assert os.getxattr(m / odd, "trusted.sofs") == b"t"
    with pytest.raises(OSError) as e:
        os.getxattr(m / odd, "user.none")
    assert e.value.errno == errno.ENODATA


def test_rename_rules(archive):
    m = archive.mnt
    (m / "a" / "b").mkdir(parents=True)
    (m / "full").mkdir()
    (m / "full" / "x").write_bytes(b"")
    (m / "empty").mkdir()
    for src, dst, err in (("a", "a/b/c", errno.EINVAL), ("empty", "full", errno.ENOTEMPTY)):
        with pytest.raises(OSError) as e:
            os.rename(m / src, m / dst)
        assert e.value.errno == err
    os.rename(m / "a", m / "empty")  # over an empty directory
    assert os.stat(m).st_nlink == 4  # root: ., .., full, empty
    (m / "f1").write_bytes(b"1")
    (m / "f2").write_bytes(b"2")
    fd = os.open(m / "f2", os.O_RDONLY)
    os.rename(m / "f1", m / "f2")  # atomic replace; the old f2 stays readable while open
    assert os.read(fd, 10) == b"2"
    os.close(fd)
    assert (m / "f2").read_bytes() == b"1"


def test_timestamps_follow_ext4_rules(archive):
    m = archive.mnt
    f = m / "t"
    f.write_bytes(b"x")
    os.utime(f, ns=(1_000_000_123, 2_000_000_456))
    st = os.stat(f)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_123, 2_000_000_456)
    before = os.stat(f).st_ctime_ns
    time.sleep(0.01)
    os.chmod(f, 0o600)
    st = os.stat(f)
    assert st.st_ctime_ns > before and st.st_mtime_ns == 2_000_000_456
    d = os.stat(m).st_mtime_ns
    time.sleep(0.01)
    (m / "new").write_bytes(b"")
    assert os.stat(m).st_mtime_ns > d
    time.sleep(0.01)
    with open(f, "ab") as fh:
        fh.write(b"more")
    assert os.stat(f).st_mtime_ns > 2_000_000_456


def test_sparse_and_beyond_4_gib(archive):
    f = archive.mnt / "sparse"
    with open(f, "wb") as fh:
        fh.seek(5 * 2**30 + 7)
        fh.write(b"tail")
    assert os.stat(f).st_size == 5 * 2**30 + 11
    with open(f, "rb") as fh:
        fh.seek(5 * 2**30)
        assert fh.read() == bytes(7) + b"tail"
        fh.seek(2**32 - 3)
        assert fh.read(6) == bytes(6)
    os.truncate(f, 10)
    assert f.read_bytes() == bytes(10)


def test_shared_writable_mmap(archive):
    f = archive.mnt / "mapped"
    f.write_bytes(bytes(3 * 4096 * 1024 + 100))
    with open(f, "r+b") as fh:
        mm = mmap.mmap(fh.fileno(), 0)
        mm[4096 * 1024 - 2:4096 * 1024 + 2] = b"MMAP"
        mm[-4:] = b"TAIL"
        mm.flush()
        mm.close()
    archive.remount()
    data = f.read_bytes()
    assert data[4096 * 1024 - 2:4096 * 1024 + 2] == b"MMAP" and data[-4:] == b"TAIL"


def test_inode_numbers_stable_across_remounts_and_fallocate_extends(archive):
    m = archive.mnt
    (m / "d").mkdir()
    (m / "d" / "f").write_bytes(b"data")
    before = {p: os.stat(m / p).st_ino for p in ("d", "d/f")}
    fd = os.open(m / "d" / "f", os.O_RDWR)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.fallocate(fd, 0, ctypes.c_long(0), ctypes.c_long(1 << 20))
        assert rc == 0, os.strerror(ctypes.get_errno())
        assert os.fstat(fd).st_size == 1 << 20
        # FALLOC_FL_ZERO_RANGE is not supported (tests/fuse_mount/test_fallocate.py: the rest)
        rc = libc.fallocate(fd, 0x10, ctypes.c_long(0), ctypes.c_long(10))
        assert rc == -1 and ctypes.get_errno() == errno.EOPNOTSUPP
        with pytest.raises(FileExistsError):
            os.open(m / "d" / "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    finally:
        os.close(fd)
    archive.remount()
    assert {p: os.stat(m / p).st_ino for p in ("d", "d/f")} == before
    assert (m / "d" / "f").read_bytes() == b"data" + bytes((1 << 20) - 4)
    (m / "d" / "g").write_bytes(b"")
    assert os.stat(m / "d" / "g").st_ino not in before.values()


UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path: Path, atime: tuple[int, int], mtime: tuple[int, int]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    times = (_Timespec * 2)(_Timespec(*atime), _Timespec(*mtime))
    if libc.utimensat(-100, os.fsencode(path), times, 0) != 0:  # AT_FDCWD
        raise OSError(ctypes.get_errno(), "utimensat")


def test_utimensat_omit_and_now(archive):
    f = archive.mnt / "u"
    f.write_bytes(b"x")
    os.utime(f, ns=(1_000_000_001, 2_000_000_002))
    utimensat(f, (0, UTIME_OMIT), (5, 123_456_789))  # atime kept, mtime set to the ns
    st = os.stat(f)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_001, 5_123_456_789)
    before = time.time_ns()
    utimensat(f, (0, UTIME_NOW), (0, UTIME_OMIT))  # atime now, mtime kept
    st = os.stat(f)
    assert st.st_atime_ns >= before - 10_000_000 and st.st_mtime_ns == 5_123_456_789
    ctime = st.st_ctime_ns
    time.sleep(0.01)
    utimensat(f, (0, UTIME_OMIT), (0, UTIME_OMIT))  # nothing to change: ctime stays too
    assert os.stat(f).st_ctime_ns == ctime


needs_setfacl = pytest.mark.skipif(shutil.which("setfacl") is None,
                                   reason="setfacl/getfacl (Debian package acl) not installed")


def getfacl(path: Path) -> list[str]:
    res = subprocess.run(["getfacl", "-cpn", str(path)], capture_output=True, text=True,
                         check=True)
    return [line.split("#")[0].strip() for line in res.stdout.splitlines() if line.strip()]


@needs_user_python
@needs_setfacl
def test_posix_acls_are_enforced_and_kept_in_sync_with_the_mode(archive):
    m = archive.mnt
    d = m / "study"
    os.mkdir(d, 0o700)
    (d / "img.dcm").write_bytes(b"DICM")
    os.chmod(d / "img.dcm", 0o600)
    op_read = f"open({str(d / 'img.dcm')!r}, 'rb').read()"
    assert attempt(ALICE, op_read) == "EACCES"
    subprocess.run(["setfacl", "-m", f"u:{ALICE}:rx", str(d)], check=True)
    subprocess.run(["setfacl", "-m", f"u:{ALICE}:r", str(d / "img.dcm")], check=True)
    assert attempt(ALICE, op_read) == "ok"
    assert attempt(BOB, op_read) == "EACCES"  # the ACL names Alice only
    assert attempt(ALICE, f"open({str(d / 'new')!r}, 'wb')") == "EACCES"  # rx, not w
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o750  # group bits show the mask
    # chmod narrows the mask: Alice's entry stays but is no longer effective
    os.chmod(d / "img.dcm", 0o600)
    assert "mask::---" in getfacl(d / "img.dcm")
    assert attempt(ALICE, op_read) == "EACCES"
    # an ACL equivalent to the mode bits is dropped, as on ext4
    subprocess.run(["setfacl", "-b", str(d / "img.dcm")], check=True)
    assert getfacl(d / "img.dcm") == ["user::rw-", "group::---", "other::---"]
    assert b"system.posix_acl_access" not in [n.encode() for n in os.listxattr(d / "img.dcm")]
    archive.remount()  # ACLs are stored metadata: they survive a remount
    assert f"user:{ALICE}:r-x" in getfacl(d)
    assert attempt(BOB, f"os.listdir({str(d)!r})") == "EACCES"


@needs_user_python
@needs_setfacl
def test_default_acls_are_inherited(archive):
    m = archive.mnt
    d = m / "ward"
    os.mkdir(d, 0o755)
    subprocess.run(["setfacl", "-d", "-m", f"u:{ALICE}:rwx,g::rwx,o::-", str(d)], check=True)
    old = os.umask(0)  # as smbd and ganesha.nfsd create files
    try:
        with open(d / "report", "wb"):
            pass
        os.mkdir(d / "series", 0o777)
    finally:
        os.umask(old)
    assert getfacl(d / "report") == ["user::rw-", f"user:{ALICE}:rwx", "group::rwx",
                                      "mask::rw-", "other::---"]
    assert stat.S_IMODE(os.stat(d / "report").st_mode) == 0o660
    series = getfacl(d / "series")
    assert f"default:user:{ALICE}:rwx" in series and f"user:{ALICE}:rwx" in series
    assert attempt(ALICE, f"open({str(d / 'series' / 'x')!r}, 'wb')") == "ok"
    assert attempt(BOB, f"os.listdir({str(d / 'series')!r})") == "EACCES"
    # With a umask, the kernel masks the create mode before sofs sees it (pyfuse3 cannot
    # ask for FUSE_DONT_MASK), so the result is narrower than ext4's, never wider.
    old = os.umask(0o022)
    try:
        with open(d / "narrow", "wb"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(d / "narrow").st_mode) & 0o022 == 0


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * 128)]


def name_to_handle(path: Path) -> _FileHandle:
    libc = ctypes.CDLL(None, use_errno=True)
    fh = _FileHandle(handle_bytes=128)
    mount_id = ctypes.c_int()
    if libc.name_to_handle_at(-100, os.fsencode(path), ctypes.byref(fh),
                              ctypes.byref(mount_id), 0) != 0:
        raise OSError(ctypes.get_errno(), f"name_to_handle_at {path}")
    return fh


def open_by_handle(mount: Path, fh: _FileHandle) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    mfd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = libc.open_by_handle_at(mfd, ctypes.byref(fh), os.O_RDONLY)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return fd
    finally:
        os.close(mfd)


def test_file_handles_survive_a_remount_and_go_stale_when_deleted(archive):
    """What NFS-Ganesha relies on: a handle (inode number + generation) taken before a
    remount opens the same file after it, with the kernel's inode cache empty."""
    m = archive.mnt
    os.makedirs(m / "a" / "b")
    (m / "a" / "b" / "img.dcm").write_bytes(b"DICM" * 1000)
    (m / "gone").write_bytes(b"x")
    handles = {name: name_to_handle(m / name) for name in ("a/b/img.dcm", "a/b", "gone")}
    (m / "gone").unlink()
    archive.remount()
    fd = open_by_handle(m, handles["a/b/img.dcm"])
    try:
        assert os.read(fd, 8) == b"DICMDICM"
    finally:
        os.close(fd)
    fd = open_by_handle(m, handles["a/b"])
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == str(m / "a" / "b")  # '..' lookups work
    finally:
        os.close(fd)
    with pytest.raises(OSError) as err:
        os.close(open_by_handle(m, handles["gone"]))
    assert err.value.errno == errno.ESTALE
