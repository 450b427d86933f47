"""The WORM conformance matrix of issue 12, with real processes: every refused operation x
every way in x every state of a file.

One sofs FUSE mount (a local ring under /tmp) for the whole module, its mount process started
with ``SOFS_WALL_STEP_FILE`` (chunkstore/clock.py: the test steps the mount's wall clock),
exported with ``sofsctl export nfs`` and ``sofsctl export smb`` (its one user, OWNER:
exportenv's WORM_OWNER, an identity no other module uses). One compliance domain ``/worm``
(``--min-retention 0s``, default 20y, autocommit 5m), with a directory per state and, in it,
one file per (way in, operation) cell, owned by OWNER:

ways in (:data:`WAYS`)
    ``fuse-root`` (this process, uid 0, through the mount), ``fuse-owner`` (a forked child
    as OWNER, the file's owner, with the supplementary group :data:`EXTRA_GID`), ``nfs4.1``
    (nfs-rs as OWNER's uid, gid :data:`EXTRA_GID`: the export squashes root) and ``smb3``
    (smbprotocol, logged on as OWNER).
states (:data:`STATES`), all built once by the module fixture
    ``uncommitted`` (an ordinary file of the domain), ``chmod`` (committed by ``chmod
    a-w``), ``autocommit`` (untouched for the autocommit period: the wall clock stepped 900 s
    forward, then a stat), ``remount`` (committed by chmod, then the exports stopped, the
    volume unmounted, mounted and exported again), ``expired`` (committed with a retention a
    few seconds ahead, set through atime, and waited for), ``held`` (the same, under a legal
    hold placed before it expired) and ``smb-readonly`` (an SMB client set the DOS
    READONLY attribute: the SMB way to commit, see sofs/worm/dosattrib.py).
operations (:data:`OPS`)
    write, open with O_TRUNC, truncate, fallocate, chmod adding a write bit (SMB: clearing
    READONLY), chgrp, an mtime change, shortening and extending the retention (atime),
    setxattr, removexattr, rename from it, rename onto it, unlink, a hard link out of the
    domain. A cell a protocol cannot express is not generated (NFSv4.1 has no ALLOCATE nor
    xattrs; an SMB client changes a group only through a security descriptor).

Each cell asserts its exact outcome (:func:`expected`): ``ok``, or the errno name on FUSE,
the NFS4 status, the SMB NT status; a refused cell also checks the file is unchanged.
:func:`test_outcome_table` prints every cell observed. Apart from the matrix: a descriptor
opened before the commit cannot write, extend or allocate after it, and stepping the wall
clock ten years forward expires nothing early (the compliance clock catches up by at most 7
days a year), though it autocommits files (which keeps them longer, never shorter).

The ``smb-readonly`` state is committed by an SMB client setting the DOS READONLY attribute
(Samba writes ``user.DOSATTRIB``, which the rules read: sofs/worm/dosattrib.py).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nfs_rs
import pytest
import smbclient
from smbprotocol.exceptions import SMBOSError, SMBResponseException
from smbprotocol.header import NtStatus

from chunkstore.clock import WALL_STEP_ENV
from tests.fuse_mount.conftest import needs_fuse

from .clients import nfs_connect, smbp_path, smbp_session, smbp_set_attributes
from .exportenv import WORM_OWNER as OWNER
from .exportenv import ExportEnv, mounted_env, sofsctl, wait_for

pytestmark = [pytest.mark.integration, needs_fuse]

WAYS = ("fuse-root", "fuse-owner", "nfs4.1", "smb3")
STATES = ("uncommitted", "chmod", "autocommit", "remount", "expired", "held", "smb-readonly")
OPS = ("write", "open-trunc", "truncate", "fallocate", "chmod-w", "chgrp", "mtime", "shorten",
       "extend", "setxattr", "removexattr", "rename-from", "rename-onto", "unlink", "link-out")
NOT_EXPRESSIBLE = {("nfs4.1", "fallocate"), ("nfs4.1", "setxattr"), ("nfs4.1", "removexattr"),
                   ("smb3", "fallocate"), ("smb3", "chgrp")}
OK = "ok"
DOMAIN = "worm"
EXTRA_GID = 61939  # OWNER's supplementary group for chgrp (no /etc/group entry is needed)
EXPIRE_IN_S = 25   # the expired and held files' retention, ahead of their commit
READONLY, ARCHIVE = 0x1, 0x20
S = 1_000_000_000
DAY = 86400 * S


# --- the expected outcome of every cell --------------------------------------------------------

# How each way in says "refused", per operation (the default first). The kernel
# (default_permissions) and Ganesha check the mode bits before sofs is asked: a committed file
# has none for writing, so its owner's writes are refused as EACCES / NFS4ERR_ACCESS before the
# WORM rules' EPERM, which root and the other operations get.
REFUSED: dict[str, dict[str, str]] = {
    "fuse-root": {"*": "EPERM"},
    "fuse-owner": {"*": "EPERM", **dict.fromkeys(
        ("write", "open-trunc", "truncate", "fallocate", "setxattr", "removexattr"), "EACCES")},
    "nfs4.1": {"*": "NFS4ERR_PERM", "write": "NFS4ERR_ACCESS", "open-trunc": "NFS4ERR_ACCESS"},
    "smb3": {"*": "STATUS_ACCESS_DENIED"},
}
# Samba refuses by itself, on any file without write bits (a plain 0444 file outside WORM
# too), setting its times and deleting it: its NT ACL, derived again from the mode after the
# chmod, no longer grants FILE_WRITE_ATTRIBUTES nor DELETE. Over SMB a committed file's
# retention cannot be extended, nor an expired file deleted; sofs is never asked.
# (autocommit/smb3 extend and chmod-w fail today: an autocommit leaves write in the ACL of an
# SMB-made file, so Samba lets them through; test_a_committed_file_has_no_write_permission...)
SAMBA_REFUSES = {("extend", s) for s in ("chmod", "autocommit", "remount", "expired", "held",
                                         "smb-readonly")} | {("unlink", "expired")}


def refusal(way: str, op: str) -> str:
    table = REFUSED[way]
    return table.get(op, table["*"])


def expected(way: str, state: str, op: str) -> str:
    """What the cell (WAY, STATE, OP) must give."""
    if op == "link-out":
        return refusal(way, op)  # a link across a domain's boundary, committed or not
    if state == "uncommitted":
        return OK
    if way == "smb3" and (op, state) in SAMBA_REFUSES:
        return refusal(way, op)
    if op == "extend":
        return OK  # a retention may always be extended (a hold does not stop that)
    if op == "unlink" and state == "expired":
        return OK  # expired: deleted, never changed
    return refusal(way, op)


# --- the cells' operations, one implementation per way in --------------------------------------

@dataclass
class Cell:
    """One file of the matrix and what its operations need to know about it."""

    path: str        # relative to the volume's root (the NFS export, the SMB share)
    mnt: Path
    atime_ns: int    # before the operation (a committed file's retention)
    mtime_ns: int
    longer: int = 0  # the retention asked by extend: a day past its atime or now

    def __post_init__(self) -> None:
        self.longer = (max(self.atime_ns, time.time_ns()) // S + 86400) * S

    @property
    def local(self) -> str:
        return str(self.mnt / self.path)

    @property
    def src(self) -> str:
        return self.path + "-src"  # the file renamed onto it by rename-onto

    @property
    def moved(self) -> str:
        return self.path + "-moved"

    @property
    def link(self) -> str:
        return "outside/" + self.path.replace("/", "-")

    @property
    def shorter(self) -> int:
        return self.atime_ns - DAY

    @property
    def older_mtime(self) -> int:
        return self.mtime_ns - 3600 * S


def _fd_op(path: str, flags: int, fn: Callable[[int], object]) -> None:
    fd = os.open(path, flags)
    try:
        fn(fd)
    finally:
        os.close(fd)


FUSE_OPS: dict[str, Callable[[Cell], object]] = {
    "write": lambda c: _fd_op(c.local, os.O_WRONLY, lambda fd: os.pwrite(fd, b"X", 0)),
    "open-trunc": lambda c: _fd_op(c.local, os.O_WRONLY | os.O_TRUNC, lambda fd: None),
    "truncate": lambda c: os.truncate(c.local, 1),
    "fallocate": lambda c: _fd_op(c.local, os.O_WRONLY,
                                  lambda fd: os.posix_fallocate(fd, 0, 1 << 20)),
    "chmod-w": lambda c: os.chmod(c.local, 0o644),
    "chgrp": lambda c: os.chown(c.local, -1, EXTRA_GID),
    "mtime": lambda c: os.utime(c.local, ns=(c.atime_ns, c.older_mtime)),
    "shorten": lambda c: os.utime(c.local, ns=(c.shorter, c.mtime_ns)),
    "extend": lambda c: os.utime(c.local, ns=(c.longer, c.mtime_ns)),
    "setxattr": lambda c: os.setxattr(c.local, "user.note", b"changed"),
    "removexattr": lambda c: os.removexattr(c.local, "user.keep"),
    "rename-from": lambda c: os.rename(c.local, str(c.mnt / c.moved)),
    "rename-onto": lambda c: os.rename(str(c.mnt / c.src), c.local),
    "unlink": lambda c: os.unlink(c.local),
    "link-out": lambda c: os.link(c.local, str(c.mnt / c.link)),
}


def _nfs_write(c, cell: Cell) -> None:
    with c.open(cell.path, "r+b") as f:
        f.write(b"X")


def _nfs_trunc_open(c, cell: Cell) -> None:
    with c.open(cell.path, "wb") as f:
        f.write(b"")


NFS_OPS: dict[str, Callable[[object, Cell], object]] = {
    "write": _nfs_write,
    "open-trunc": _nfs_trunc_open,
    "truncate": lambda c, cell: c.truncate(cell.path, 1),
    "chmod-w": lambda c, cell: c.chmod(cell.path, 0o644),
    "chgrp": lambda c, cell: c.chown(cell.path, OWNER.uid, EXTRA_GID),
    "mtime": lambda c, cell: c.utime(cell.path, ns=(cell.atime_ns, cell.older_mtime)),
    "shorten": lambda c, cell: c.utime(cell.path, ns=(cell.shorter, cell.mtime_ns)),
    "extend": lambda c, cell: c.utime(cell.path, ns=(cell.longer, cell.mtime_ns)),
    "rename-from": lambda c, cell: c.rename(cell.path, cell.moved),
    "rename-onto": lambda c, cell: c.rename(cell.src, cell.path),
    "unlink": lambda c, cell: c.remove(cell.path),
    "link-out": lambda c, cell: c.link(cell.path, cell.link),
}


def _filetime(ns: int) -> int:
    """Unix nanoseconds as a Windows FILETIME (100 ns since 1601)."""
    return ns // 100 + 116444736000000000


def _smb_write(kw: dict, cell: Cell) -> None:
    with smbclient.open_file(smbp_path(cell.path), "r+b", **kw) as f:
        f.write(b"X")


def _smb_trunc_open(kw: dict, cell: Cell) -> None:
    with smbclient.open_file(smbp_path(cell.path), "wb", **kw):
        pass


def _smb_times(kw: dict, cell: Cell, atime_ns: int = 0, mtime_ns: int = 0) -> None:
    from smbclient._os import _set_basic_information
    _set_basic_information(smbp_path(cell.path), last_access_time=_filetime(atime_ns)
                           if atime_ns else 0, last_write_time=_filetime(mtime_ns)
                           if mtime_ns else 0, **kw)


SMB_OPS: dict[str, Callable[[dict, Cell], object]] = {
    "write": _smb_write,
    "open-trunc": _smb_trunc_open,
    "truncate": lambda kw, cell: smbclient.truncate(smbp_path(cell.path), 1, **kw),
    "chmod-w": lambda kw, cell: smbp_set_attributes(cell.path, ARCHIVE, **kw),
    "mtime": lambda kw, cell: _smb_times(kw, cell, mtime_ns=cell.older_mtime),
    "shorten": lambda kw, cell: _smb_times(kw, cell, atime_ns=cell.shorter),
    "extend": lambda kw, cell: _smb_times(kw, cell, atime_ns=cell.longer),
    "setxattr": lambda kw, cell: smbclient.setxattr(smbp_path(cell.path), b"note",
                                                    b"changed", **kw),
    "removexattr": lambda kw, cell: smbclient.removexattr(smbp_path(cell.path), b"keep",
                                                          **kw),
    "rename-from": lambda kw, cell: smbclient.rename(smbp_path(cell.path),
                                                     smbp_path(cell.moved), **kw),
    "rename-onto": lambda kw, cell: smbclient.replace(smbp_path(cell.src),
                                                      smbp_path(cell.path), **kw),
    "unlink": lambda kw, cell: smbclient.remove(smbp_path(cell.path), **kw),
    "link-out": lambda kw, cell: smbclient.link(smbp_path(cell.path), smbp_path(cell.link),
                                                **kw),
}


def ntstatus_name(status: int) -> str:
    for name, value in vars(NtStatus).items():
        if name.startswith("STATUS_") and value == status:
            return name
    return f"NTSTATUS_{status:#010x}"


def as_owner(fn: Callable[[], object]) -> str:
    """Run FN in a forked child as OWNER (groups: its own and EXTRA_GID): ``ok`` or the errno
    name of the OSError it raised."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setgroups([OWNER.uid, EXTRA_GID])
            os.setgid(OWNER.uid)
            os.setuid(OWNER.uid)
            fn()
        except OSError as e:
            code = e.errno or 254
        except BaseException:
            code = 255
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return OK
    return errno.errorcode.get(code, f"exit {code}")


