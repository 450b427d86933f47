"""The supervisor's protocol-level health probes (exporters.probe).

Integration tests use exportenv's ``env`` fixture (a real sofs FUSE mount, real supervisors,
Ganesha and smbd on 127.0.0.1 and free high ports, everything stopped by pid in its cleanup). The
probe interval is shortened through SOFS_EXPORT_PROBE_INTERVAL, inherited by the supervisors.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
from smb.smb_structs import OperationFailure

from exporters import exportconfig, exportspec, probe, registry, service
from exporters.errors import ExportError
from exporters.exportstate import ExportState
from exporters.ganesha import ClientRule
from tests.fuse_mount.conftest import needs_fuse

from .clients import pysmb_conn
from .exportenv import SMB_USER, pid_alive, sofsctl, wait_for

# --- units -------------------------------------------------------------------------------------


def test_prober_bounds_a_hanging_probe():
    release = __import__("threading").Event()
    p = probe.Prober(timeout=0.3)
    t0 = time.monotonic()
    res = p.run(lambda: release.wait(30) and "late")
    assert not res.ok and res.counts and "no answer within 0.3 s" in res.message
    assert time.monotonic() - t0 < 1.0
    # while it still hangs, no second one starts; each attempt fails and counts
    res = p.run(lambda: "ok")
    assert not res.ok and res.counts and "still hanging" in res.message
    release.set()
    p._thread.join(2)
    res = p.run(lambda: "fine")
    assert res.ok and res.message == "fine"


def test_prober_failure_kinds_and_stop():
    p = probe.Prober(timeout=5)

    def refused():
        raise probe.ProbeFailure("access denied", counts=False)

    res = p.run(refused)
    assert not res.ok and not res.counts and res.message == "access denied"
    res = p.run(lambda: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    assert not res.ok and res.counts and "Input/output error" in res.message
    t0 = time.monotonic()
    res = p.run(lambda: time.sleep(3) or "x", stop=lambda: True)
    assert not res.ok and "stopping" in res.message and time.monotonic() - t0 < 1


def test_nfs_probe_with_nothing_listening_counts():
    from .helpers import free_port
    t0 = time.monotonic()
    with pytest.raises(probe.ProbeFailure) as ei:
        probe.nfs_probe("127.0.0.1", free_port(), "vol", timeout=2)
    assert ei.value.counts and time.monotonic() - t0 < 10


def test_probe_client_rule():
    rule = exportconfig._probe_client_rule
    assert rule("127.0.0.1", [ClientRule("127.0.0.1/32", "RW")], False) is None
    assert rule("0.0.0.0", [ClientRule("127.0.0.0/8", "None")], False) is None  # admin decides
    assert rule("0.0.0.0", [ClientRule("10.0.0.0/8", "RW")], False) == ClientRule(
        "127.0.0.1/32", "RW", squash="all_squash")
    assert rule("10.1.2.3", [ClientRule("10.9.0.0/16", "RW")], True) == ClientRule(
        "10.1.2.3/32", "RO", squash="all_squash")
    assert rule("::", [], False) == ClientRule("::1/128", "RW", squash="all_squash")


def test_smb_share_lets_the_probe_account_in_and_nobody_can_take_its_name(tmp_path):
    spec = exportspec.ExportSpec("smb", "vol", exportspec.SmbOptions(
        users=(exportspec.SmbAccount("alice", 2001, 2001),)))
    assert exportconfig.smb_share_of(spec, "/mnt/x").valid_users == ["alice", probe.PROBE_USER]
    with pytest.raises(ExportError, match="reserved"):
        exportspec.resolve_smb_user(f"{probe.PROBE_USER}:3000")


def test_smb_probe_share_is_hidden_and_only_for_the_probe(tmp_path):
    from exporters.samba import render_samba_config
    spec = exportspec.ExportSpec("smb", "vol", exportspec.SmbOptions(
        read_only=True, users=(exportspec.SmbAccount("alice", 2001, 2001),)))
    main, hidden = exportconfig.smb_shares_of(spec, "/mnt/x")
    assert main.name in ("", "vol") and main.browseable and main.path == Path("/mnt/x")
    assert hidden.name == "vol-probe$" == probe.smb_probe_share("vol")
    assert hidden.path == Path("/mnt/x") / probe.SMB_PROBE_DIR
    assert hidden.valid_users == [probe.PROBE_USER] and not hidden.browseable
    assert hidden.read_only  # like the export
    conf = render_samba_config([main, hidden], tmp_path)
    sections = conf.split("\n[")
    probe_section = next(x for x in sections if x.startswith("vol-probe$]"))
    assert "browseable = no" in probe_section
    assert f"valid users = {probe.PROBE_USER}\n" in probe_section
    assert "path = /mnt/x/.sofs-probe-smb" in probe_section
    vol_section = next(x for x in sections if x.startswith("vol]"))
    assert "veto files = /lost+found/.sofs*/" in vol_section  # the probe dir is hidden there
    # an everyone-may-connect export still keeps its probe share to the probe account
    open_spec = exportspec.ExportSpec("smb", "vol", exportspec.SmbOptions())
    assert exportconfig.smb_shares_of(open_spec, "/m")[1].valid_users == [probe.PROBE_USER]


def test_probe_password_file_is_private_and_stable(tmp_path):
    pw = probe.probe_password(tmp_path)
    path = tmp_path / probe.PROBE_PASSWORD_FILE
    assert len(pw) >= 24 and path.stat().st_mode & 0o777 == 0o600
    assert probe.probe_password(tmp_path) == pw


# --- integration -------------------------------------------------------------------------------

def _probed(env, kind: str, after: float = 0.0) -> ExportState | None:
    st = env.state(kind)
    return st if (st.probe_at or 0) > after and st.probe_ok is not None else None


def _wedge_and_wait(env, kind: str, port: int, stopped: list[int]) -> ExportState:
    """SIGSTOP the KIND export's server (its port keeps answering: the kernel accepts), wait
    for the supervisor to replace it after 3 failed probes; the new state."""
    old = env.state(kind).service_pid
    t0 = time.monotonic()
    os.kill(old, signal.SIGSTOP)
    stopped.append(old)
    assert service.tcp_port_answers("127.0.0.1", port, timeout=1)
    st = wait_for(lambda: (lambda s: s if s.restarts == 1
                           and s.state == "running"
                           and s.service_pid not in (None, old)
                           and s.probe_ok is True else None)(env.state(kind)),
                  120, f"the supervisor to restart the wedged {kind} server", step=0.5)
    print(f"wedged {kind} server detected and replaced in {time.monotonic() - t0:.1f} s")
    assert not pid_alive(old)
    assert "health probe failed 3 times" in st.message
    return st


@pytest.mark.integration
@needs_fuse
def test_probes_pass_and_a_wedged_ganesha_is_restarted(env, monkeypatch):
    monkeypatch.setenv("SOFS_EXPORT_PROBE_INTERVAL", "3")
    stopped: list[int] = []
    try:
        t0 = time.monotonic()
        env.export_nfs()
        env.export_smb()
        print(f"\nexports up in {time.monotonic() - t0:.1f} s")
        # the probe after the start has already run when sofsctl returns
        nfs, smb = env.state("nfs"), env.state("smb")
        assert nfs.probe_ok is True, nfs
        assert "wrote, read back and removed .sofs-probe/nfs-probe" in nfs.probe_message
        assert smb.probe_ok is True, smb
        assert "listed share vol" in smb.probe_message
        assert (f"wrote, read back and removed smb-probe over SMB as {probe.PROBE_USER}"
                in smb.probe_message), smb
        full = {e["kind"]: e for e in
                json.loads(sofsctl(env.data, "export", "list", "--json").stdout)}
        assert full["nfs"]["probe_ok"] is True and full["nfs"]["probe_at"] > 0
        assert full["smb"]["probe_ok"] is True
        # the probe directory: through the mount, squashed root's, empty after the probe
        d = env.archive.mnt / probe.PROBE_DIR
        st = d.lstat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (65534, 65534, 0o700)
        assert os.listdir(d) == []
        # nobody lists it (F38): the mount leaves it out of its listing, which is what Ganesha
        # serves to NFS clients (nfs-rs cannot list an export's root here: NFS4ERR_BADNAME),
        # yet the probes reach it by name
        assert not any(n.startswith(".sofs") for n in os.listdir(env.archive.mnt))
        # SMB users do not see it (veto files); the probe password file is private
        edir = registry.export_dir(env.data, "vol", "smb")
        assert (edir / probe.PROBE_PASSWORD_FILE).stat().st_mode & 0o777 == 0o600
        assert probe.PROBE_USER in (exportconfig.run_dir(edir) / "smb.conf").read_text()
        # the SMB probe's directory: its account's, empty after the probe, and out of reach
        sd = env.archive.mnt / probe.SMB_PROBE_DIR
        st = sd.lstat()
        probe_uid = __import__("pwd").getpwnam(probe.PROBE_USER).pw_uid
        assert (st.st_uid, st.st_mode & 0o7777) == (probe_uid, 0o700)
        assert os.listdir(sd) == []
        with pysmb_conn(env.smb_port, SMB_USER) as c:
            shares = {sh.name for sh in c.listShares(timeout=10)}
            assert "vol" in shares and probe.smb_probe_share("vol") not in shares, shares
            names = {f.filename for f in c.listPath("vol", "/")}
            assert not any(n.startswith(".sofs") for n in names), names
            with pytest.raises(OperationFailure):  # not a valid user of the probe share
                c.listPath(probe.smb_probe_share("vol"), "/")
        # periodic probes keep running
        after = nfs.probe_at
        wait_for(lambda: _probed(env, "nfs", after), 20, "a periodic NFS probe")

        # wedge ganesha: SIGSTOP. The kernel still accepts TCP connections on its port, so only
        # the probe can tell; 3 failed probes restart it.
        st = _wedge_and_wait(env, "nfs", env.nfs_port, stopped)
        assert st.pid == nfs.pid
        log = (env.data / "log" / "export-vol-nfs.log").read_text()
        assert "health probe of nfs-ganesha" in log and "(3 of 3)" in log
        assert "restarted" in log
        print("\n".join(ln for ln in log.splitlines() if "probe" in ln or "restart" in ln))
        assert env.state("smb").restarts == 0

        # the same for a wedged smbd: its port answers, the probe's file round trip does not
        st = _wedge_and_wait(env, "smb", env.smb_port, stopped)
        assert "wrote, read back and removed smb-probe" in st.probe_message

        # a read-only SMB export: the probe reads the file the supervisor wrote in its share
        sofsctl(env.data, "export", "stop", "vol", "--kind", "smb")
        sofsctl(env.data, "export", "smb", "vol", "--ro", "--user",
                f"{SMB_USER.name}:{SMB_USER.uid}", "--password-file", str(env.pwfile),
                "--bind", "127.0.0.1", "--port", str(env.smb_port))
        ro = env.state("smb")
        assert ro.probe_ok is True, ro
        assert "read ro-probe" in ro.probe_message, ro
        assert (sd / probe.RO_PROBE_FILE).stat().st_uid == probe_uid

        # a read-only export: the probe reads the file the supervisor wrote through the mount
        sofsctl(env.data, "export", "stop", "vol", "--kind", "nfs")
        # (with Ganesha's attribute cache, which the probe works with too)
        sofsctl(env.data, "export", "nfs", "vol", "--clients", "127.0.0.1/32", "--ro",
                "--bind", "127.0.0.1", "--port", str(env.nfs_port), "--grace", "0",
                "--attr-cache", "2")
        ro = env.state("nfs")
        conf = exportconfig.run_dir(registry.export_dir(env.data, "vol", "nfs")) / "ganesha.conf"
        assert "Attr_Expiration_Time = 2;" in conf.read_text()
        assert ro.probe_ok is True, ro
        assert "read .sofs-probe/ro-probe over NFSv4.1" in ro.probe_message
        assert (d / probe.RO_PROBE_FILE).stat().st_uid == 65534

        # the administrator refuses the probe's own address: shown, but never restarted for
        sofsctl(env.data, "export", "stop", "vol", "--kind", "nfs")
        sofsctl(env.data, "export", "nfs", "vol", "--clients", "127.0.0.1/32:none",
                "--bind", "127.0.0.1", "--port", str(env.nfs_port), "--grace", "0")
        st = env.state("nfs")
        assert st.probe_ok is False and "refused" in st.probe_message, st
        t2 = time.monotonic()
        wait_for(lambda: _probed(env, "nfs", st.probe_at + 7), 40, "three more probes")
        st = env.state("nfs")
        assert st.restarts == 0 and st.state == "running" and st.probe_failures == 0
        print(f"refused probe: {st.probe_message} ({time.monotonic() - t2:.1f} s)")
        print(f"whole test {time.monotonic() - t0:.1f} s")
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
