"""What scripts/install puts on the host (sofsctl and sofs-node on the PATH, the man pages, the
systemd units) and the units themselves: systemd-analyze verify, the policies they must keep
(Type=notify, restarts, ordering, FUSE-safe hardening), the sofsctl commands they run, and
their command lines run for real with a NOTIFY_SOCKET, as systemd would run them."""

from __future__ import annotations

import errno
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import click
import pytest

from chunkstore.disk.store import DiskStore
from sofsctl.main import cli
from tests.fuse_mount.conftest import Archive, needs_fuse, sofsctl

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "scripts" / "systemd"
BIN = Path("/usr/local/bin")
UNIT_DIR = Path("/usr/local/lib/systemd/system")
MAN_DIR = Path("/usr/local/share/man")
UNIT_FILES = sorted(p for p in UNITS.iterdir() if p.suffix in (".service", ".target"))
INSTANCES = {"sofs-node@.service": "n1", "sofs-mount@.service": "pacs",
             "sofs-ringhost@.service": "var-lib-sofs",
             "sofs-export@.service": "pacs", "sofs-etcd@.service": "e1"}
PAGES = sorted(p for p in (ROOT / "man").iterdir() if re.fullmatch(r".+\.[1-9]", p.name))
# options that give a service a mount namespace of its own, where a FUSE mount is invisible
NAMESPACING = ("PrivateTmp", "PrivateDevices", "PrivateMounts", "ProtectSystem", "ProtectHome",
               "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
               "ProtectControlGroups", "ProtectProc", "ReadWritePaths", "ReadOnlyPaths",
               "InaccessiblePaths", "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths",
               "RootDirectory", "RootImage", "MountAPIVFS", "PrivateUsers")

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="scripts/install links the commands and "
                             "installs the man pages and units only as root")


# --- reading units ---------------------------------------------------------------------------