# --- the module's environment: every state built once ------------------------------------------

@dataclass
class Matrix:
    env: ExportEnv
    step_file: Path
    smb: dict = field(default_factory=dict)
    smb_cm: contextlib.AbstractContextManager | None = None
    log_at: int = 0
    refused_by_sofs: set[tuple[str, str, str]] = field(default_factory=set)
    nfs: object | None = None
    data: dict[str, bytes] = field(default_factory=dict)  # path -> content
    smb_ro_committed: bool = False
    observed: dict[tuple[str, str, str], str] = field(default_factory=dict)
    blobs: dict[str, str] = field(default_factory=dict)

    @property
    def mnt(self) -> Path:
        return self.env.mnt

    def step(self, seconds: float) -> None:
        self.step_file.write_text(f"{seconds}\n")

    def show(self, path: str) -> dict:
        return json.loads(sofsctl(self.env.data, "worm", "show", str(self.mnt / path),
                                  "--json").stdout)

    def open_smb(self) -> None:
        self.smb_cm = smbp_session(self.env.smb_port, OWNER)
        self.smb = self.smb_cm.__enter__()

    def close_smb(self) -> None:
        cm, self.smb_cm = self.smb_cm, None
        if cm is not None:
            cm.__exit__(None, None, None)

    def new_log(self) -> str:
        """What the mount process logged since the last call."""
        path = self.env.data / "log" / f"mount-{self.env.archive.volume}.log"
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < self.log_at:
                self.log_at = 0
            f.seek(self.log_at)
            text = f.read()
        self.log_at += len(text)
        return text.decode(errors="replace")

    def nfs_client(self):
        if self.nfs is None:
            self.nfs = nfs_connect(self.env.nfs_port, "4.1", uid=OWNER.uid, gid=EXTRA_GID)
        return self.nfs

    def drop_nfs(self) -> None:
        if self.nfs is not None:
            with contextlib.suppress(Exception):
                self.nfs.close()
            self.nfs = None

    def cell(self, state: str, way: str, op: str) -> Cell:
        path = cell_path(state, way, op)
        st = os.stat(self.mnt / path)
        return Cell(path, self.mnt, st.st_atime_ns, st.st_mtime_ns)

    def run(self, way: str, op: str, cell: Cell) -> str:
        if way == "fuse-root":
            try:
                FUSE_OPS[op](cell)
            except OSError as e:
                return errno.errorcode.get(e.errno or 0, str(e))
            return OK
        if way == "fuse-owner":
            return as_owner(lambda: FUSE_OPS[op](cell))
        if way == "nfs4.1":
            try:
                NFS_OPS[op](self.nfs_client(), cell)
            except nfs_rs.NfsError as e:
                if isinstance(e, (nfs_rs.NfsConnectionError, nfs_rs.NfsTimeoutError)):
                    self.drop_nfs()
                return e.code_name or type(e).__name__
            return OK
        try:
            SMB_OPS[op](self.smb, cell)
        except SMBOSError as e:
            return ntstatus_name(e.ntstatus)
        except SMBResponseException as e:
            return ntstatus_name(e.status)
        return OK


