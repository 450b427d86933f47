"""The exports of a data directory: what is exported, its supervisor, starting and stopping.

Each export of a volume over one protocol lives in ``DATA_DIR/exports/VOLUME-KIND/``
(KIND is ``nfs`` or ``smb``)::

    spec.json     what to export: {"kind", "volume", "options", "created"} (written by
                  :func:`create_export`; never holds a password)
    state.json    the supervisor's state: pid (and its kernel start time), the service's pid,
                  bind address and port, when it started, restarts, state, message, the mount,
                  and the last health probe (probe_ok, probe_at, probe_message, probe_took,
                  probe_failures: see exporters.probe)
    smb-probe.pw  (SMB) the password of the health probe account sofs-probe (mode 0600)
    run/          the service's run directory (ganesha.conf or smb.conf, pidfiles, the
                  daemon's own log, Ganesha's recovery/, Samba's state and passdb.tdb)

and its supervisor (:mod:`exporters.supervisor`, one detached process per export) logs to
``DATA_DIR/log/export-VOLUME-KIND.log``.

States written by the supervisor: ``starting``, ``running``, ``restarting``, ``stopping``,
``stopped`` (SIGTERM, ``sofsctl export stop``), ``failed`` (could not start, or crashed too
often), ``mount-gone`` (the FUSE mount died or was unmounted: the service was stopped so that
clients get errors instead of the empty directory under the mount point). :func:`list_exports`
shows ``dead`` for an export whose supervisor vanished without saying so (SIGKILL).

Stop order: exports before the FUSE mount (``fusermount3 -u`` fails with EBUSY while Ganesha
holds the mount): ``sofsctl umount`` calls :func:`stop_exports` first.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from chunkstore.atomicfile import atomic_write
from fuse_mount import runstate
from fuse_mount.control import read_ready_line
from sofs.volume import load_volume

from .errors import ExportError
from .ganesha import (
    ClientRule,
    NfsExport,
    ganesha_service,
    render_ganesha_config,
    write_ganesha_config,
)
from .samba import (
    ENCRYPT,
    NAME_RE,
    PROTOCOLS,
    SmbShare,
    SmbUser,
    add_smb_users,
    render_samba_config,
    samba_service,
    write_samba_config,
)
from .probe import PROBE_USER, SMB_PROBE_DIR, probe_host, smb_probe_share
from .service import Service, _cmdline, _proc_info, _running, tcp_port_answers
from .validate import check_volume_name

KINDS = ("nfs", "smb")
SERVICE_NAMES = {"nfs": "nfs-ganesha", "smb": "smbd"}
LIVE_STATES = ("starting", "running", "restarting", "stopping")

# Production defaults (sofsctl exposes them as options).
NFS_DEFAULTS = {
    "clients": [],          # [[cidr, "RW"|"RO"|"None"], ...]: required, nobody by default
    "read_only": False,
    "squash": "root_squash",
    "port": 2049,
    "bind": "0.0.0.0",
    "v3": False,
    "mount_port": None,
    "grace": 90,            # seconds; 0 = Graceless (tests only: NFSv4 clients lose reclaim)
    "attr_cache": 0,        # seconds Ganesha trusts cached attributes (0: always ask the mount)
}
SMB_DEFAULTS = {
    "users": [],            # [[name, uid, gid], ...]
    "read_only": False,
    "port": 445,
    "bind": "0.0.0.0",
    "min_protocol": "SMB2_02",
    "signing": "mandatory",
    "encrypt": "desired",
}


# --- places ------------------------------------------------------------------------------------

def exports_root(data_dir: Path) -> Path:
    return Path(data_dir) / "exports"


def export_dir(data_dir: Path, volume: str, kind: str) -> Path:
    check_volume_name(volume)
    _check_kind(kind)
    return exports_root(data_dir) / f"{volume}-{kind}"


def log_path(data_dir: Path, volume: str, kind: str) -> Path:
    return Path(data_dir) / "log" / f"export-{volume}-{kind}.log"


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ExportError(f"invalid export kind {kind!r}: nfs or smb")
    return kind


# --- spec and state files ----------------------------------------------------------------------

@dataclass
class ExportSpec:
    kind: str
    volume: str
    options: dict
    created: float = field(default_factory=time.time)


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def save_spec(edir: Path, spec: ExportSpec) -> None:
    edir.mkdir(parents=True, exist_ok=True)
    _write_json(edir / "spec.json", asdict(spec))


def load_spec(edir: Path) -> ExportSpec:
    path = Path(edir) / "spec.json"
    try:
        d = json.loads(path.read_text())
        spec = ExportSpec(kind=d["kind"], volume=d["volume"], options=dict(d["options"]),
                          created=float(d.get("created", 0)))
    except FileNotFoundError:
        raise ExportError(f"{edir}: no export here (spec.json missing)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{path}: unreadable export spec: {exc}") from None
    _check_kind(spec.kind)
    check_volume_name(spec.volume)
    defaults = NFS_DEFAULTS if spec.kind == "nfs" else SMB_DEFAULTS
    spec.options = {**defaults, **spec.options}
    return spec


def read_state(edir: Path) -> dict:
    try:
        d = json.loads((Path(edir) / "state.json").read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def write_state(edir: Path, state: dict) -> None:
    _write_json(Path(edir) / "state.json", {**state, "updated": time.time()})


def process_start_time(pid: int) -> int | None:
    info = _proc_info(pid)
    return info.starttime if _running(info) else None


def supervisor_pid(edir: Path, state: dict | None = None) -> int | None:
    """The pid of the export's supervisor while it runs (checked against its recorded start time
    and command line, so a recycled pid is never taken for it), else None."""
    state = read_state(edir) if state is None else state
    pid, start = state.get("pid"), state.get("pid_start")
    if not isinstance(pid, int) or pid <= 1 or pid == os.getpid():
        return None
    if process_start_time(pid) != start:
        return None
    if "exporters.supervisor" not in _cmdline(pid):
        return None
    return pid


# --- the FUSE mount ----------------------------------------------------------------------------

@dataclass(frozen=True)
class MountRef:
    """The FUSE mount an export serves, as found when the export started."""

    volume: str
    pid: int
    pid_start: int | None
    mountpoint: str
    mount_id: int
    fstype: str
    source: str


def mountinfo_entry(mountpoint: str) -> tuple[int, str, str] | None:
    """(mount id, fs type, source) of the topmost mount at MOUNTPOINT, or None."""
    found = None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                try:
                    sep = fields.index("-")
                except ValueError:
                    continue
                point = fields[4].encode().decode("unicode_escape")
                if point == mountpoint:
                    found = (int(fields[0]), fields[sep + 1], fields[sep + 2])
    except OSError:
        return None
    return found


def find_mount(data_dir: Path, volume: str) -> MountRef:
    """The live FUSE mount of VOLUME; ExportError if the volume is not mounted."""
    states = [s for s in runstate.all_states(data_dir) if s.volume == volume]
    live = [s for s in states if _running(_proc_info(s.pid))]
    if not live:
        raise ExportError(
            f"volume {volume} is not mounted: mount it first (sofsctl mount {volume} "
            "MOUNTPOINT), then export it; an export never serves an unmounted directory"
        )
    s = live[0]
    entry = mountinfo_entry(s.mountpoint)
    if entry is None:
        raise ExportError(
            f"volume {volume}: its mount process (pid {s.pid}) runs but {s.mountpoint} is not "
            "a mount point"
        )
    mount_id, fstype, source = entry
    if not fstype.startswith("fuse"):
        raise ExportError(f"{s.mountpoint} is a {fstype} mount, not the sofs FUSE mount of "
                          f"volume {volume}")
    return MountRef(volume=volume, pid=s.pid, pid_start=process_start_time(s.pid),
                    mountpoint=s.mountpoint, mount_id=mount_id, fstype=fstype, source=source)


def mount_gone(ref: MountRef) -> str | None:
    """Why the mount REF is no longer served (None while it is)."""
    if process_start_time(ref.pid) != ref.pid_start or ref.pid_start is None:
        return f"the mount process (pid {ref.pid}) is gone"
    entry = mountinfo_entry(ref.mountpoint)
    if entry is None:
        return f"{ref.mountpoint} is no longer a mount point"
    if entry[0] != ref.mount_id:
        return f"{ref.mountpoint} is now another mount (mount id {entry[0]}, was {ref.mount_id})"
    return None


# --- configs and services ----------------------------------------------------------------------

def run_dir(edir: Path) -> Path:
    return Path(edir) / "run"


def nfs_export_of(spec: ExportSpec, volume_uuid: str, mountpoint: str) -> NfsExport:
    o = spec.options
    grace = int(o["grace"])
    clients = [ClientRule(cidr, access) for cidr, access in o["clients"]]
    probe = _probe_client_rule(o["bind"], clients, bool(o["read_only"]))
    if probe is not None:
        clients.append(probe)
    return NfsExport(
        volume=spec.volume,
        volume_uuid=volume_uuid,
        mountpoint=Path(mountpoint),
        clients=clients,
        read_only=bool(o["read_only"]),
        squash=o["squash"],
        nfs_port=o["port"],
        bind=o["bind"],
        v3=bool(o["v3"]),
        mount_port=o["mount_port"],
        graceless=grace == 0,
        grace_s=grace if grace > 0 else 90,
        lease_s=min(60, grace) if grace > 0 else 60,
        attr_cache_s=int(o.get("attr_cache") or 0),
    )


def _probe_client_rule(bind: str, clients: list[ClientRule],
                       read_only: bool) -> ClientRule | None:
    """The rule letting the supervisor's health probe in (exporters.probe), or None when the
    administrator's rules already decide about the probe's address (first match wins).

    The probe connects from the host itself to the bind address (loopback for a wildcard). The
    rule is added last and squashes everyone to 65534 (all_squash), so that a local user
    claiming uid 0 over NFS gets no more than nobody's rights, whatever the export's squash."""
    try:
        addr = ipaddress.ip_address(probe_host(bind))
    except ValueError:
        return None
    for rule in clients:
        try:
            if addr in ipaddress.ip_network(rule.cidr, strict=False):
                return None
        except ValueError:
            continue  # refused by the renderer with its reason
    bits = 32 if addr.version == 4 else 128
    return ClientRule(f"{addr}/{bits}", "RO" if read_only else "RW", squash="all_squash")


def smb_share_of(spec: ExportSpec, mountpoint: str) -> SmbShare:
    o = spec.options
    users = [u[0] for u in o["users"]]
    if users and PROBE_USER not in users:
        users.append(PROBE_USER)  # the supervisor's health probe account (exporters.probe)
    return SmbShare(
        volume=spec.volume,
        path=Path(mountpoint),
        valid_users=users,
        read_only=bool(o["read_only"]),
        port=o["port"],
        bind=o["bind"],
        min_protocol=o["min_protocol"],
        signing=o["signing"],
        encrypt=o["encrypt"],
    )


def smb_shares_of(spec: ExportSpec, mountpoint: str) -> list[SmbShare]:
    """The shares one SMB export's smbd serves: the volume's, and the health probe's own
    hidden share ``VOLUME-probe$`` on ``MOUNTPOINT/.sofs-probe-smb`` (sofs-probe its only
    user; read-only like the export; see exporters.probe)."""
    main = smb_share_of(spec, mountpoint)
    probe_share = replace(
        main, name=smb_probe_share(spec.volume), path=Path(mountpoint) / SMB_PROBE_DIR,
        valid_users=[PROBE_USER], browseable=False)
    return [main, probe_share]


def write_config(data_dir: Path, edir: Path, spec: ExportSpec, mountpoint: str) -> Path:
    """Render the service's config for the mount at MOUNTPOINT into the run directory.

    NFS exports pin Ganesha's Filesystem_id (and Export_Id) to the volume's UUID, so clients'
    file handles survive remounts and restarts."""
    rdir = run_dir(edir)
    if spec.kind == "nfs":
        try:
            volume_uuid = load_volume(data_dir, spec.volume).uuid
        except Exception as exc:  # sofs.errors.VolumeError and friends
            raise ExportError(str(exc)) from None
        return write_ganesha_config(nfs_export_of(spec, volume_uuid, mountpoint), rdir)
    return write_samba_config(smb_shares_of(spec, mountpoint), rdir)


def validate_spec(data_dir: Path, spec: ExportSpec) -> None:
    """Check every option of SPEC (as a config for a stand-in mount point) without writing
    anything: bad input is reported before the mount is looked for."""
    placeholder = "/sofs-validate/" + spec.volume
    if spec.kind == "nfs":
        try:
            volume_uuid = load_volume(data_dir, spec.volume).uuid
        except Exception as exc:
            raise ExportError(str(exc)) from None
        render_ganesha_config(nfs_export_of(spec, volume_uuid, placeholder), Path("/run/x"))
    else:
        render_samba_config(smb_shares_of(spec, placeholder), Path("/run/x"))


def service_of(spec: ExportSpec, edir: Path) -> Service | None:
    """The Service for the config already written in EDIR's run directory (None if none)."""
    rdir = run_dir(edir)
    conf = rdir / ("ganesha.conf" if spec.kind == "nfs" else "smb.conf")
    if not conf.exists():
        return None
    if spec.kind == "nfs":
        return ganesha_service(conf, rdir)
    return samba_service(conf, rdir)


