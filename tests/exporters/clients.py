"""Real NFS and SMB clients against a real sofs export, and the environment that serves it.

:class:`ProtoEnv` builds a local ring and a volume under /tmp, mounts it through sofsctl, and
exports it with ``sofsctl export nfs`` (NFSv4.0/4.1, and NFSv3 when an rpcbind can be run in a
private network namespace) and ``sofsctl export smb`` on 127.0.0.1 and free high ports.
Everything it started (rpcbind, supervisors, servers, the mount, POSIX users) is stopped by pid
or removed in :meth:`ProtoEnv.cleanup`, whatever happened.

Client helpers: nfs-rs (:func:`nfs_connect`), libnfs-utils (:func:`nfs_cli_url`), pysmb
(:func:`pysmb_connect`), smbprotocol (:func:`smbp_session`, :func:`smbp_path`) and the Samba
command line tools (:func:`smbclient_cli`).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from exporters import registry
from exporters.samba import remove_posix_user
from tests.fuse_mount.conftest import Archive

from .helpers import free_port

REPO = Path(__file__).resolve().parents[2]
# `export` is added to sofsctl's CLI by the integrator; until then the tests add it themselves.
WRAPPER = ("from sofsctl.main import cli; from sofsctl.exports import export; "
           "cli.add_command(export); cli(prog_name='sofsctl')")
RPCBIND_SOCK = Path("/run/rpcbind.sock")


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    password: str


# ALICE and BOB are the share's users; EVE is a Samba user of the same server who is not in
# "valid users" (added to its passdb by the test, as an admin would for another share).
ALICE = User("sofstest-pa", 61931, "Alice-Pass:1")
BOB = User("sofstest-pb", 61932, "B0b-Secret-2")
EVE = User("sofstest-pe", 61933, "Eve-Intrud3r")
USERS = (ALICE, BOB, EVE)


def sofsctl(data: Path, *args: str, check: bool = True, timeout: float = 180
            ) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-c", WRAPPER, "--data-dir", str(data), *args],
                         capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and res.returncode != 0:
        raise AssertionError(f"sofsctl {' '.join(args)} failed ({res.returncode}):\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


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


class ProtoEnv:
    """A mounted archive exported over NFS and SMB; everything started is recorded by pid."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sofs-proto-", dir="/tmp"))
        self.root.chmod(0o755)
        self.pids: set[int] = set()
        self.rpcbind_pid: int | None = None
        self.v3 = False
        self.v3_why = ""
        self.nfs_port = free_port()
        self.mount_port = free_port()
        self.smb_port = free_port()
        self.archive = Archive(self.root)
        self.archive.mnt.chmod(0o755)
        self.pwfile = self.root / "smb.pw"
        self.pwfile.write_text("".join(f"{u.name}:{u.password}\n" for u in (ALICE, BOB)))
        self.pwfile.chmod(0o600)

    @property
    def data(self) -> Path:
        return self.archive.data

    @property
    def mnt(self) -> Path:
        return self.archive.mnt

    def state(self, kind: str) -> dict:
        st = registry.read_state(registry.export_dir(self.data, self.archive.volume, kind))
        for key in ("pid", "service_pid"):
            if st.get(key):
                self.pids.add(st[key])
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

    def export_nfs(self, v3: bool) -> None:
        args = ["export", "nfs", "vol", "--clients", "127.0.0.1/32:rw", "--bind", "127.0.0.1",
                "--port", str(self.nfs_port), "--grace", "0"]
        if v3:
            args += ["--v3", "--mount-port", str(self.mount_port)]
        sofsctl(self.data, *args)
        self.v3 = v3
        self.state("nfs")

    def export_smb(self) -> None:
        sofsctl(self.data, "export", "smb", "vol", "--user", f"{ALICE.name}:{ALICE.uid}",
                "--user", f"{BOB.name}:{BOB.uid}", "--password-file", str(self.pwfile),
                "--bind", "127.0.0.1", "--port", str(self.smb_port))
        self.state("smb")

    @property
    def smb_conf(self) -> Path:
        return registry.run_dir(registry.export_dir(self.data, "vol", "smb")) / "smb.conf"

    def add_samba_user_outside_share(self, user: User) -> None:
        """A Samba user of this server who is not in the share's valid users."""
        subprocess.run(["useradd", "-M", "-N", "-u", str(user.uid), "-g", "nogroup", "-d",
                        "/nonexistent", "-s", "/usr/sbin/nologin", user.name],
                       check=True, capture_output=True)
        subprocess.run(["smbpasswd", "-c", str(self.smb_conf), "-s", "-a", user.name],
                       input=f"{user.password}\n{user.password}\n", text=True, check=True,
                       capture_output=True)

    def cleanup(self) -> None:
        try:
            for kind in registry.KINDS:
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
                    for u in USERS:
                        remove_posix_user(u.name)
                    shutil.rmtree(self.root, ignore_errors=True)