def cell_path(state: str, way: str, op: str) -> str:
    return f"{DOMAIN}/{state}/{way}-{op}"


def cells() -> list[tuple[str, str, str]]:
    return [(state, way, op) for state in STATES for way in WAYS for op in OPS
            if (way, op) not in NOT_EXPRESSIBLE]


def _make_files(m: Matrix, state: str) -> list[str]:
    """The files of STATE's cells (and the source files of its rename-onto cells), owned by
    OWNER, with the xattr removexattr removes; their paths."""
    d = m.mnt / DOMAIN / state
    d.mkdir()
    d.chmod(0o777)
    made = []
    for way in WAYS:
        for op in OPS:
            if (way, op) in NOT_EXPRESSIBLE:
                continue
            path = cell_path(state, way, op)
            blob = f"DICM {path}\n".encode() * 20
            if way == "smb3":  # an SMB client's own file (with the ACL Samba gives it)
                with smbclient.open_file(smbp_path(path), "wb", **m.smb) as f:
                    f.write(blob)
            else:
                (m.mnt / path).write_bytes(blob)
            os.setxattr(m.mnt / path, "user.keep", b"kept")
            os.chown(m.mnt / path, OWNER.uid, OWNER.uid)
            m.data[path] = blob
            made.append(path)
    return made