# --- export options ----------------------------------------------------------------------------

def parse_client(text: str, read_only: bool = False) -> list:
    """``CIDR[:ro|rw|none]`` -> [cidr, access]; access defaults to RW (RO with READ_ONLY)."""
    cidr, access = text.strip(), ("RO" if read_only else "RW")
    head, sep, tail = cidr.rpartition(":")
    if sep and tail.lower() in ("ro", "rw", "none"):
        cidr, access = head, {"ro": "RO", "rw": "RW", "none": "None"}[tail.lower()]
    if not cidr:
        raise ExportError(f"invalid client {text!r}: CIDR[:ro|rw], e.g. 10.1.0.0/16:ro")
    return [cidr, access]


def resolve_smb_user(spec: str) -> tuple[str, int, int]:
    """``NAME[:UID]`` -> (name, uid, gid). An existing POSIX user keeps its uid and primary
    group (a UID given must match); a new one needs UID and gets its own group of that id."""
    name, _, uid_text = spec.partition(":")
    if not NAME_RE.fullmatch(name):
        raise ExportError(f"invalid user name {name!r}: lower-case letters, digits, '_' or '-'")
    if name == PROBE_USER:
        raise ExportError(f"{PROBE_USER} is reserved for the export's health probe")
    uid = None
    if uid_text:
        try:
            uid = int(uid_text)
        except ValueError:
            raise ExportError(f"invalid uid in {spec!r}: NAME:UID with a number") from None
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        if uid is None:
            raise ExportError(f"user {name} does not exist: give {name}:UID to create it") from None
        if not 1 <= uid < 2**31:
            raise ExportError(f"invalid uid {uid} for {name}: from 1 to 2^31-1 (not root)")
        return name, uid, uid
    if uid is not None and uid != pw.pw_uid:
        raise ExportError(f"user {name} exists with uid {pw.pw_uid}, not {uid}")
    if pw.pw_uid == 0:
        raise ExportError(f"refusing to share as {name}: uid 0 (root)")
    return name, pw.pw_uid, pw.pw_gid