# --- payloads -------------------------------------------------------------------------------

SIZES = {"0B": 0, "1B": 1, "4KiB": 4096, "1MiB+1": (1 << 20) + 1, "64MiB": 64 << 20}


def same(got: bytes, want: bytes, what: str) -> None:
    """Assert GOT == WANT without pytest diffing megabytes: say where they first differ."""
    if got == want:
        return
    n = min(len(got), len(want))
    first = next((i for i in range(n) if got[i] != want[i]), n)
    raise AssertionError(f"{what}: {len(got)} bytes, expected {len(want)}; first difference "
                         f"at offset {first}")


# --- NFS ------------------------------------------------------------------------------------

def nfs_connect(port: int, version: str, *, mount_port: int | None = None, uid: int = 1000,
                gid: int = 1000, **opts):
    import nfs_rs
    if version == "3":
        opts["mount_port"] = mount_port
    return nfs_rs.Client.connect(f"nfs://127.0.0.1:{port}/vol?version={version}", uid=uid,
                                 gid=gid, connect_timeout=10, operation_timeout=60, **opts)


def nfs_cli_url(env: ProtoEnv, path: str = "") -> str:
    """A libnfs URL (NFSv3, ports given: no portmapper lookup from the client)."""
    return (f"nfs://127.0.0.1/vol/{path}?version=3&nfsport={env.nfs_port}"
            f"&mountport={env.mount_port}&uid=1000&gid=1000")


# --- SMB ------------------------------------------------------------------------------------

def pysmb_connect(port: int, user: User, password: str | None = None):
    from smb.SMBConnection import SMBConnection
    conn = SMBConnection(user.name, user.password if password is None else password,
                         "sofs-test", "SOFS", is_direct_tcp=True)
    ok = conn.connect("127.0.0.1", port, timeout=30)
    return conn, ok


def pysmb_read(conn, path: str) -> bytes:
    buf = io.BytesIO()
    conn.retrieveFile("vol", path, buf)
    return buf.getvalue()


def smbp_path(path: str = "") -> str:
    return "\\\\127.0.0.1\\vol" + ("\\" + path.replace("/", "\\") if path else "")


@contextlib.contextmanager
def smbp_session(port: int, user: User, password: str | None = None):
    """An smbprotocol (SMB3) session of USER; its own connection cache, closed afterwards."""
    import smbclient
    cache: dict = {}
    smbclient.register_session("127.0.0.1", username=user.name,
                               password=user.password if password is None else password,
                               port=port, connection_cache=cache)
    try:
        yield {"port": port, "connection_cache": cache}
    finally:
        smbclient.reset_connection_cache(connection_cache=cache)