def _make_sources(m: Matrix) -> None:
    """The files each rename-onto cell renames onto its file: new, uncommitted, OWNER's."""
    for state in STATES:
        for way in WAYS:
            src = cell_path(state, way, "rename-onto") + "-src"
            if way == "smb3":
                with smbclient.open_file(smbp_path(src), "wb", **m.smb) as f:
                    f.write(b"the replacement")
            else:
                (m.mnt / src).write_bytes(b"the replacement")
                os.chown(m.mnt / src, OWNER.uid, OWNER.uid)


def _remount(m: Matrix) -> None:
    e = m.env
    m.drop_nfs()
    m.close_smb()
    sofsctl(e.data, "export", "stop", "vol")
    e.archive.umount()
    e.archive.mount()
    out = sofsctl(e.data, "export", "start", "vol").stdout
    assert "exported over NFS" in out and "exported over SMB" in out, out
    e.state("nfs")
    e.state("smb")
    m.open_smb()


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Iterator[Matrix]:
    t0 = time.monotonic()
    step_file = tmp_path_factory.mktemp("worm-matrix") / "wall-step"
    step_file.write_text("0\n")
    with mounted_env([OWNER], prefix="sofs-worm-",
                     mount_env={WALL_STEP_ENV: str(step_file),
                                "SOFS_WORM_SCAN_INTERVAL": "3"}) as e, \
            contextlib.ExitStack() as stack:
        m = Matrix(e, step_file)
        stack.callback(m.drop_nfs)
        stack.callback(m.close_smb)
        e.export_nfs()
        e.export_smb()
        m.open_smb()
        sofsctl(e.data, "worm", "domain", "create", "vol", f"/{DOMAIN}", "--mode",
                "compliance", "--default-retention", "20y", "--min-retention", "0s",
                "--max-retention", "70y", "--autocommit", "5m")
        (m.mnt / DOMAIN).chmod(0o777)
        (m.mnt / "outside").mkdir(mode=0o777)
        (m.mnt / "outside").chmod(0o777)

        # autocommit: files written, then the mount's wall clock 15 minutes on, then a stat
        # (waited for below)
        auto = _make_files(m, "autocommit")
        m.step(900)
        for path in auto:
            os.stat(m.mnt / path)
        # committed by chmod a-w; remount: the same, then the remount below
        for state in ("chmod", "remount"):
            for path in _make_files(m, state):
                os.chmod(m.mnt / path, 0o444)
        # expired and held: a retention EXPIRE_IN_S ahead asked through atime, then chmod
        until = time.time_ns() + EXPIRE_IN_S * S
        for state in ("expired", "held"):
            for path in _make_files(m, state):
                os.utime(m.mnt / path, ns=(until, os.stat(m.mnt / path).st_mtime_ns))
                os.chmod(m.mnt / path, 0o444)
        sofsctl(e.data, "worm", "hold", "add", "--name", "case-12", "-r",
                str(m.mnt / DOMAIN / "held"))
        # A stat reaches sofs (which commits a file due) only when the kernel asks: attributes
        # it cached less than ATTR_TIMEOUT (300 s) ago answer alone. Without a clock step a
        # file is looked up again before it is due; here the mount's scanner (every 3 s here,
        # SOFS_WORM_SCAN_INTERVAL; 60 s by default) commits the rest and makes the kernel
        # forget their attributes.
        wait_for(lambda: all(not os.stat(m.mnt / p).st_mode & 0o222 for p in auto), 90,
                 "the autocommit scanner", step=1)
        assert {m.show(p)["rule"] for p in auto[::7]} == {"autocommit"}
        t_built = time.monotonic()
        _remount(m)
        t_remounted = time.monotonic()
        assert m.show(cell_path("remount", "nfs4.1", "write"))["state"] == "committed"

        _make_files(m, "uncommitted")
        # smb-readonly: OWNER sets the DOS READONLY attribute over SMB
        ro = _make_files(m, "smb-readonly")
        for path in ro:
            smbp_set_attributes(path, READONLY | ARCHIVE, **m.smb)
        m.blobs["readonly"] = os.getxattr(m.mnt / ro[0], "user.DOSATTRIB").hex()
        m.smb_ro_committed = all(m.show(p)["state"] == "committed" for p in ro[:1])
        _make_sources(m)
        wait_for(lambda: m.show(cell_path("expired", "fuse-root", "write"))["state"]
                 == "expired", EXPIRE_IN_S + 30, "the expired files' retention to end",
                 step=1)
        held = m.show(cell_path("held", "fuse-root", "write"))
        assert held["state"] == "expired" and held["holds"] == ["case-12"], held
        print(f"\nWORM matrix: states built in {t_built - t0:.1f} s, remount "
              f"{t_remounted - t_built:.1f} s, ready after {time.monotonic() - t0:.1f} s")
        yield m


