"""Protocol-level health probes of a running export, used by :mod:`exporters.supervisor`.

"The port answers" only shows that the kernel accepts TCP connections: a wedged server (stopped,
deadlocked, stuck in the FUSE mount) still does. A probe speaks the protocol end to end, through
a fresh connection each time, with short timeouts, in a worker thread (:class:`Prober`) so that a
library call that blocks never holds up the supervisor loop.

NFS (nfs-rs, NFSv4.1, AUTH_SYS uid/gid 0)
-----------------------------------------
The probe directory ``.sofs-probe`` at the volume root is created by the supervisor through the
FUSE mount (owner 65534:65534, mode 0700): the client's root is squashed to 65534 by the default
``root_squash`` (and by the ``all_squash`` rule added for the probe address, see
:func:`exporters.exportconfig.nfs_export_of`), and stays root with ``no_root_squash``; either may
use it. A read-write export writes ``.sofs-probe/nfs-probe`` with random content, reads it
back, compares and deletes it. A read-only export reads ``.sofs-probe/ro-probe``, which the
supervisor wrote through the FUSE mount (random content, rewritten after a failed probe), and
compares. The mount leaves the probe directories out of directory listings
(``fuse_mount.names.HIDDEN_ROOT_NAMES``), so neither NFS nor local users see them;
Samba's ``veto files`` also hides ``.sofs*`` from SMB clients.

SMB (smbprotocol, the ``sofs-probe`` account)
---------------------------------------------
The probe authenticates as ``sofs-probe``: a system user (no login, no home, primary group
nogroup/65534) with a random Samba password kept in the export directory (``smb-probe.pw``,
mode 0600, never on a command line). On one fresh connection it does negotiate, session setup
(NTLMv2, signed), then

1. a tree connect to the volume's share and a listing of its root (the share users see), and
2. a file round trip in the probe's own share ``VOLUME-probe$``: writes ``smb-probe`` with
   random content, reads it back, compares and deletes it (a read-only export: reads
   ``ro-probe``, which the supervisor wrote through the FUSE mount, and compares).

The probe share (rendered by :func:`exporters.exportconfig.smb_shares_of`) is the directory
``.sofs-probe-smb`` at the volume root, owned by ``sofs-probe`` (mode 0700, created by the
supervisor through the FUSE mount); ``sofs-probe`` is its only valid user, it is not
browseable (and its ``$`` hides it from Windows share lists), and the volume's share hides
``.sofs*`` from every user through ``veto files``. So the probe proves that a write lands in
the FUSE mount through smbd and comes back, without a probe file ever showing up in Windows
Explorer. (Samba's ``veto files`` has no per-user exception, which is why the probe writes in
a share of its own rather than in a hidden name of the volume's share.)

Failures and what they count for
--------------------------------
A :class:`ProbeResult` says ``ok``, how long it took, a message, and whether a failure
``counts`` towards a restart: no answer in time, a dropped connection, a protocol error or
content that does not match count; a definite refusal by a server that answered (access
denied, logon failure) does not, since a restart cannot fix a permission or configuration
problem (it is shown in the state and the log instead).
"""

from __future__ import annotations

import errno
import os
import pwd
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chunkstore.atomicfile import atomic_write
from fuse_mount.names import NFS_PROBE_DIR
from fuse_mount.names import SMB_PROBE_DIR as SMB_PROBE_DIR  # re-exported: the exporters use it

from .errors import ExportError, ProbeFailure
from .samba import NAME_RE, SmbUser, add_smb_users

PROBE_DIR = NFS_PROBE_DIR  # both left out of directory listings by the mount
SMB_PROBE_FILE = "smb-probe"
NFS_PROBE_FILE = "nfs-probe"
RO_PROBE_FILE = "ro-probe"
NOBODY = 65534
PROBE_USER = "sofs-probe"
PROBE_PASSWORD_FILE = "smb-probe.pw"
OP_TIMEOUT_S = 5.0          # every connect and every protocol operation
PROBE_TIMEOUT_S = 12.0      # a whole probe, from the supervisor's point of view
# NFS answers that mean "not allowed" (access list, squash, read-only), not "not working".
REFUSALS = frozenset({"NFS4ERR_ACCESS", "NFS4ERR_PERM", "NFS4ERR_WRONGSEC", "NFS4ERR_ROFS",
                      "NFS3ERR_ACCES", "NFS3ERR_PERM", "NFS3ERR_ROFS"})



@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    at: float           # wall-clock time the probe started
    took: float         # seconds
    message: str
    counts: bool = True  # (failures only) does it count towards a restart?