def smbclient_cli(env: ProtoEnv, commands: str, user: User = ALICE, password: str | None = None,
                  cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Samba's smbclient (SMB3, signed) running COMMANDS on the share; the password goes
    through an authentication file, never the command line."""
    auth = env.root / f"auth-{user.name}-{os.getpid()}"
    auth.write_text(f"username = {user.name}\npassword = "
                    f"{user.password if password is None else password}\ndomain = SOFS\n")
    auth.chmod(0o600)
    try:
        return subprocess.run(
            ["smbclient", "//127.0.0.1/vol", "-p", str(env.smb_port), "-A", str(auth),
             "-m", "SMB3", "--option=clientsigning=required", "-c", commands],
            capture_output=True, text=True, timeout=timeout, cwd=cwd)
    finally:
        auth.unlink()


# --- smbprotocol: DOS attributes and security descriptors -----------------------------------

OWNER, GROUP, DACL = 0x1, 0x2, 0x4


def smbp_set_attributes(path: str, attributes: int, **kw) -> None:
    """FileBasicInformation with only FileAttributes set (times 0: left unchanged)."""
    from smbclient._os import _set_basic_information
    _set_basic_information(smbp_path(path), file_attributes=attributes, **kw)


def smbp_attributes(path: str, **kw) -> int:
    import smbclient
    return smbclient.stat(smbp_path(path), **kw).st_file_attributes


def smbp_get_sd(path: str, info: int = OWNER | GROUP | DACL, **kw):
    """The file's security descriptor (SMB2 QUERY_INFO, SMB2_0_INFO_SECURITY)."""
    from smbclient._io import SMBFileTransaction, SMBRawIO
    from smbprotocol.file_info import InfoType
    from smbprotocol.open import FilePipePrinterAccessMask as FA
    from smbprotocol.open import SMB2QueryInfoRequest, SMB2QueryInfoResponse
    from smbprotocol.security_descriptor import SMB2CreateSDBuffer

    raw = SMBRawIO(smbp_path(path), mode="r", share_access="rwd",
                   desired_access=FA.READ_CONTROL | FA.FILE_READ_ATTRIBUTES, **kw)
    req = SMB2QueryInfoRequest()
    req["info_type"] = InfoType.SMB2_0_INFO_SECURITY
    req["output_buffer_length"] = 65536
    req["additional_information"] = info

    def receive(request):
        resp = SMB2QueryInfoResponse()
        resp.unpack(raw.fd.connection.receive(request)["data"].get_value())
        sd = SMB2CreateSDBuffer()
        sd.unpack(resp["buffer"].get_value())
        return sd

    with SMBFileTransaction(raw) as tr:
        req["file_id"] = raw.fd.file_id
        tr += (req, receive)
    return tr.results[0]


def smbp_set_dacl(path: str, aces: list[tuple[str, int, int]], **kw) -> None:
    """Replace the file's DACL with ACES: (SID, ACE type 0 allow / 1 deny, access mask)."""
    from smbclient._io import SMBFileTransaction, SMBRawIO
    from smbprotocol.file_info import InfoType
    from smbprotocol.open import FilePipePrinterAccessMask as FA
    from smbprotocol.open import SMB2SetInfoRequest, SMB2SetInfoResponse
    from smbprotocol.security_descriptor import (
        AccessAllowedAce,
        AccessDeniedAce,
        AclPacket,
        SDControl,
        SIDPacket,
        SMB2CreateSDBuffer,
    )

    acl = AclPacket()
    packed = []
    for sid_text, kind, mask in aces:
        ace = AccessAllowedAce() if kind == 0 else AccessDeniedAce()
        sid = SIDPacket()
        sid.from_string(sid_text)
        ace["mask"] = mask
        ace["sid"] = sid
        packed.append(ace)
    acl["aces"] = packed
    sd = SMB2CreateSDBuffer()
    sd["control"].set_flag(SDControl.SELF_RELATIVE)
    sd.set_dacl(acl)
    raw = SMBRawIO(smbp_path(path), mode="r", share_access="rwd",
                   desired_access=FA.WRITE_DAC | FA.READ_CONTROL, **kw)
    req = SMB2SetInfoRequest()
    req["info_type"] = InfoType.SMB2_0_INFO_SECURITY
    req["additional_information"] = DACL
    req["buffer"] = sd

    def receive(request):
        resp = SMB2SetInfoResponse()
        resp.unpack(raw.fd.connection.receive(request)["data"].get_value())
        return resp

    with SMBFileTransaction(raw) as tr:
        req["file_id"] = raw.fd.file_id
        tr += (req, receive)


def dacl_entries(sd) -> list[tuple[str, int, int, int]]:
    """(SID, ACE type, flags, mask) of each ACE of SD's DACL, in order."""
    acl = sd.get_dacl()
    if acl is None:
        return []
    return [(str(a["sid"]), a["ace_type"].get_value(), a["ace_flags"].get_value(),
             a["mask"].get_value()) for a in acl["aces"].get_value()]


# NFSv4.1 between nfs-rs 0.8.7 and Ganesha 4.3: after some large multi-RPC READs, a READ
# on the session fails with NFS4ERR_RETRY_UNCACHED_REP (Ganesha's session reply cache), which
# nfs-rs classifies as SafeToRetry / recovery=Retry, and that session keeps failing afterwards.
# It happens exporting a plain directory too (not a sofs issue). A real client would retry on
# a new session: reads do (and count it), and the tests use one connection per phase.
NFS_RETRIES: list[str] = []


def nfs_read(c, path: str, reconnect=None) -> bytes:
    import nfs_rs
    # a read is idempotent: any NFS-level error of that session (including one reported at
    # close, "Uncertain ... ReplaySensitive") is retried on a new session and counted
    try:
        with c.open(path, "rb") as f:
            return f.read()
    except nfs_rs.NfsError as e:
        if reconnect is None:
            raise
        NFS_RETRIES.append(f"{path}: {type(e).__name__}: {e}")
    for attempt in range(3):
        with reconnect() as fresh:
            try:
                with fresh.open(path, "rb") as f:
                    return f.read()
            except nfs_rs.NfsError as e:
                NFS_RETRIES.append(f"{path} (new session): {type(e).__name__}: {e}")
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")
