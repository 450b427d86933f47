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

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from chunkstore.atomicfile import atomic_write
from fuse_mount.control import read_ready_line

from .errors import ExportError
from .exportconfig import run_dir, service_of, validate_spec, write_config
from .exportmount import find_mount
from .exportspec import KINDS, LIVE_STATES, NFS_DEFAULTS, SERVICE_NAMES, SMB_DEFAULTS, ExportSpec, check_kind
from .samba import ENCRYPT, PROTOCOLS, SmbUser, add_smb_users
from .service import _cmdline, process_start_time, tcp_port_answers
from .validate import check_volume_name

# --- places ------------------------------------------------------------------------------------

def exports_root(data_dir: Path) -> Path:
    return Path(data_dir) / "exports"


def export_dir(data_dir: Path, volume: str, kind: str) -> Path:
    check_volume_name(volume)
    check_kind(kind)
    return exports_root(data_dir) / f"{volume}-{kind}"


def log_path(data_dir: Path, volume: str, kind: str) -> Path:
    return Path(data_dir) / "log" / f"export-{volume}-{kind}.log"


# --- spec and state files ----------------------------------------------------------------------

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
    check_kind(spec.kind)
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


def create_export(data_dir: Path, spec: ExportSpec, users: Sequence[SmbUser] = (),
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