def probe_host(bind: str) -> str:
    """The address the probe connects to: the bind address, loopback for a wildcard."""
    if bind in ("0.0.0.0", ""):
        return "127.0.0.1"
    if bind == "::":
        return "::1"
    return bind


# --- the probe directory, through the FUSE mount -------------------------------------------------

def prepare_probe_dir(mountpoint: str | Path, name: str = PROBE_DIR, uid: int = NOBODY,
                      gid: int = NOBODY) -> Path:
    """Create (or fix) ``MOUNTPOINT/NAME``: a real directory owned by UID:GID, mode 0700.

    The NFS probe's is ``.sofs-probe`` (65534:65534, the squashed client's), the SMB probe's
    ``.sofs-probe-smb`` (the ``sofs-probe`` account's)."""
    d = Path(mountpoint) / name
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)  # refuses a symlink
    try:
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
        if st.st_mode & 0o7777 != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return d


def write_ro_probe_file(mountpoint: str | Path, name: str = PROBE_DIR, uid: int = NOBODY,
                        gid: int = NOBODY) -> bytes:
    """Write ``NAME/ro-probe`` (random content, UID:GID, 0644) through the FUSE mount, for the
    probe of a read-only export; the content."""
    d = prepare_probe_dir(mountpoint, name, uid, gid)
    content = b"sofs read-only export probe " + secrets.token_hex(16).encode() + b"\n"
    tmp = d / f".{RO_PROBE_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, content)
        os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o644)
    finally:
        os.close(fd)
    os.replace(tmp, d / RO_PROBE_FILE)
    return content


def smb_probe_share(volume: str) -> str:
    """The name of the SMB probe's own share of VOLUME (hidden: ends in ``$``)."""
    return f"{volume}-probe$"


# --- NFS -----------------------------------------------------------------------------------------

def _nfs_url(host: str, port: int, volume: str) -> str:
    h = f"[{host}]" if ":" in host else host
    return f"nfs://{h}:{port}/{volume}?version=4.1"


def nfs_probe(host: str, port: int, volume: str, *, expected: bytes | None = None,
              timeout: float = OP_TIMEOUT_S) -> str:
    """One NFSv4.1 round trip on a fresh connection (see the module doc); a short message.

    EXPECTED (a read-only export): read ``.sofs-probe/ro-probe`` and compare with it; None:
    write, read back, compare and delete ``.sofs-probe/nfs-probe``. Raises ProbeFailure."""
    try:  # imported here, not at the top: ~100 ms that only the supervisor's probe needs
        import nfs_rs
    except ImportError:
        raise ProbeFailure("nfs-rs is not installed (pip install nfs-rs)", counts=False) from None
    ro_path, rw_path = f"{PROBE_DIR}/{RO_PROBE_FILE}", f"{PROBE_DIR}/{NFS_PROBE_FILE}"
    try:
        try:
            client = nfs_rs.Client.connect(_nfs_url(host, port, volume), uid=0, gid=0,
                                           connect_timeout=timeout, operation_timeout=timeout)
        except FileNotFoundError:
            # Ganesha's pseudo filesystem shows a client only the exports it may use.
            raise ProbeFailure(f"NFS refused the probe: /{volume} is not visible from {host} "
                               "(not in the export's client list?)", counts=False) from None
        with client as c:
            if expected is not None:
                with c.open(ro_path, "rb") as f:
                    got = f.read()
                if got != expected:
                    raise ProbeFailure(f"read {ro_path} over NFS: {len(got)} bytes that differ "
                                       f"from the {len(expected)} written through the mount")
                return f"read {ro_path} over NFSv4.1 ({len(got)} bytes)"
            payload = b"sofs export probe " + os.urandom(48)
            with c.open(rw_path, "wb") as f:
                f.write(payload)
            with c.open(rw_path, "rb") as f:
                got = f.read()
            c.remove(rw_path)
            if got != payload:
                raise ProbeFailure(f"{rw_path} read back over NFS differs from what was written "
                                   f"({len(got)} bytes, wrote {len(payload)})")
            return f"wrote, read back and removed {rw_path} over NFSv4.1"
    except ProbeFailure:
        raise
    except PermissionError as exc:
        raise ProbeFailure(f"NFS refused the probe: {exc}", counts=False) from None
    except Exception as exc:
        code = getattr(exc, "code_name", None)
        if code in REFUSALS:
            raise ProbeFailure(f"NFS refused the probe: {code}: {exc}",
                               counts=False) from None
        raise ProbeFailure(f"NFS probe failed: {type(exc).__name__}: {exc}") from None


# --- SMB -----------------------------------------------------------------------------------------