# --- status ------------------------------------------------------------------------------------

@dataclass
class ExportStatus:
    volume: str
    kind: str
    bind: str
    port: int
    state: str
    pid: int | None           # the supervisor
    service_pid: int | None   # ganesha.nfsd / smbd
    restarts: int
    who: str                  # NFS client rules or SMB users
    mountpoint: str | None
    started: float | None
    message: str
    export_dir: str
    # the last health probe (exporters.probe): None until one ran
    probe_ok: bool | None = None
    probe_at: float | None = None
    probe_message: str = ""


def _who(spec: ExportSpec) -> str:
    if spec.kind == "nfs":
        return ",".join(f"{c}:{a.lower()}" for c, a in spec.options["clients"]) or "-"
    return ",".join(u[0] for u in spec.options["users"]) or "-"


def status_of(edir: Path) -> ExportStatus:
    spec = load_spec(edir)
    st = read_state(edir)
    pid = supervisor_pid(edir, st)
    state = st.get("state", "stopped")
    if pid is None and state in LIVE_STATES:
        state = "dead"
    svc = service_of(spec, edir)
    svc_pid = svc.pid if svc is not None else None  # shown even if orphaned (state "dead")
    return ExportStatus(
        volume=spec.volume, kind=spec.kind, bind=spec.options["bind"],
        port=spec.options["port"], state=state, pid=pid, service_pid=svc_pid,
        restarts=int(st.get("restarts", 0)), who=_who(spec), mountpoint=st.get("mountpoint"),
        started=st.get("started"), message=st.get("message", ""), export_dir=str(edir),
        probe_ok=st.get("probe_ok"), probe_at=st.get("probe_at"),
        probe_message=st.get("probe_message", ""),
    )