# --- the matrix ----------------------------------------------------------------------------------

@pytest.mark.parametrize("state,way,op", cells(), ids=["/".join(c) for c in cells()])
def test_worm_cell(matrix, state, way, op):
    cell = matrix.cell(state, way, op)
    before = os.stat(cell.local)
    matrix.new_log()
    got = matrix.run(way, op, cell)
    matrix.observed[(state, way, op)] = got
    if f"of inode {before.st_ino} refused" in matrix.new_log():
        matrix.refused_by_sofs.add((state, way, op))
    want = expected(way, state, op)
    assert got == want, f"{state} / {way} / {op}: got {got}, expected {want}"
    if want == OK:
        if op == "extend":
            assert os.stat(cell.local).st_atime_ns == cell.longer
        return
    # refused: the file is exactly as it was
    after = os.stat(cell.local)
    assert (after.st_mode, after.st_uid, after.st_gid, after.st_size, after.st_mtime_ns,
            after.st_atime_ns, after.st_nlink) == (
        before.st_mode, before.st_uid, before.st_gid, before.st_size, before.st_mtime_ns,
        before.st_atime_ns, before.st_nlink)
    with open(cell.local, "rb") as f:
        assert f.read() == matrix.data[cell.path]
    assert os.getxattr(cell.local, "user.keep") == b"kept"