def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Section -> its (key, value) lines, in order (keys may repeat)."""
    out: dict[str, list[tuple[str, str]]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        out[section].append((key.strip(), value.strip()))
    return out


def values(unit: dict, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def words(unit: dict, section: str, key: str) -> list[str]:
    return [w for v in values(unit, section, key) for w in v.split()]


def expand(cmdline: str, env: dict[str, str], instance: str) -> list[str]:
    """A unit's command line as systemd runs it: %i, ``$VAR`` (split at white space),
    ``${VAR}`` (one word), ``$$`` (a dollar)."""
    cmdline = cmdline.lstrip("-@:+!").replace("%i", instance)
    argv: list[str] = []
    for word in shlex.split(cmdline):
        m = re.fullmatch(r"\$(\w+)", word)
        if m:
            argv += env.get(m[1], "").split()
            continue
        argv.append(re.sub(r"\$\$|\$\{(\w+)\}",
                           lambda m: "$" if m[0] == "$$" else env.get(m[1], ""), word))
    return argv


def unit(name: str) -> dict:
    return read_unit(UNITS / name)


# --- what scripts/install did ------------------------------------------------------------------

@as_root
@pytest.mark.parametrize("cmd", ["sofsctl", "sofs-node", "sofs-ringhost"])
def test_install_put_the_commands_on_the_path(cmd):
    found = shutil.which(cmd, path="/usr/local/bin:/usr/bin:/bin")
    assert found == str(BIN / cmd), f"scripts/install did not put {cmd} in {BIN}"
    assert os.path.realpath(found) == os.path.realpath(ROOT / ".venv" / "bin" / cmd)
    res = subprocess.run([cmd, "--help"], capture_output=True, text=True, timeout=60, cwd="/",
                         env=dict(os.environ, PATH="/usr/local/bin:/usr/bin:/bin"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.lower().startswith(f"usage: {cmd}")


@as_root
@pytest.mark.skipif(shutil.which("man") is None, reason="man (man-db) is not installed")
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_man_finds_the_installed_page(page):
    name, section = page.name.rsplit(".", 1)
    res = subprocess.run(["man", "-w", section, name], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, MANPATH=""))
    assert res.returncode == 0, f"man -w {section} {name}: {res.stderr}"
    assert Path(res.stdout.strip()).read_bytes() == page.read_bytes(), (
        f"man finds {res.stdout.strip()}, not the page of this tree: run scripts/install")


@as_root
@pytest.mark.parametrize("path", UNIT_FILES, ids=[p.name for p in UNIT_FILES])
def test_install_put_the_units_where_systemd_finds_them(path):
    assert (UNIT_DIR / path.name).read_bytes() == path.read_bytes()


@as_root
def test_install_again_changes_nothing_and_says_nothing():
    installed = [BIN / "sofsctl", BIN / "sofs-node", BIN / "sofs-ringhost",
                 *(MAN_DIR / f"man{p.suffix[1:]}" / p.name for p in PAGES),
                 *(UNIT_DIR / p.name for p in UNIT_FILES)]
    before = {p: os.lstat(p).st_mtime_ns for p in installed}
    res = subprocess.run([str(ROOT / "scripts" / "install")], capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout + res.stderr == ""
    assert {p: os.lstat(p).st_mtime_ns for p in installed} == before


# --- the units ---------------------------------------------------------------------------------

def _verifiable() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt install systemd)")
    missing = [str(BIN / c) for c in ("sofsctl", "sofs-node", "sofs-ringhost")
               if not os.access(BIN / c, os.X_OK)]
    if missing and os.geteuid() != 0:
        pytest.skip(f"verify needs the units' commands {missing}, which scripts/install makes "
                    "as root only")
    assert not missing, f"scripts/install did not make {missing}"


@pytest.mark.parametrize("path", UNIT_FILES, ids=[p.name for p in UNIT_FILES])
def test_systemd_analyze_verify(path):
    _verifiable()
    name = path.name.replace("@.", f"@{INSTANCES[path.name]}.") if "@." in path.name else path.name
    res = subprocess.run(["systemd-analyze", "verify", str(UNITS / name)], capture_output=True,
                         text=True, timeout=120)
    out = (res.stdout + res.stderr).strip()
    assert res.returncode == 0 and out == "", f"systemd-analyze verify {name}:\n{out}"


@pytest.mark.parametrize("name", ["sofs-node@.service", "sofs-mount@.service",
                                  "sofs-supervise.service"])
def test_daemons_are_type_notify_and_restarted(name):
    u = unit(name)
    assert values(u, "Service", "Type") == ["notify"]
    assert values(u, "Service", "NotifyAccess") == ["main"]
    assert values(u, "Service", "Restart") == ["on-failure"]
    assert values(u, "Service", "RestartSec")
    assert values(u, "Install", "WantedBy") == ["multi-user.target"]


@pytest.mark.parametrize("path", [p for p in UNIT_FILES if p.suffix == ".service"],
                         ids=[p.name for p in UNIT_FILES if p.suffix == ".service"])
def test_every_service_reads_etc_default_sofs_and_runs_installed_commands(path):
    u = read_unit(path)
    assert "-/etc/default/sofs" in values(u, "Service", "EnvironmentFile")
    assert values(u, "Service", "Restart") == ["on-failure"]
    assert values(u, "Unit", "StartLimitBurst"), "a unit that cannot start must give up"
    for key in ("ExecStart", "ExecStop"):
        for line in values(u, "Service", key):
            assert expand(line, {}, "x")[0] in (str(BIN / "sofsctl"), str(BIN / "sofs-node"),
                                                str(BIN / "sofs-ringhost"))


def test_node_waits_for_the_network_and_orders_before_the_mounts():
    u = unit("sofs-node@.service")
    assert "network-online.target" in words(u, "Unit", "After")
    assert "network-online.target" in words(u, "Unit", "Wants")
    assert "sofs-nodes.target" in words(u, "Unit", "Before")
    assert values(u, "Service", "KillMode") == ["mixed"] and values(u, "Service", "TimeoutStopSec")


def test_mount_after_the_nodes_of_its_host_and_time_to_flush():
    u = unit("sofs-mount@.service")
    assert "sofs-nodes.target" in words(u, "Unit", "After")
    assert "sofs-nodes.target" in words(u, "Unit", "Wants")
    assert "network-online.target" in words(u, "Unit", "After")
    assert values(u, "Service", "KillMode") == ["mixed"]
    stop = values(u, "Service", "TimeoutStopSec")
    assert stop and stop[0].endswith("min") and int(stop[0][:-3]) >= 5
    # one SIGTERM and nothing else: a second signal while it flushes would kill it
    assert values(u, "Service", "ExecStop") == []
    assert values(u, "Service", "KillSignal") in ([], ["SIGTERM"])


def test_mount_hardening_keeps_fuse_working():
    u = unit("sofs-mount@.service")
    keys = {k for k, _ in u["Service"]}
    assert not keys & set(NAMESPACING), (
        f"{sorted(keys & set(NAMESPACING))} give the mount a namespace of its own: the FUSE "
        "mount would be invisible to the host")
    devices = values(u, "Service", "DeviceAllow")
    if values(u, "Service", "DevicePolicy") != [] or devices:
        assert "/dev/fuse rw" in devices
    caps = words(u, "Service", "CapabilityBoundingSet")
    assert not caps or "CAP_SYS_ADMIN" in caps
    assert values(u, "Service", "NoNewPrivileges") == ["yes"]


def test_exports_follow_their_mount():
    u = unit("sofs-export@.service")
    assert values(u, "Unit", "BindsTo") == ["sofs-mount@%i.service"]
    assert "sofs-mount@%i.service" in words(u, "Unit", "After")
    assert values(u, "Install", "WantedBy") == ["sofs-mount@%i.service"]
    assert values(u, "Service", "Type") == ["oneshot"]
    assert values(u, "Service", "RemainAfterExit") == ["yes"]


def _sofsctl_calls() -> list[tuple[str, str, list[str]]]:
    """(unit, key, argv after 'sofsctl') of every sofsctl the units run."""
    calls = []
    for path in UNIT_FILES:
        for _section, lines in read_unit(path).items():
            for key, line in lines:
                for m in re.finditer(r"/usr/local/bin/sofsctl([^'\";|&]*)", line):
                    argv = [w for w in shlex.split(m[1]) if not w.startswith("$")]
                    calls.append((path.name, key, argv))
    return calls


CALLS = _sofsctl_calls()


@pytest.mark.parametrize("unit_name,key,argv", CALLS,
                         ids=[f"{c[0]} {c[1]} {' '.join(c[2][:2])}" for c in CALLS])
def test_the_sofsctl_commands_units_run_exist(unit_name, key, argv):
    cmd: click.Command = cli
    words_ = list(argv)
    while isinstance(cmd, click.Group):
        assert words_, f"{unit_name} {key}: no command after sofsctl"
        sub = cmd.commands.get(words_[0])
        assert sub is not None, f"{unit_name} {key}: sofsctl has no command {words_[0]!r}"
        cmd, words_ = sub, words_[1:]
    known = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
    for w in words_:
        if w.startswith("-"):
            assert w in known, f"{unit_name} {key}: sofsctl {' '.join(argv)}: no option {w}"


# --- the units' command lines, run for real ---------------------------------------------------

@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(120)
    yield s, str(path)
    s.close()


def _states(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def _needs_installed(cmd: str) -> None:
    if not os.access(BIN / cmd, os.X_OK):
        pytest.skip(f"{BIN / cmd} is not installed (scripts/install, as root)")


@pytest.mark.integration
def test_node_unit_command_says_ready_and_stopping(tmp_path, notify_socket):
    _needs_installed("sofs-node")
    DiskStore.initialise(tmp_path / "d0", "c1", "n1.d0")
    (tmp_path / "cluster.secret").write_text("0123456789abcdef0123456789abcdef\n")
    os.chmod(tmp_path / "cluster.secret", 0o600)
    config = tmp_path / "node.json"
    config.write_text(json.dumps({"node_id": "n1", "host": "127.0.0.1", "port": 0,
                                  "secret_file": "cluster.secret", "cluster_id": "c1",
                                  "disks": [{"id": "n1.d0", "path": "d0"}]}))
    sock, path = notify_socket
    env = dict(os.environ, NOTIFY_SOCKET=path, SOFS_NODE_CONFIG=str(config),
               SOFS_NODE_OPTIONS=f"--state-file {tmp_path / 'state.json'}")
    argv = expand(values(unit("sofs-node@.service"), "Service", "ExecStart")[0], env, "n1")
    proc = subprocess.Popen(argv, env=env, cwd="/", stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert _states(sock)[0] == "READY=1"
        port = json.loads((tmp_path / "state.json").read_text())["port"]
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
        proc.send_signal(signal.SIGTERM)
        assert _states(sock)[0] == "STOPPING=1"
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == os.path.realpath(path) for line in f)


@pytest.mark.integration
@needs_fuse
def test_mount_unit_commands_mount_say_ready_and_unmount_on_sigterm(tmp_path, notify_socket):
    _needs_installed("sofsctl")
    data, mnt = tmp_path / "data", tmp_path / "mnt" / "pacs"
    sofsctl(data, "cluster", "init", "--disks", "6")
    sofsctl(data, "volume", "create", "pacs")
    sock, path = notify_socket
    env = dict(os.environ, NOTIFY_SOCKET=path, SOFS_HOME=str(data), SOFS_MOUNTPOINT=str(mnt),
               SOFS_MOUNT_OPTIONS="--gc-interval 60")
    service = unit("sofs-mount@.service")["Service"]
    pre = [expand(v, env, "pacs") for k, v in service if k == "ExecStartPre"]
    start = expand(values(unit("sofs-mount@.service"), "Service", "ExecStart")[0], env, "pacs")
    proc = None
    try:
        for argv in pre:  # creates the mount point
            res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
            assert res.returncode == 0, res.stdout + res.stderr
        assert mnt.is_dir()
        proc = subprocess.Popen(start, env=env, cwd="/", stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        states = _states(sock)
        assert states[0] == "READY=1", states
        assert _mounted(mnt)
        (mnt / "study.dcm").write_bytes(b"DICM" * 1000)  # it serves once READY=1 came
        proc.send_signal(signal.SIGTERM)
        assert _states(sock)[0] == "STOPPING=1"
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode(errors="replace")
        assert not _mounted(mnt)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if _mounted(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.integration
@needs_fuse
def test_mount_unit_start_pre_clears_a_dead_mount_point(tmp_path):
    _needs_installed("sofsctl")
    a = Archive(tmp_path)
    try:
        pid = a.mount()
        pidfd = os.pidfd_open(pid)
        try:
            os.kill(pid, signal.SIGKILL)
            assert select.select([pidfd], [], [], 60)[0], f"mount process {pid} survived SIGKILL"
        finally:
            os.close(pidfd)
        with pytest.raises(OSError) as dead:
            os.listdir(a.mnt)
        assert dead.value.errno == errno.ENOTCONN
        env = dict(os.environ, SOFS_HOME=str(a.data), SOFS_MOUNTPOINT=str(a.mnt))
        for k, v in unit("sofs-mount@.service")["Service"]:
            if k == "ExecStartPre":
                res = subprocess.run(expand(v, env, a.volume), env=env, capture_output=True,
                                     text=True, timeout=300)
                assert res.returncode == 0, res.stdout + res.stderr
        assert a.mnt.is_dir() and not _mounted(a.mnt)
        os.listdir(a.mnt)
    finally:
        a.cleanup()