def list_exports(data_dir: Path) -> list[ExportStatus]:
    root = exports_root(data_dir)
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if (d / "spec.json").is_file():
            try:
                out.append(status_of(d))
            except ExportError:
                continue
    return out


# --- create, start, stop -----------------------------------------------------------------------

def _refuse_if_running(edir: Path, spec_kind: str, volume: str) -> None:
    pid = supervisor_pid(edir)
    if pid is not None:
        raise ExportError(
            f"volume {volume} is already exported over {spec_kind.upper()} (supervisor pid "
            f"{pid}); stop it first: sofsctl export stop {volume} --kind {spec_kind}"
        )


def create_export(data_dir: Path, spec: ExportSpec, users: list[SmbUser] = (),
                  timeout: float = 90.0) -> ExportStatus:
    """Validate SPEC, write its config (and the SMB users), save it and start its supervisor.

    Returns once the service answers (or raises ExportError with the reason and the log)."""
    data_dir = Path(data_dir).absolute()
    edir = export_dir(data_dir, spec.volume, spec.kind)
    _refuse_if_running(edir, spec.kind, spec.volume)
    defaults = NFS_DEFAULTS if spec.kind == "nfs" else SMB_DEFAULTS
    unknown = set(spec.options) - set(defaults)
    if unknown:
        raise ExportError(f"unknown export options: {', '.join(sorted(unknown))}")
    spec.options = {**defaults, **spec.options}
    if spec.kind == "nfs":
        spec.options["clients"] = [list(c) for c in spec.options["clients"]]
        if not spec.options["clients"]:
            raise ExportError("say which NFS clients may connect (--clients CIDR[:ro|rw]); "
                              "nobody can by default")
    else:
        _check_choice(spec.options["min_protocol"], PROTOCOLS, "minimum protocol")
        _check_choice(spec.options["encrypt"], ENCRYPT, "encryption")
        if not spec.options["users"]:
            raise ExportError("say which users may connect (--user NAME[:UID])")
        names = {u.name for u in users}
        missing = [u[0] for u in spec.options["users"] if u[0] not in names]
        if missing and not (run_dir(edir) / "private" / "passdb.tdb").exists():
            raise ExportError(f"no password for {', '.join(missing)}")
    validate_spec(data_dir, spec)
    mount = find_mount(data_dir, spec.volume)
    # Render once here: bad options fail now, with the reason, before anything runs.
    conf = write_config(data_dir, edir, spec, mount.mountpoint)
    old = service_of(spec, edir)
    if old is not None and old.alive():  # left behind by a supervisor killed with SIGKILL
        old.stop()
    bind = spec.options["bind"]
    if tcp_port_answers(bind, spec.options["port"], timeout=0.5):
        raise ExportError(f"port {spec.options['port']} on {bind} is already in use")
    if spec.kind == "smb" and users:
        add_smb_users(conf, list(users))
    save_spec(edir, spec)
    return start_supervisor(data_dir, edir, timeout=timeout)