def test_outcome_table(matrix):
    """Prints every cell observed (run with -s to see it): ``[sofs]`` marks a refusal the
    mount process logged (the WORM rules said no; otherwise the kernel, Ganesha or Samba did
    before asking), ``-`` a cell the protocol cannot express, ``?`` one not run."""
    lines = []
    for state in STATES:
        lines.append(f"\n{state}:")
        lines.append("  " + "op".ljust(12) + "".join(w.ljust(30) for w in WAYS))
        for op in OPS:
            row = []
            for w in WAYS:
                got = matrix.observed.get((state, w, op), "-" if (w, op) in NOT_EXPRESSIBLE
                                          else "?")
                if (state, w, op) in matrix.refused_by_sofs:
                    got += " [sofs]"
                row.append(got)
            lines.append("  " + op.ljust(12) + "".join(r.ljust(30) for r in row))
    print("\n".join(lines))
    print(f"\nuser.DOSATTRIB after READONLY|ARCHIVE over SMB: {matrix.blobs['readonly']}")
    if not matrix.observed:
        pytest.skip("no cell ran in this session (selected alone)")
    missing = [c for c in cells() if c not in matrix.observed]
    assert not missing, f"cells not run before the table: {missing[:5]}"


# --- beyond the matrix ---------------------------------------------------------------------------

