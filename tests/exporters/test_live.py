"""Real NFS-Ganesha and smbd exporting a plain local directory, with userspace clients.

Each test starts its daemon on 127.0.0.1 and a free high port and stops it (by pid) whatever
happens. Needs root and the apt packages of scripts/install.
"""

from __future__ import annotations

import io
import os
import signal
import time
import uuid

import nfs_rs
import pytest
import smbclient
from smb.smb_structs import OperationFailure
from smb.SMBConnection import SMBConnection
from smbprotocol.exceptions import SMBException

from exporters.errors import ExportError
from exporters.ganesha import ClientRule, NfsExport, ganesha_service, write_ganesha_config
from exporters.samba import (
    SmbShare,
    SmbUser,
    add_smb_users,
    remove_posix_user,
    samba_service,
    write_samba_config,
)

from .helpers import free_port, need_root_and, running, scratch_dir

pytestmark = pytest.mark.integration



# --- NFS-Ganesha ---------------------------------------------------------------------------


@pytest.fixture
def ganesha():
    """Start ganesha exporting a scratch directory; yields (service, export dir, port, start)."""
    need_root_and("ganesha.nfsd")
    with scratch_dir("sofs-nfs-") as root:
        data = root / "data"
        data.mkdir(mode=0o777)
        data.chmod(0o777)
        port = free_port()

        def start(**kw):
            export = NfsExport(
                volume="vol1", volume_uuid=str(uuid.uuid4()), mountpoint=data,
                clients=kw.pop("clients", [ClientRule("127.0.0.1/32")]),
                nfs_port=port, bind="127.0.0.1", graceless=True, **kw,
            )
            conf = write_ganesha_config(export, root / "run")
            return ganesha_service(conf, root / "run")

        svc = start()
        with running(svc):
            yield svc, data, port, start


def nfs_client(port: int, version: str = "4.1", uid: int = 1000, gid: int = 1000):
    return nfs_rs.Client.connect(
        f"nfs://127.0.0.1:{port}/vol1?version={version}", uid=uid, gid=gid,
        connect_timeout=10, operation_timeout=30,
    )


@pytest.mark.parametrize("version", ["4.1", "4.0"])
def test_nfs_write_read(ganesha, version):
    svc, data, port, _ = ganesha
    payload = os.urandom(300_000)
    with nfs_client(port, version) as c:
        with c.open("scan.dcm", "wb") as f:
            f.write(payload)
        with c.open("scan.dcm", "rb") as f:
            assert f.read() == payload
        c.mkdir("study")
        c.rename("scan.dcm", "study/scan.dcm")
        # (nfs-rs 0.8.7 sends LOOKUP "." to list the export root, which Ganesha answers with
        # NFS4ERR_BADNAME: list a subdirectory)
        assert c.listdir("study") == ["scan.dcm"]
        c.rename("study/scan.dcm", "scan.dcm")
    # byte-identical in the exported directory, owned by the AUTH_SYS uid
    assert (data / "scan.dcm").read_bytes() == payload
    assert (data / "scan.dcm").stat().st_uid == 1000
    # written locally, read over NFS
    (data / "local.txt").write_bytes(b"from the server side")
    with nfs_client(port, version) as c, c.open("local.txt", "rb") as f:
        assert f.read() == b"from the server side"


def test_nfs_root_squash(ganesha):
    svc, data, port, _ = ganesha
    with nfs_client(port, uid=0, gid=0) as c, c.open("by-root", "wb") as f:
        f.write(b"x")
    st = (data / "by-root").stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534)


def test_nfs_client_outside_access_list_refused(ganesha):
    svc, data, port, start = ganesha
    svc.stop()
    svc2 = start(clients=[ClientRule("127.0.0.2/32")])
    with running(svc2):
        with pytest.raises(nfs_rs.NfsError):
            with nfs_client(port) as c, c.open("nope", "wb") as f:
                f.write(b"x")
    assert not (data / "nope").exists()


def test_nfs_read_only_export(ganesha):
    svc, data, port, start = ganesha
    (data / "existing").write_bytes(b"keep")
    svc.stop()
    with running(start(read_only=True)):
        with nfs_client(port) as c:
            with c.open("existing", "rb") as f:
                assert f.read() == b"keep"
            with pytest.raises(nfs_rs.NfsError):
                with c.open("new", "wb") as f:
                    f.write(b"x")
    assert not (data / "new").exists()


def test_ganesha_sigkill_noticed_and_restarted(ganesha):
    svc, data, port, _ = ganesha
    with nfs_client(port) as c, c.open("before", "wb") as f:
        f.write(b"1")
    first = svc.pid
    assert not svc.restart_if_dead()
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while svc.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not svc.alive() and not svc.healthy()
    assert svc.restart_if_dead()
    assert svc.alive() and svc.pid != first and svc.healthy()
    with nfs_client(port) as c:
        with c.open("before", "rb") as f:
            assert f.read() == b"1"
        with c.open("after", "wb") as f:
            f.write(b"2")
    assert (data / "after").read_bytes() == b"2"


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0", "::1", "2001:db8::/64", "127.0.0.1"])
def test_ganesha_starts_with_every_client_form_sofs_accepts(cidr):
    """Each form passes validation and Ganesha reads it (it used to refuse 0.0.0.0/0, which
    sofs's own error text suggests, and single IPv6 addresses, after they were saved)."""
    need_root_and("ganesha.nfsd")
    with scratch_dir("sofs-nfs-") as root:
        (root / "data").mkdir()
        export = NfsExport(volume="vol1", volume_uuid=str(uuid.uuid4()), mountpoint=root / "data",
                           clients=[ClientRule(cidr)], nfs_port=free_port(), bind="127.0.0.1",
                           graceless=True)
        svc = ganesha_service(write_ganesha_config(export, root / "run"), root / "run")
        with running(svc):
            assert svc.alive() and svc.healthy()