def _run(argv: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportError(f"{argv[0]} failed: {exc}") from None


def ensure_probe_posix_user() -> tuple[int, int]:
    """The system user ``sofs-probe`` (created if missing: system uid, group nogroup/65534, no
    home, no login); (uid, gid). Refuses an existing one with uid 0."""
    assert NAME_RE.fullmatch(PROBE_USER)
    for attempt in range(2):
        try:
            pw = pwd.getpwnam(PROBE_USER)
        except KeyError:
            pw = None
        if pw is not None:
            if pw.pw_uid == 0 or pw.pw_gid == 0:
                raise ExportError(f"user {PROBE_USER} exists with uid/gid 0: refusing to use it "
                                  "for the SMB health probe")
            return pw.pw_uid, pw.pw_gid
        if attempt:
            break
        r = _run(["useradd", "--system", "-M", "-N", "-g", str(NOBODY), "-d", "/nonexistent",
                  "-s", "/usr/sbin/nologin", "-c", "sofs export health probe", PROBE_USER])
        if r.returncode not in (0, 9):  # 9: created meanwhile by another supervisor
            raise ExportError(f"useradd {PROBE_USER} failed ({r.returncode}): "
                              f"{(r.stderr or r.stdout).strip()}")
    raise ExportError(f"user {PROBE_USER} could not be created")


def probe_password(edir: Path) -> str:
    """The probe account's password, kept in EDIR/smb-probe.pw (0600; created if missing)."""
    path = Path(edir) / PROBE_PASSWORD_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        fd = None
    if fd is not None:
        with os.fdopen(fd) as f:
            os.fchmod(f.fileno(), 0o600)
            pw = f.read().strip()
        if pw:
            return pw
    pw = secrets.token_urlsafe(24)
    atomic_write(path, pw + "\n", mode=0o600)
    return pw


@dataclass(frozen=True)
class ProbeAccount:
    """The SMB probe's account: its Samba password and POSIX identity."""

    password: str
    uid: int
    gid: int


def ensure_probe_account(conf: Path, edir: Path) -> ProbeAccount:
    """Make sure ``sofs-probe`` exists (POSIX and in the config's tdbsam) with the password
    kept in EDIR. Idempotent (the password is set again each time)."""
    uid, gid = ensure_probe_posix_user()
    pw = probe_password(edir)
    add_smb_users(conf, [SmbUser(PROBE_USER, pw, uid, gid)], create_posix=False)
    return ProbeAccount(pw, uid, gid)


def smb_probe(host: str, port: int, share: str, password: str, *, probe_share: str | None = None,
              expected: bytes | None = None, user: str = PROBE_USER,
              timeout: float = OP_TIMEOUT_S) -> str:
    """The SMB probe on a fresh connection (see the module doc); a short message.

    Lists the root of SHARE, then in PROBE_SHARE (when given) writes, reads back, compares and
    deletes ``smb-probe``, or with EXPECTED (a read-only export) reads ``ro-probe`` and compares
    it with EXPECTED. Raises ProbeFailure."""
    try:  # imported here, not at the top: ~65 ms that only the supervisor's probe needs
        from smbprotocol import exceptions as smbexc
        from smbprotocol.connection import Connection
        from smbprotocol.file_info import FileInformationClass
        from smbprotocol.open import (
            CreateDisposition,
            CreateOptions,
            DirectoryAccessMask,
            FileAttributes,
            FilePipePrinterAccessMask,
            ImpersonationLevel,
            Open,
            ShareAccess,
        )
        from smbprotocol.session import Session
        from smbprotocol.tree import TreeConnect
    except ImportError:
        raise ProbeFailure("smbprotocol is not installed (pip install smbprotocol)",
                           counts=False) from None
    A = FilePipePrinterAccessMask

    def open_file(tree, name: str, access: int, disposition: int, options: int = 0):
        f = Open(tree, name)
        f.create(ImpersonationLevel.Impersonation, access, FileAttributes.FILE_ATTRIBUTE_NORMAL,
                 ShareAccess.FILE_SHARE_READ, disposition,
                 CreateOptions.FILE_NON_DIRECTORY_FILE | options)
        return f

    conn = Connection(uuid.uuid4(), host, port, require_signing=True)
    try:
        conn.connect(timeout=timeout)
        session = Session(conn, user, password, require_encryption=False, auth_protocol="ntlm")
        session.connect()
        tree = TreeConnect(session, rf"\\{host}\{share}")
        tree.connect()
        d = Open(tree, "")
        d.create(ImpersonationLevel.Impersonation,
                 DirectoryAccessMask.FILE_LIST_DIRECTORY | DirectoryAccessMask.FILE_READ_ATTRIBUTES,
                 FileAttributes.FILE_ATTRIBUTE_DIRECTORY,
                 ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
                 CreateDisposition.FILE_OPEN, CreateOptions.FILE_DIRECTORY_FILE)
        try:
            entries = d.query_directory("*", FileInformationClass.FILE_NAMES_INFORMATION)
        finally:
            d.close()
        listed = f"listed share {share} ({len(entries)} entries)"
        if probe_share is None:
            return f"{listed} over SMB as {user}"
        ptree = TreeConnect(session, rf"\\{host}\{probe_share}")
        ptree.connect()
        if expected is not None:
            f = open_file(ptree, RO_PROBE_FILE, A.FILE_READ_DATA | A.FILE_READ_ATTRIBUTES,
                          CreateDisposition.FILE_OPEN)
            try:
                got = f.read(0, len(expected) + 1) if f.end_of_file else b""
            finally:
                f.close()
            if got != expected:
                raise ProbeFailure(f"read {probe_share}{RO_PROBE_FILE} over SMB: {len(got)} "
                                   f"bytes that differ from the {len(expected)} written "
                                   "through the mount")
            return f"{listed}, read {RO_PROBE_FILE} ({len(got)} bytes) over SMB as {user}"
        payload = b"sofs export probe " + os.urandom(48)
        f = open_file(ptree, SMB_PROBE_FILE, A.FILE_WRITE_DATA | A.FILE_READ_ATTRIBUTES,
                      CreateDisposition.FILE_OVERWRITE_IF)
        try:
            f.write(payload, 0)
            f.flush()
        finally:
            f.close()
        f = open_file(ptree, SMB_PROBE_FILE, A.FILE_READ_DATA | A.DELETE | A.FILE_READ_ATTRIBUTES,
                      CreateDisposition.FILE_OPEN, CreateOptions.FILE_DELETE_ON_CLOSE)
        try:
            got = f.read(0, len(payload) + 1) if f.end_of_file else b""
        finally:
            f.close()  # deletes it
        if got != payload:
            raise ProbeFailure(f"{probe_share}{SMB_PROBE_FILE} read back over SMB differs from "
                               f"what was written ({len(got)} bytes, wrote {len(payload)})")
        return f"{listed}, wrote, read back and removed {SMB_PROBE_FILE} over SMB as {user}"
    except ProbeFailure:
        raise
    except (smbexc.LogonFailure, smbexc.AccessDenied, smbexc.BadNetworkName,
            smbexc.SMBAuthenticationError) as exc:
        raise ProbeFailure(f"SMB refused the probe: {type(exc).__name__}: {exc}",
                           counts=False) from None
    except Exception as exc:
        raise ProbeFailure(f"SMB probe failed: {type(exc).__name__}: {exc}") from None
    finally:
        try:
            conn.disconnect(close=True, timeout=1)
        except Exception:
            pass


# --- bounded runs --------------------------------------------------------------------------------

class Prober:
    """Runs a probe function in a daemon thread, waiting at most TIMEOUT seconds.

    A probe still running when its time is up is abandoned (reported as a failure that counts);
    no new one starts while it runs (each such attempt also fails: the server's restart usually
    frees it). ``stop`` (a callable) is polled so that a stopping supervisor does not wait."""

    def __init__(self, timeout: float = PROBE_TIMEOUT_S) -> None:
        self.timeout = timeout
        self._thread: threading.Thread | None = None

    def run(self, fn: Callable[[], str], stop: Callable[[], bool] = lambda: False) -> ProbeResult:
        at, t0 = time.time(), time.monotonic()
        if self._thread is not None and self._thread.is_alive():
            return ProbeResult(False, at, 0.0, "the previous probe is still hanging")
        box: dict = {}

        def work() -> None:
            try:
                box["msg"] = fn()
            except ProbeFailure as exc:
                box["fail"] = exc
            except OSError as exc:  # the FUSE side (probe directory)
                box["fail"] = ProbeFailure(
                    f"probe directory: {exc.strerror or exc} ({errno.errorcode.get(exc.errno or 0, '')})")
            except Exception as exc:
                box["fail"] = ProbeFailure(f"probe error: {type(exc).__name__}: {exc}")

        t = threading.Thread(target=work, name="export-probe", daemon=True)
        self._thread = t
        t.start()
        deadline = t0 + self.timeout
        while t.is_alive() and time.monotonic() < deadline and not stop():
            t.join(0.1)
        took = time.monotonic() - t0
        if t.is_alive():
            why = "stopping" if stop() else f"no answer within {self.timeout:g} s"
            return ProbeResult(False, at, took, f"probe abandoned: {why}")
        if "fail" in box:
            f = box["fail"]
            return ProbeResult(False, at, took, str(f), counts=f.counts)
        return ProbeResult(True, at, took, box.get("msg", "ok"))