def _check_choice(value: str, choices, what: str) -> None:
    if value not in choices:
        raise ExportError(f"invalid {what} {value!r}: use one of {', '.join(choices)}")


def start_export(data_dir: Path, volume: str, kind: str, timeout: float = 90.0) -> ExportStatus:
    """Start a saved export again (after a stop, a reboot or a failure)."""
    data_dir = Path(data_dir).absolute()
    edir = export_dir(data_dir, volume, kind)
    spec = load_spec(edir)
    _refuse_if_running(edir, kind, volume)
    find_mount(data_dir, volume)
    old = service_of(spec, edir)
    if old is not None and old.alive():
        old.stop()
    return start_supervisor(data_dir, edir, timeout=timeout)


def start_supervisor(data_dir: Path, edir: Path, timeout: float = 90.0) -> ExportStatus:
    """Start a detached supervisor for the export in EDIR; return once its service answers."""
    spec = load_spec(edir)
    log = log_path(data_dir, spec.volume, spec.kind)
    log.parent.mkdir(parents=True, exist_ok=True)
    r, w = os.pipe()
    cmd = [sys.executable, "-m", "exporters.supervisor", "--data-dir", str(data_dir),
           "--export-dir", str(edir), "--ready-fd", str(w)]
    try:
        with open(log, "ab") as logf:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                    pass_fds=(w,), start_new_session=True, close_fds=True,
                                    cwd="/")
    finally:
        os.close(w)
    try:
        answer = read_ready_line(r, time.monotonic() + timeout)
    except TimeoutError:
        _kill_and_clean(proc.pid, spec, edir)
        raise ExportError(f"the {spec.kind} export of {spec.volume} did not start in "
                          f"{timeout:.0f} s and was stopped; see {log}") from None
    finally:
        os.close(r)
    try:
        msg = json.loads(answer.decode("utf-8", "replace").splitlines()[0])
    except (ValueError, IndexError):
        msg = {"ok": False, "error": "the supervisor exited before it said why"}
    if not msg.get("ok"):
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _kill_and_clean(proc.pid, spec, edir)
        raise ExportError(f"{msg.get('error', 'failed')} (log: {log})")
    return status_of(edir)


