"""Real NFS and SMB clients for the export integration tests (the servers: exportenv.py).

nfs-rs (:func:`nfs_connect`, :func:`nfs_read`), libnfs-utils (:func:`nfs_cli_url`), pysmb
(:func:`pysmb_connect`, :func:`pysmb_conn`, :func:`pysmb_read`), smbprotocol
(:func:`smbp_session`, :func:`smbp_path`, DOS attributes and security descriptors) and the
Samba command line tools (:func:`smbclient_cli`); test payloads (:data:`SIZES`, :func:`same`).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from smb.SMBConnection import SMBConnection

from .exportenv import ALICE, ExportEnv, User

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


def nfs_cli_url(env: ExportEnv, path: str = "") -> str:
    """A libnfs URL (NFSv3, ports given: no portmapper lookup from the client)."""
    return (f"nfs://127.0.0.1/vol/{path}?version=3&nfsport={env.nfs_port}"
            f"&mountport={env.mount_port}&uid=1000&gid=1000")


# --- SMB ------------------------------------------------------------------------------------

def pysmb_connect(port: int, user: User, password: str | None = None, timeout: float = 30
                  ) -> tuple[SMBConnection, bool]:
    conn = SMBConnection(user.name, user.password if password is None else password,
                         "sofs-test", "SOFS", is_direct_tcp=True)
    ok = conn.connect("127.0.0.1", port, timeout=timeout)
    return conn, ok


@contextlib.contextmanager
def pysmb_conn(port: int, user: User) -> Iterator[SMBConnection]:
    """A pysmb connection of USER that must succeed (pysmb is a test dependency), closed afterwards."""
    conn, ok = pysmb_connect(port, user, timeout=10)
    assert ok
    try:
        yield conn
    finally:
        conn.close()


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


def smbclient_cli(env: ExportEnv, commands: str, user: User = ALICE, password: str | None = None,
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