def test_descriptors_opened_before_the_commit_cannot_change_it_after(matrix):
    path = matrix.mnt / DOMAIN / "early-fd.dcm"
    path.write_bytes(b"DICM early")
    fd = os.open(path, os.O_WRONLY)
    try:
        os.chmod(path, 0o444)
        for name, fn in (("write", lambda: os.pwrite(fd, b"X", 0)),
                         ("ftruncate", lambda: os.ftruncate(fd, 0)),
                         ("fallocate", lambda: os.posix_fallocate(fd, 0, 1 << 20))):
            with pytest.raises(OSError) as err:
                fn()
            assert err.value.errno == errno.EPERM, name
    finally:
        os.close(fd)
    assert path.read_bytes() == b"DICM early"


def _acl_write_entries(path: Path) -> list[str]:
    """The entries of PATH's POSIX access ACL that grant write, the mask applied to the
    named and group entries (as the kernel does); [] without an ACL."""
    try:
        blob = os.getxattr(path, "system.posix_acl_access")
    except OSError as e:
        if e.errno == errno.ENODATA:
            return []
        raise
    names = {0x01: "user::", 0x02: "user:", 0x04: "group::", 0x08: "group:", 0x10: "mask::",
             0x20: "other::"}
    entries = [struct.unpack_from("<HHI", blob, at) for at in range(4, len(blob), 8)]
    mask = next((perm for tag, perm, _ in entries if tag == 0x10), 0o7)
    return [names.get(tag, hex(tag)) + ("" if tag in (1, 4, 16, 32) else str(ident))
            for tag, perm, ident in entries
            if perm & (mask if tag in (0x02, 0x04, 0x08) else 0o7) & 0o2 and tag != 0x10]


@pytest.mark.parametrize("state", ["chmod", "autocommit"])
def test_a_committed_file_has_no_write_permission_left_in_its_acl(matrix, state):
    """A file an SMB client made has an access ACL (Samba's inherit acls). Its commit must
    take write out of the ACL as out of the mode: chmod does (sofs rewrites the ACL); the
    autocommit does not (sofs/worm/rules.py ``WormRules.commit`` clears the mode's write
    bits only), so getfacl, Samba (which then grants write access and lets sofs refuse,
    see autocommit/smb3 in the matrix) and named ACL users see a writable file."""
    path = matrix.mnt / cell_path(state, "smb3", "write")
    assert not os.stat(path).st_mode & 0o222
    assert _acl_write_entries(path) == [], f"{state}: {oct(os.stat(path).st_mode)}"