def test_ganesha_bad_config_fails_start(tmp_path):
    need_root_and("ganesha.nfsd")
    conf = tmp_path / "ganesha.conf"
    port = free_port()
    conf.write_text(
        f"NFS_CORE_PARAM {{ Bind_Addr = 127.0.0.1; NFS_Port = {port}; Protocols = 4; "
        "Enable_UDP = false; Enable_NLM = false; Enable_RQUOTA = false; }\n"
        'EXPORT { Export_Id = 1; Path = "/tmp"; Pseudo = "/x"; CLIENT { Clients = "bad"; } '
        "FSAL { Name = VFS; } }\n"
    )
    svc = ganesha_service(conf, tmp_path)
    try:
        with pytest.raises(ExportError, match="rejected its configuration"):
            svc.start()
        assert not svc.alive()
    finally:
        svc.stop()


# --- Samba ---------------------------------------------------------------------------------

SMB_USER = SmbUser("sofstest-smb1", "Corr3ct-Horse", 61901, 61901)
SMB_OTHER = SmbUser("sofstest-smb2", "An0ther-pw", 61902, 61902)


@pytest.fixture
def smbd():
    """smbd sharing a scratch directory as 'vol1' to SMB_USER only (SMB_OTHER exists too)."""
    need_root_and("smbd", "smbpasswd", "useradd")
    created = []
    try:
        with scratch_dir("sofs-smb-") as root:
            data = root / "data"
            data.mkdir()
            os.chown(data, SMB_USER.uid, SMB_USER.gid)
            port = free_port()
            share = SmbShare("vol1", data, valid_users=[SMB_USER.name], port=port,
                             bind="127.0.0.1")
            conf = write_samba_config(share, root / "run")
            for u in (SMB_USER, SMB_OTHER):
                created.append(u.name)
            add_smb_users(conf, [SMB_USER, SMB_OTHER])
            svc = samba_service(conf, root / "run")
            with running(svc):
                yield svc, data, port
    finally:
        for name in created:
            remove_posix_user(name)


def pysmb_connect(port: int, user: str, password: str):
    conn = SMBConnection(user, password, "sofs-test", "SOFS", is_direct_tcp=True)
    ok = conn.connect("127.0.0.1", port, timeout=10)
    return conn, ok


def test_smb_pysmb_write_read(smbd):
    svc, data, port = smbd
    payload = os.urandom(200_000)
    conn, ok = pysmb_connect(port, SMB_USER.name, SMB_USER.password)
    assert ok
    try:
        conn.storeFile("vol1", "scan.dcm", io.BytesIO(payload))
        back = io.BytesIO()
        conn.retrieveFile("vol1", "scan.dcm", back)
        assert back.getvalue() == payload
        assert "scan.dcm" in [f.filename for f in conn.listPath("vol1", "/")]
    finally:
        conn.close()
    st = (data / "scan.dcm").stat()
    assert (st.st_uid, st.st_gid) == (SMB_USER.uid, SMB_USER.gid)
    assert (data / "scan.dcm").read_bytes() == payload
    assert "user.DOSATTRIB" in os.listxattr(data / "scan.dcm")


def test_smb_wrong_password_and_other_user_refused(smbd):
    svc, data, port = smbd
    conn, ok = pysmb_connect(port, SMB_USER.name, "wrong-password")
    conn.close()
    assert not ok
    # a valid Samba user who is not in 'valid users' logs in but cannot use the share
    conn, ok = pysmb_connect(port, SMB_OTHER.name, SMB_OTHER.password)
    try:
        assert ok
        with pytest.raises(OperationFailure):
            conn.storeFile("vol1", "intruder", io.BytesIO(b"x"))
    finally:
        conn.close()
    assert not (data / "intruder").exists()


def test_smb_smbprotocol_smb3(smbd):
    svc, data, port = smbd
    server = "127.0.0.1"
    try:
        smbclient.register_session(server, username=SMB_USER.name,
                                   password=SMB_USER.password, port=port)
        path = rf"\\{server}\vol1\smb3.bin"
        with smbclient.open_file(path, mode="wb", port=port) as f:
            f.write(b"over smb3" * 1000)
        with smbclient.open_file(path, mode="rb", port=port) as f:
            assert f.read() == b"over smb3" * 1000
        with pytest.raises(SMBException):
            smbclient.register_session(server, username=SMB_USER.name, password="bad",
                                       port=port, connection_cache={})
    finally:
        smbclient.reset_connection_cache()
    assert (data / "smb3.bin").read_bytes() == b"over smb3" * 1000


def test_smbd_sigkill_noticed_and_restarted(smbd):
    svc, data, port = smbd
    first = svc.pid
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while svc.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not svc.alive()
    assert svc.restart_if_dead()
    conn, ok = pysmb_connect(port, SMB_USER.name, SMB_USER.password)
    try:
        assert ok
        conn.storeFile("vol1", "after", io.BytesIO(b"2"))
    finally:
        conn.close()
    assert (data / "after").read_bytes() == b"2"
