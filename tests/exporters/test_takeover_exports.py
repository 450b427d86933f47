"""A volume taken over on another host is exported there again (issue 13), with real etcd,
real nodes, real FUSE mounts, a real Ganesha and a real smbd: host a exports the volume over
NFS and SMB and dies whole; ``sofsctl volume takeover`` on host b starts both exports recorded
in etcd, with the SMB user's password entry. In the exporters package: it shares the host's
rpcbind, Samba state and test users with the other export tests (one xdist unit)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess

import pytest

from tests.etcdnet import etcd_cluster, kill_and_unmount, mount_pid, wait_until, write_synced
from tests.fuse_mount.conftest import needs_fuse
from tests.netcluster import sofsctl

pytestmark = [pytest.mark.integration, needs_fuse,
              pytest.mark.skipif(shutil.which("etcd") is None,
                                 reason="etcd not installed (scripts/install)")]

TTL = 3




SMB_USER = ("sofstest-tk", 61951, "T4keover-Pass:1")  # an identity of this test's own


def test_a_volume_taken_over_is_exported_again(tmp_path):
    """Host a exports the volume over NFS and SMB and dies whole (mount, export supervisors,
    Ganesha and smbd killed); the takeover on host b starts both exports recorded in etcd:
    an NFS client and the SMB user, with the password given on host a, read there what host
    a acknowledged."""
    nfs_rs = pytest.importorskip("nfs_rs")
    from smb.SMBConnection import SMBConnection

    for binary in ("ganesha.nfsd", "smbd", "pdbedit"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} not installed (scripts/install)")
    from .helpers import free_port, scratch_dir

    mounts, pids = [], []
    nfs_port, smb_port = free_port(), free_port()
    name, uid, password = SMB_USER
    # a short, world-traversable root: Samba's user must reach the mounts, and smbd's sockets
    # under the export's run directory must fit a unix socket path (108 bytes), which
    # pytest's tmp_path under an xdist worker does not leave room for
    with scratch_dir("sofs-tk-") as scratch, \
            etcd_cluster(scratch / "c", nodes=3, disks=1) as (_, client, net):
        try:
            a, b = net.client_dir("a"), net.client_dir("b")
            mnt = {h: scratch / f"mnt-{h}" for h in "ab"}
            for m in mnt.values():
                m.mkdir()
            sofsctl(a, "volume", "create", "pacs", "--cos", "2")
            sofsctl(a, "mount", "pacs", str(mnt["a"]), "--lease-ttl", str(TTL))
            mounts.append(mnt["a"])
            pids.append(mount_pid(a))
            sofsctl(a, "export", "nfs", "pacs", "--clients", "127.0.0.1/32:rw", "--bind",
                    "127.0.0.1", "--port", str(nfs_port), "--grace", "0")
            pw = tmp_path / "smb.pw"
            pw.write_text(f"{name}:{password}\n")
            pw.chmod(0o600)
            sofsctl(a, "export", "smb", "pacs", "--user", f"{name}:{uid}", "--password-file",
                    str(pw), "--bind", "127.0.0.1", "--port", str(smb_port))
            data = os.urandom(70_000)
            write_synced(mnt["a"] / "study.dcm", data)
            os.chmod(mnt["a"] / "study.dcm", 0o644)
            for listed in json.loads(sofsctl(a, "export", "list", "--json").stdout):
                pids += [listed["pid"], listed["service_pid"]]
            for pid in pids:  # host a dies whole
                os.kill(pid, signal.SIGKILL)
            os.system(f"fusermount3 -u -z {mnt['a']} 2>/dev/null")
            mounts.remove(mnt["a"])
            for port in (nfs_port, smb_port):
                wait_until(lambda port=port: _port_free(port), "host a's ports to close", 30)

            res = sofsctl(b, "volume", "takeover", "pacs", str(mnt["b"]), "--wait", "30")
            mounts.append(mnt["b"])
            pids.append(mount_pid(b))
            assert f"exported over NFS on 127.0.0.1 port {nfs_port}" in res.stdout, res
            assert f"exported over SMB on 127.0.0.1 port {smb_port}" in res.stdout, res.stderr
            c = nfs_rs.Client.connect(f"nfs://127.0.0.1:{nfs_port}/pacs?version=4.1", uid=0,
                                      gid=0, connect_timeout=10, operation_timeout=30)
            with c.open("study.dcm", "rb") as f:
                assert f.read() == data
            conn = SMBConnection(name, password, "sofs-test", "SOFS", is_direct_tcp=True)
            assert conn.connect("127.0.0.1", smb_port, timeout=30)
            try:
                buf = io.BytesIO()
                conn.retrieveFile("pacs", "study.dcm", buf)
                assert buf.getvalue() == data
            finally:
                conn.close()
            wrong = SMBConnection(name, "not-the-password", "sofs-test", "SOFS",
                                  is_direct_tcp=True)
            try:
                let_in = wrong.connect("127.0.0.1", smb_port, timeout=30)
            except Exception:  # pysmb raises on a refused session setup (NotConnectedError)
                let_in = False
            assert not let_in
            sofsctl(b, "umount", str(mnt["b"]))  # stops the exports first
            mounts.remove(mnt["b"])
            sofsctl(b, "export", "remove", "pacs")
            cid = json.loads((b / "clustermap.json").read_text())["cluster_id"]
            assert client.get_prefix(f"/sofs/{cid}/exports/".encode()) == []
        finally:
            kill_and_unmount(pids, mounts)
            subprocess.run(["userdel", name], capture_output=True)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0
