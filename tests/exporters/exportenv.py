"""The environment of the export integration tests: a real sofs volume exported by ``sofsctl``.

:class:`ExportEnv` builds a local ring and a volume under /tmp (traversable by the SMB users),
mounts it with :class:`tests.fuse_mount.conftest.Archive`, and exports it with the real ``sofsctl
export nfs`` (NFSv4.0/4.1, and NFSv3 when :meth:`ExportEnv.start_rpcbind` can run an rpcbind in
a private network namespace) and ``sofsctl export smb`` (the SMB users it was given) on
127.0.0.1 and free high ports. Everything it started (supervisors, servers, rpcbind, the mount,
POSIX users) is stopped by pid or removed in :meth:`ExportEnv.cleanup`, whatever happened.

:func:`mounted_env` gives a mounted, not yet exported environment and always cleans it up; the
``env`` fixture is that with the one SMB user :data:`SMB_USER` (test_export_cli, test_probe).
Also here: the test identities (:class:`User`), :func:`sofsctl`, :func:`wait_for` and
:func:`pid_alive`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from exporters import exportconfig, exportspec, registry
from exporters.exportstate import ExportState
from exporters.samba import remove_posix_user
from tests.fuse_mount.conftest import Archive
from tests.fuse_mount.conftest import sofsctl as _run_sofsctl

from .helpers import free_port, need_root_and

T = TypeVar("T")

RPCBIND_SOCK = Path("/run/rpcbind.sock")


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    password: str


# The lifecycle and probe tests' one SMB user.
SMB_USER = User("sofstest-exp1", 61911, "Str0ng-Pass:word")
# The protocol tests': ALICE and BOB are the share's users; EVE is a Samba user of the same
# server who is not in "valid users" (added to its passdb by the test, as an admin would for
# another share).
ALICE = User("sofstest-pa", 61931, "Alice-Pass:1")
BOB = User("sofstest-pb", 61932, "B0b-Secret-2")
EVE = User("sofstest-pe", 61933, "Eve-Intrud3r")
# The WORM matrix's (test_worm_matrix) one SMB user, the owner of its files: an identity of
# its own, so that another module's environment removing its users does not log it out.
WORM_OWNER = User("sofstest-wo", 61941, "W0rm-Owner:3")


def sofsctl(data: Path, *args: str, check: bool = True, timeout: float = 180
            ) -> subprocess.CompletedProcess:
    """Run the installed CLI, ``python -m sofsctl --data-dir DATA ARGS``; a failure raises
    AssertionError with its output unless CHECK is false."""
    return _run_sofsctl(data, *args, check=check, timeout=timeout)


def wait_for(pred: Callable[[], T], timeout: float, what: str, step: float = 0.2) -> T:
    """PRED's first true value, polled every STEP seconds for at most TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pid_alive(pid: int | None) -> bool:
    """Whether PID is a live process (not a zombie)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _rpcbind_answers() -> bool:
    if not RPCBIND_SOCK.is_socket():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(RPCBIND_SOCK))
            return True
        except OSError:
            return False


class ExportEnv:
    """A mounted archive exported over NFS and SMB; everything started is recorded by pid.

    USERS are the SMB export's users (their passwords in ``pwfile``); PREFIX names the
    directory under /tmp; MOUNT_ENV: environment variables every mount process gets (e.g.
    ``SOFS_WALL_STEP_FILE``, see :class:`Archive`)."""

    def __init__(self, users: Sequence[User], prefix: str = "sofs-export-",
                 mount_env: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        try:
            self.root.chmod(0o755)
            self.users = tuple(users)
            self.outside_users: list[User] = []
            self.pids: set[int] = set()
            self.rpcbind_pid: int | None = None
            self.v3 = False
            self.v3_why = ""
            self.nfs_port = free_port()
            self.mount_port = free_port()
            self.smb_port = free_port()
            self.pwfile = self.root / "smb.pw"
            self.pwfile.write_text("".join(f"{u.name}:{u.password}\n" for u in self.users))
            self.pwfile.chmod(0o600)
            self.archive = Archive(self.root, mount_env=mount_env)
            self.archive.mnt.chmod(0o755)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    @property
    def data(self) -> Path:
        return self.archive.data

    @property
    def mnt(self) -> Path:
        return self.archive.mnt

    def state(self, kind: str) -> ExportState:
        """The KIND export's state; its supervisor's and server's pids are recorded."""
        st = registry.read_state(registry.export_dir(self.data, self.archive.volume, kind))
        for pid in (st.pid, st.service_pid):
            if pid:
                self.pids.add(pid)
        return st

    # --- rpcbind for NFSv3 ------------------------------------------------------------------

    def start_rpcbind(self) -> bool:
        """An rpcbind for Ganesha's NFSv3 registration: in a private network namespace (it
        binds 0.0.0.0:111 and cannot be told otherwise), reachable through the shared
        filesystem at /run/rpcbind.sock. False (and v3_why) when that cannot be done."""
        if shutil.which("rpcbind") is None or shutil.which("unshare") is None:
            self.v3_why = "rpcbind or unshare is not installed"
            return False
        if _rpcbind_answers():
            # someone else's rpcbind (another session's, or the host's): do not take it over
            self.v3_why = f"{RPCBIND_SOCK} already belongs to a running rpcbind"
            return False
        with contextlib.suppress(FileNotFoundError):
            RPCBIND_SOCK.unlink()  # stale, nothing answers on it
        log = open(self.root / "rpcbind.log", "wb")
        proc = subprocess.Popen(["unshare", "-n", "rpcbind", "-f"], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.rpcbind_pid = proc.pid  # unshare execs rpcbind: the same pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.v3_why = (f"rpcbind exited with {proc.returncode}: "
                               f"{(self.root / 'rpcbind.log').read_text()[-500:]}")
                self.rpcbind_pid = None
                return False
            if _rpcbind_answers():
                return True
            time.sleep(0.05)
        self.v3_why = "rpcbind did not create /run/rpcbind.sock in 10 s"
        return False

    def stop_rpcbind(self) -> None:
        """Stop the rpcbind :meth:`start_rpcbind` started, if any, and remove its socket."""
        pid, self.rpcbind_pid = self.rpcbind_pid, None
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        with contextlib.suppress(FileNotFoundError):
            if not _rpcbind_answers():
                RPCBIND_SOCK.unlink()

    # --- exports ----------------------------------------------------------------------------

    def export_nfs(self, v3: bool = False) -> subprocess.CompletedProcess:
        """``sofsctl export nfs`` read-write for 127.0.0.1, without a grace period; with V3,
        NFSv3 too (its MOUNT protocol on ``mount_port``)."""
        args = ["export", "nfs", "vol", "--clients", "127.0.0.1/32:rw", "--bind", "127.0.0.1",
                "--port", str(self.nfs_port), "--grace", "0"]
        if v3:
            args += ["--v3", "--mount-port", str(self.mount_port)]
        res = sofsctl(self.data, *args)
        self.v3 = v3
        self.state("nfs")
        return res

    def export_smb(self, *extra: str) -> subprocess.CompletedProcess:
        """``sofsctl export smb`` for the environment's users (EXTRA: more options)."""
        users = [a for u in self.users for a in ("--user", f"{u.name}:{u.uid}")]
        res = sofsctl(self.data, "export", "smb", "vol", *users, "--password-file",
                      str(self.pwfile), "--bind", "127.0.0.1", "--port", str(self.smb_port),
                      *extra)
        self.state("smb")
        return res

    @property
    def smb_conf(self) -> Path:
        return exportconfig.run_dir(registry.export_dir(self.data, "vol", "smb")) / "smb.conf"

    def add_samba_user_outside_share(self, user: User) -> None:
        """A Samba user of this server who is not in the share's valid users (removed again
        by :meth:`cleanup`)."""
        self.outside_users.append(user)
        subprocess.run(["useradd", "-M", "-N", "-u", str(user.uid), "-g", "nogroup", "-d",
                        "/nonexistent", "-s", "/usr/sbin/nologin", user.name],
                       check=True, capture_output=True)
        subprocess.run(["smbpasswd", "-c", str(self.smb_conf), "-s", "-a", user.name],
                       input=f"{user.password}\n{user.password}\n", text=True, check=True,
                       capture_output=True)

    def cleanup(self) -> None:
        """Stop the exports, SIGKILL every recorded pid, stop rpcbind, unmount, remove the
        POSIX users and the directory under /tmp; each step even when an earlier one failed."""
        try:
            for kind in exportspec.KINDS:
                if (registry.export_dir(self.data, "vol", kind) / "spec.json").exists():
                    self.state(kind)
            with contextlib.suppress(Exception):
                registry.stop_exports(self.data, "vol", timeout=20)
            for pid in self.pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            try:
                self.stop_rpcbind()
            finally:
                try:
                    self.archive.cleanup()
                finally:
                    for u in (*self.users, *self.outside_users):
                        remove_posix_user(u.name)
                    shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def mounted_env(users: Sequence[User], prefix: str = "sofs-export-",
                mount_env: dict[str, str] | None = None) -> Iterator[ExportEnv]:
    """An :class:`ExportEnv` of USERS, mounted (the volume's root world-writable: NFS uid 1000
    and the SMB users write), not yet exported; cleaned up afterwards whatever happened.
    MOUNT_ENV: environment variables for the mount process (:class:`ExportEnv`). Skips
    without root or the servers' binaries."""
    need_root_and("ganesha.nfsd", "smbd", "smbpasswd", "useradd", "fusermount3")
    e = ExportEnv(users, prefix, mount_env)
    try:
        e.archive.mount()
        e.mnt.chmod(0o777)
        yield e
    finally:
        e.cleanup()