def _kill_and_clean(pid: int, spec: ExportSpec, edir: Path) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    svc = service_of(spec, edir)
    if svc is not None:
        svc.stop()


def _wait_gone(pid: int, start: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = process_start_time(pid)
        if now is None or now != start:
            return True
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def stop_export(data_dir: Path, volume: str, kind: str, timeout: float = 60.0) -> str:
    """Stop one export: SIGTERM its supervisor (which stops the service), wait, and make sure
    the service and its helpers are gone (stopping them here if the supervisor could not)."""
    data_dir = Path(data_dir).absolute()
    edir = export_dir(data_dir, volume, kind)
    spec = load_spec(edir)
    st = read_state(edir)
    pid = supervisor_pid(edir, st)
    notes = []
    if pid is not None:
        start = st.get("pid_start")
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, start, timeout):
            notes.append(f"supervisor {pid} did not stop in {timeout:.0f} s: killed")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone(pid, start, 5.0)
    svc = service_of(spec, edir)
    svc_pid = svc.pid if svc is not None else None
    orphan = svc is not None and svc.stop() and svc_pid is not None
    if orphan and pid is not None:
        notes.append(f"{SERVICE_NAMES[kind]} (pid {svc_pid}) was still running: stopped it")
    if svc is not None and svc.alive():
        raise ExportError(f"{SERVICE_NAMES[kind]} (pid {svc.pid}) of the {kind} export of "
                          f"{volume} is still running")
    st = read_state(edir)
    if st.get("state") in LIVE_STATES or pid is None:
        write_state(edir, {**st, "state": "stopped", "pid": None, "service_pid": None,
                           "message": "stopped by sofsctl export stop"})
    bind, port = spec.options["bind"], spec.options["port"]
    if tcp_port_answers(bind, port, timeout=0.5):
        notes.append(f"warning: port {port} on {bind} still answers (another program?)")
    if pid is not None:
        what = f"stopped the {kind} export of {volume}"
    elif orphan:
        what = (f"stopped the {kind} export of {volume}: its supervisor was gone, "
                f"{SERVICE_NAMES[kind]} (pid {svc_pid}) still ran")
    else:
        what = f"the {kind} export of {volume} was not running"
    return "; ".join([what, *notes])


def stop_exports(data_dir: Path, volume: str, timeout: float = 60.0) -> list[str]:
    """Stop every export of VOLUME (call before unmounting it); what was done, one line each.
    Exports that are not running are left out. Raises ExportError (after trying them all)
    if one could not be stopped: its service may still hold the mount."""
    out, errors = [], []
    for kind in KINDS:
        edir = export_dir(data_dir, volume, kind)
        if not (edir / "spec.json").is_file():
            continue
        try:
            running = supervisor_pid(edir) is not None
            svc = service_of(load_spec(edir), edir)
            if running or (svc is not None and svc.alive()):
                out.append(stop_export(data_dir, volume, kind, timeout=timeout))
        except ExportError as exc:
            errors.append(f"could not stop the {kind} export of {volume}: {exc}")
    if errors:
        raise ExportError("; ".join(out + errors))
    return out
