"""``sofsctl export``: real supervisors, NFS-Ganesha and smbd re-exporting a real sofs FUSE mount.

Each integration test gets its own environment (exportenv's ``env`` fixture): a local ring and a
volume under /tmp (traversable by the SMB user), mounted through sofsctl, exported here with the
real CLI on 127.0.0.1 and free high ports, and everything stopped by pid in its cleanup
(supervisors, servers and their helpers, the mount), even when the test failed. The commands run
as real processes, so the supervisors are real detached processes too. Bad input and the
supervisor's restart bookkeeping are tested in-process.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path

import nfs_rs
import pytest
from click.testing import CliRunner

from exporters import exportconfig, exportmount, exportspec, registry
from exporters.service import tcp_port_answers
from sofsctl.exports import export
from tests.fuse_mount.conftest import Archive, needs_fuse

from .clients import pysmb_conn, pysmb_read
from .exportenv import SMB_USER, pid_alive, sofsctl, wait_for
from .helpers import free_port


def nfs_client(port: int):
    return nfs_rs.Client.connect(f"nfs://127.0.0.1:{port}/vol?version=4.1", uid=1000, gid=1000,
                                 connect_timeout=10, operation_timeout=30)


def list_rows(data: Path) -> dict[str, list[str]]:
    out = sofsctl(data, "export", "list").stdout.splitlines()
    assert out[0].split()[:8] == ["VOLUME", "KIND", "PORT", "STATE", "PID", "SERVER-PID",
                                  "RESTARTS", "CLIENTS/USERS"]
    return {line.split()[1]: line.split() for line in out[1:] if line.startswith("vol ")}


# --- integration: real mount, real servers -----------------------------------------------------



@pytest.mark.integration
@needs_fuse
def test_cross_protocol_list_crash_restart_and_stop(env):
    t0 = time.monotonic()
    out = env.export_nfs().stdout
    assert f"exported over NFS on 127.0.0.1 port {env.nfs_port}" in out
    out = env.export_smb().stdout
    assert f"exported over SMB on 127.0.0.1 port {env.smb_port}" in out
    print(f"\nboth exports up in {time.monotonic() - t0:.1f} s")

    # a second export of the same kind is refused while the first runs
    res = sofsctl(env.data, "export", "nfs", "vol", "--clients", "127.0.0.1", "--port",
                  str(free_port()), check=False)
    assert res.returncode == 1 and "already exported" in res.stderr

    # the pinned filesystem id of the volume is in Ganesha's config
    conf = (exportconfig.run_dir(registry.export_dir(env.data, "vol", "nfs")) / "ganesha.conf")
    from exporters.ganesha import filesystem_id
    from sofs.volume import load_volume
    major, minor = filesystem_id(load_volume(env.data, "vol").uuid)
    assert f"Filesystem_id = {major}.{minor};" in conf.read_text()

    from_nfs = os.urandom(300_000)
    from_smb = os.urandom(200_000)
    from_fuse = b"written through the FUSE mount\n" * 100
    with nfs_client(env.nfs_port) as c:
        c.mkdir("study")
        c.mkdir("study/series")
        c.touch("study/series/img1.dcm")
        with c.open("study/from-nfs.bin", "wb") as f:
            f.write(from_nfs)
        series_fh = next(e.fh for e in c.scandir("study") if e.name == "series")
    assert series_fh
    with pysmb_conn(env.smb_port, SMB_USER) as conn:
        assert pysmb_read(conn, "study/from-nfs.bin") == from_nfs
        conn.storeFile("vol", "study/from-smb.bin", io.BytesIO(from_smb))
    (env.archive.mnt / "study" / "from-fuse.txt").write_bytes(from_fuse)
    assert (env.archive.mnt / "study" / "from-nfs.bin").read_bytes() == from_nfs
    assert (env.archive.mnt / "study" / "from-smb.bin").read_bytes() == from_smb
    with nfs_client(env.nfs_port) as c:
        with c.open("study/from-smb.bin", "rb") as f:
            assert f.read() == from_smb
        with c.open("study/from-fuse.txt", "rb") as f:
            assert f.read() == from_fuse
        assert sorted(c.listdir("study")) == ["from-fuse.txt", "from-nfs.bin", "from-smb.bin",
                                              "series"]
    with pysmb_conn(env.smb_port, SMB_USER) as conn:
        assert pysmb_read(conn, "study/from-fuse.txt") == from_fuse

    rows = list_rows(env.data)
    nfs_st, smb_st = env.state("nfs"), env.state("smb")
    assert rows["nfs"][2:8] == [str(env.nfs_port), "running", str(nfs_st.pid),
                                str(nfs_st.service_pid), "0", "127.0.0.1/32:rw"]
    assert rows["smb"][2:8] == [str(env.smb_port), "running", str(smb_st.pid),
                                str(smb_st.service_pid), "0", SMB_USER.name]

    full = {e["kind"]: e for e in json.loads(sofsctl(env.data, "export", "list", "--json").stdout)}
    assert full["nfs"]["service_pid"] == nfs_st.service_pid
    assert full["smb"]["mountpoint"] == os.path.realpath(env.archive.mnt)

    # kill -9 ganesha: its supervisor notices and restarts it; the data is still there
    t1 = time.monotonic()
    old = nfs_st.service_pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    st = wait_for(lambda: (lambda s: s if s.restarts == 1 and s.state == "running"
                          and s.service_pid not in (None, old) else None)(env.state("nfs")),
                  40, "the supervisor to restart ganesha")
    assert pid_alive(st.service_pid) and st.pid == nfs_st.pid
    wait_for(lambda: tcp_port_answers("127.0.0.1", env.nfs_port), 10, "the NFS port")
    with nfs_client(env.nfs_port) as c:
        with c.open("study/from-nfs.bin", "rb") as f:
            assert f.read() == from_nfs
        with c.open("study/after-restart", "wb") as f:
            f.write(b"after")
    assert (env.archive.mnt / "study" / "after-restart").read_bytes() == b"after"
    print(f"ganesha restarted and serving again in {time.monotonic() - t1:.1f} s")
    assert list_rows(env.data)["nfs"][6] == "1"
    log = (env.data / "log" / "export-vol-nfs.log").read_text()
    assert "nfs-ganesha died" in log and "restart 1" in log

    # export stop: both supervisors and servers gone, ports closed, the mount still serves
    t2 = time.monotonic()
    out = sofsctl(env.data, "export", "stop", "vol").stdout
    print(f"export stop took {time.monotonic() - t2:.1f} s")
    assert "stopped the nfs export of vol" in out and "stopped the smb export of vol" in out
    assert "still running" not in out and "warning" not in out
    for kind, port in (("nfs", env.nfs_port), ("smb", env.smb_port)):
        st = env.state(kind)
        assert st.state == "stopped"
        assert not tcp_port_answers("127.0.0.1", port, timeout=0.5)
    assert not any(pid_alive(p) for p in env.pids), env.pids
    rows = list_rows(env.data)
    assert rows["nfs"][3] == "stopped" and rows["smb"][3] == "stopped"
    assert (env.archive.mnt / "study" / "from-smb.bin").read_bytes() == from_smb

    # a saved export starts again as configured (the SMB password is kept)
    out = sofsctl(env.data, "export", "start", "vol", "--kind", "smb").stdout
    assert "exported over SMB" in out
    env.state("smb")
    with pysmb_conn(env.smb_port, SMB_USER) as conn:
        assert pysmb_read(conn, "study/after-restart") == b"after"
    # a supervisor killed with SIGKILL: `export list` says so and stop still stops its smbd
    st = env.state("smb")
    assert st.pid is not None
    os.kill(st.pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(st.pid), 10, "the supervisor to die")
    row = list_rows(env.data)["smb"]
    assert row[3] == "dead" and row[5] == str(st.service_pid), row
    # the integrator's hook for `sofsctl umount`
    assert registry.stop_exports(env.data, "vol") == [
        f"stopped the smb export of vol: its supervisor was gone, smbd (pid "
        f"{st.service_pid}) still ran"]
    assert not pid_alive(st.service_pid)
    assert not tcp_port_answers("127.0.0.1", env.smb_port, timeout=0.5)
    env.archive.umount()  # not busy: nothing exports it any more

    # remount + a new Ganesha: a directory handle from before still works (the pinned
    # Filesystem_id, and the volume's persistent inode numbers)
    env.archive.mount()
    out = sofsctl(env.data, "export", "start", "vol").stdout
    assert "exported over NFS" in out and "exported over SMB" in out
    env.state("nfs"), env.state("smb")
    from nfs_rs import DirectoryRef
    with nfs_client(env.nfs_port) as c:
        names = [e.name for e in c.scandir(DirectoryRef("study/series", fh=series_fh))]
    assert names == ["img1.dcm"]
    assert len(registry.stop_exports(env.data, "vol")) == 2
    print(f"whole test {time.monotonic() - t0:.1f} s")


@pytest.mark.integration
@needs_fuse
def test_mount_death_stops_the_exports_cleanly(env):
    env.export_nfs()
    env.export_smb()
    with nfs_client(env.nfs_port) as c, c.open("kept", "wb") as f:
        f.write(b"closed before the crash")
    sups = {k: env.state(k) for k in exportspec.KINDS}
    mount_pid = json.loads((env.data / "run" / "mounts" / "vol.json").read_text())["pid"]

    t0 = time.monotonic()
    os.kill(mount_pid, signal.SIGKILL)
    for kind, st in sups.items():
        wait_for(lambda pid=st.pid: not pid_alive(pid), 30, f"the {kind} supervisor to exit")
    print(f"\nboth exports stopped {time.monotonic() - t0:.1f} s after the mount died")
    for kind, port in (("nfs", env.nfs_port), ("smb", env.smb_port)):
        st = env.state(kind)
        assert st.state == "mount-gone", st
        assert not pid_alive(sups[kind].service_pid)
        assert not tcp_port_answers("127.0.0.1", port, timeout=0.5)
        log = (env.data / "log" / f"export-vol-{kind}.log").read_text()
        assert "the FUSE mount of volume vol is gone" in log
        assert f"the mount process (pid {mount_pid}) is gone" in log
    rows = list_rows(env.data)
    assert rows["nfs"][3] == "mount-gone" and rows["smb"][3] == "mount-gone"

    # nothing can reach the mount point: clients are refused, nothing lands underneath
    with pytest.raises(nfs_rs.NfsError):
        with nfs_client(env.nfs_port) as c, c.open("lost", "wb") as f:
            f.write(b"x")
    sofsctl(env.data, "umount", str(env.archive.mnt))
    assert os.listdir(env.archive.mnt) == []
    # and exporting an unmounted volume is refused
    res = sofsctl(env.data, "export", "start", "vol", check=False)
    assert res.returncode == 1 and "not mounted" in res.stderr
    res = sofsctl(env.data, "export", "nfs", "vol", "--clients", "127.0.0.1",
                  "--port", str(env.nfs_port), check=False)
    assert res.returncode == 1 and "vol is not mounted" in res.stderr
    # data closed before the crash is there after a remount
    env.archive.mount()
    assert (env.archive.mnt / "kept").read_bytes() == b"closed before the crash"


def test_an_export_that_cannot_start_leaves_nothing_saved(env, monkeypatch):
    edir = registry.export_dir(env.data, "vol", "nfs")
    # an address of another host: refused before anything is written (a connect-based check
    # could be answered by something on the way and call the port "in use")
    res = sofsctl(env.data, "export", "nfs", "vol", "--clients", "127.0.0.1",
                  "--bind", "192.0.2.1", "--port", str(env.nfs_port), check=False)
    assert res.returncode == 1 and "192.0.2.1 is not an address of this host" in res.stderr
    assert not (edir / "spec.json").exists()
    # a server that fails after the checks: a first export is not kept half-made
    def refuse(*args, **kw):
        raise registry.ExportError("NFS-Ganesha rejected its configuration: (test)")
    monkeypatch.setattr(registry, "start_supervisor", refuse)
    spec = exportspec.ExportSpec(kind="nfs", volume="vol", options=exportspec.NfsOptions(
        clients=(exportspec.NfsClient("127.0.0.1/32", "RW"),), port=env.nfs_port,
        bind="127.0.0.1", grace=0))
    with pytest.raises(registry.ExportError, match="rejected"):
        registry.create_export(env.data, spec)
    assert not (edir / "spec.json").exists() and not (edir / "state.json").exists()
    assert registry.list_exports(env.data) == []


# --- bad input, no servers (CliRunner, in-process) ---------------------------------------------

@pytest.fixture(scope="module")
def unmounted(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-cli")
    return Archive(root)


@pytest.mark.parametrize("args, message", [
    (["nfs", "vol", "--clients", "10.1.2.3/8"], "host bits set"),
    (["nfs", "vol", "--clients", "nonsense:rw"], "invalid client network"),
    (["nfs", "vol", "--clients", "10.0.0.0/8", "--bind", "eth0"], "invalid bind address"),
    (["nfs", "vol", "--clients", "10.0.0.0/8", "--mount-port", "2050"], "only used with --v3"),
    (["nfs", "vol", "--clients", "10.0.0.0/8", "--attr-cache", "4000"], "Invalid value"),
    (["nfs", "novol", "--clients", "10.0.0.0/8"], "no volume named 'novol'"),
    (["nfs", "bad/name", "--clients", "10.0.0.0/8"], "invalid volume name"),
    (["nfs", "vol"], "Missing option '--clients'"),
    (["nfs", "vol", "--clients", "10.0.0.0/8"], "vol is not mounted"),
    (["smb", "vol", "--user", "Bad Name"], "invalid user name"),
    (["smb", "vol", "--user", "sofstest-nosuchuser"], "give sofstest-nosuchuser:UID"),
    (["smb", "vol", "--user", "root"], "uid 0"),
    (["smb", "vol", "--user", "x:0", "--password-file", "/dev/null"], "not root"),
    (["smb", "vol", "--user", "sofstest-a:61990", "--min-protocol", "NT1"], "Invalid value"),
    (["stop", "vol"], "vol has no export"),
    (["start", "vol", "--kind", "nfs"], "no saved nfs export"),
])
def test_bad_input_is_refused_with_a_reason(unmounted, args, message):
    res = CliRunner().invoke(export, args, obj=unmounted.data)
    assert res.exit_code in (1, 2), res.output
    assert message in res.output, res.output
    assert not (unmounted.data / "exports").exists() or not any(
        (unmounted.data / "exports").iterdir())


def test_password_file_formats(tmp_path):
    from sofsctl.exports import _read_passwords
    one = tmp_path / "one"
    one.write_text("pass:with:colons\n")
    assert _read_passwords(["alice"], str(one)) == {"alice": "pass:with:colons"}
    many = tmp_path / "many"
    many.write_text("alice:a:1\nbob:b2\n")
    assert _read_passwords(["alice", "bob"], str(many)) == {"alice": "a:1", "bob": "b2"}
    with pytest.raises(Exception, match="no NAME:PASSWORD line for carol"):
        _read_passwords(["alice", "carol"], str(many))


def test_parse_client():
    rule = exportspec.NfsClient
    assert exportspec.parse_client("10.0.0.0/8") == rule("10.0.0.0/8", "RW")
    assert exportspec.parse_client("10.0.0.0/8", read_only=True) == rule("10.0.0.0/8", "RO")
    assert exportspec.parse_client("10.1.2.3:ro") == rule("10.1.2.3", "RO")
    assert exportspec.parse_client("2001:db8::/32:RW") == rule("2001:db8::/32", "RW")
    assert exportspec.parse_client("2001:db8::1") == rule("2001:db8::1", "RW")
    assert exportspec.parse_client("192.168.0.0/16:none") == rule("192.168.0.0/16", "None")


# --- the supervisor's restart bookkeeping, with a stand-in service ------------------------------

class FakeService:
    def __init__(self, tmp_path: Path, fail_starts: bool = False) -> None:
        self.pid = 4242
        self.logfile = tmp_path / "svc.log"
        self.restarted = 0
        self.stopped = 0
        self.fail_starts = fail_starts

    def restart_if_dead(self) -> bool:
        from exporters.errors import ExportError
        if self.fail_starts:
            raise ExportError("exited with status 2 while starting")
        self.restarted += 1
        return True

    def stop(self) -> bool:
        self.stopped += 1
        return True


def make_supervisor(tmp_path, monkeypatch, gone=None, **kw):
    from exporters.supervisor import Supervisor
    sup = Supervisor(tmp_path / "data", tmp_path, **kw)
    sup.spec = exportspec.ExportSpec("nfs", "vol", exportspec.NfsOptions())
    sup.mount = exportmount.MountRef("vol", 1, 1, "/mnt/x", 7, "fuse.sofs", "sofs:vol")
    sup.service = FakeService(tmp_path)
    monkeypatch.setattr(exportmount, "mount_gone", lambda ref: gone)
    return sup


def test_supervisor_gives_up_after_too_many_restarts(tmp_path, monkeypatch):
    sup = make_supervisor(tmp_path, monkeypatch, max_restarts=5, window_s=60)
    for i in range(5):
        assert sup._restart("it died") is None
        assert registry.read_state(tmp_path).restarts == i + 1
    assert sup.service.restarted == 5
    assert sup._restart("it died") == 1  # the 6th within 60 s
    st = registry.read_state(tmp_path)
    assert st.state == "failed" and "giving up" in st.message
    assert sup.service.stopped == 1 and sup.service.restarted == 5


def test_supervisor_restarts_spread_out_are_fine(tmp_path, monkeypatch):
    sup = make_supervisor(tmp_path, monkeypatch, max_restarts=2, window_s=0.01)
    for _ in range(5):
        time.sleep(0.02)
        assert sup._restart("it died") is None
    assert sup.service.restarted == 5


def test_supervisor_never_restarts_onto_a_gone_mount(tmp_path, monkeypatch):
    sup = make_supervisor(tmp_path, monkeypatch, gone="the mount process (pid 1) is gone")
    assert sup._restart("it died") == 3
    assert sup.service.restarted == 0 and sup.service.stopped == 1
    assert registry.read_state(tmp_path).state == "mount-gone"


def test_supervisor_failed_restart_is_retried_later(tmp_path, monkeypatch):
    sup = make_supervisor(tmp_path, monkeypatch)
    sup.service.fail_starts = True
    assert sup._restart("it died") is None
    st = registry.read_state(tmp_path)
    assert st.state == "restarting" and "restart failed" in st.message