def test_the_top_of_a_domain_and_its_non_empty_directories_stay(matrix):
    """rmdir and rename of a domain's top directory (empty, so only the WORM rule refuses)
    and rmdir of a domain directory holding a committed file, on every way in."""
    m = matrix
    top = "worm-top"
    sofsctl(m.env.data, "worm", "domain", "create", "vol", f"/{top}", "--mode", "compliance",
            "--autocommit", "5m")
    (m.mnt / DOMAIN / "full").mkdir(exist_ok=True)
    (m.mnt / DOMAIN / "full" / "kept.dcm").write_bytes(b"DICM")
    os.chmod(m.mnt / DOMAIN / "full" / "kept.dcm", 0o444)
    m.new_log()
    for fn in (lambda: os.rmdir(m.mnt / top), lambda: os.rename(m.mnt / top, m.mnt / "moved")):
        with pytest.raises(OSError) as err:
            fn()
        assert err.value.errno == errno.EPERM
    with pytest.raises(OSError) as err:
        os.rmdir(m.mnt / DOMAIN / "full")
    assert err.value.errno == errno.ENOTEMPTY
    with pytest.raises(nfs_rs.NfsError) as nerr:
        m.nfs_client().rmdir(top)
    assert nerr.value.code_name == "NFS4ERR_PERM"
    with pytest.raises(nfs_rs.NfsError) as nerr:
        m.nfs_client().rmdir(f"{DOMAIN}/full")
    assert nerr.value.code_name == "NFS4ERR_NOTEMPTY"
    with pytest.raises(SMBOSError) as serr:
        smbclient.rmdir(smbp_path(top), **m.smb)
    assert ntstatus_name(serr.value.ntstatus) == "STATUS_ACCESS_DENIED"
    with pytest.raises(SMBOSError) as serr:
        smbclient.rmdir(smbp_path(f"{DOMAIN}/full"), **m.smb)
    # Samba refuses first: the directory is root's, the share user may not delete it
    assert ntstatus_name(serr.value.ntstatus) == "STATUS_ACCESS_DENIED"
    assert (m.mnt / top).is_dir() and (m.mnt / DOMAIN / "full" / "kept.dcm").exists()
    assert m.new_log().count("removing the top directory of a domain") >= 2  # FUSE and NFS


def test_stepping_the_wall_clock_years_expires_nothing_early(matrix):
    """Runs last: the mount's wall clock ten years forward. A file retained for 120 s more
    is still retained (its delete refused everywhere); an untouched file is autocommitted."""
    m = matrix
    kept = f"{DOMAIN}/clock-kept.dcm"
    pending = f"{DOMAIN}/clock-pending.dcm"
    for path in (kept, pending):
        (m.mnt / path).write_bytes(b"DICM clock")
        os.chown(m.mnt / path, OWNER.uid, OWNER.uid)
    until = time.time_ns() + 120 * S
    os.utime(m.mnt / kept, ns=(until, os.stat(m.mnt / kept).st_mtime_ns))
    os.chmod(m.mnt / kept, 0o444)
    assert m.show(kept)["retain_until_ns"] == until
    m.step(10 * 365 * 86400 + 900)
    os.stat(m.mnt / pending)
    assert m.show(pending)["rule"] == "autocommit"
    shown = m.show(kept)
    assert shown["state"] == "committed" and shown["retain_until_ns"] == until, shown
    with pytest.raises(OSError) as err:
        os.unlink(m.mnt / kept)
    assert err.value.errno == errno.EPERM
    with pytest.raises(nfs_rs.NfsError) as nerr:
        m.nfs_client().remove(kept)
    assert nerr.value.code_name == refusal("nfs4.1", "unlink")
    with pytest.raises(SMBOSError) as serr:
        smbclient.remove(smbp_path(kept), **m.smb)
    assert ntstatus_name(serr.value.ntstatus) == refusal("smb3", "unlink")
    assert (m.mnt / kept).read_bytes() == b"DICM clock"
