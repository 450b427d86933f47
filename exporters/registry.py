"""The exports of a data directory: what is exported, its supervisor, starting and stopping.

Each export of a volume over one protocol lives in ``DATA_DIR/exports/VOLUME-KIND/``
(KIND is ``nfs`` or ``smb``)::

    spec.json     what to export: {"kind", "volume", "options", "created"}, an
                  :class:`~exporters.exportspec.ExportSpec` (written by :func:`create_export`;
                  never holds a password)
    state.json    the supervisor's state, an :class:`~exporters.exportstate.ExportState`:
                  pid (and its kernel start time), the service's pid, bind address and port,
                  when it started, restarts, state, message, the mount, and the last health
                  probe (probe_ok, probe_at, probe_message, probe_took, probe_failures: see
                  exporters.probe)
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
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chunkstore.atomicfile import atomic_write
from fuse_mount.control import read_ready_line

from . import exportbook
from .errors import ExportError
from .exportconfig import run_dir, service_of, validate_spec, write_config
from .exportmount import find_mount
from .exportspec import KINDS, LIVE_STATES, SERVICE_NAMES, ExportSpec, check_kind
from .exportstate import ExportState
from .samba import ENCRYPT, PROTOCOLS, SmbUser, add_smb_users, export_passwords
from .service import _all_pids, _cmdline, listen_problem, process_start_time, tcp_port_answers
from .shareaccess import (
    OwnerChange,
    UserReport,
    WriteAccess,
    parse_owner,
    set_root_owner,
    set_up_users,
    write_access,
)
from .validate import check_volume_name

log = logging.getLogger("sofs.exports")

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

def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def _read_json(path: Path) -> object:
    """The decoded JSON document in PATH (FileNotFoundError passes; garbage is an ExportError)."""
    try:
        return json.loads(path.read_text())
    except UnicodeDecodeError as exc:
        raise ExportError(f"{path}: not UTF-8 text: {exc}") from None
    except ValueError as exc:
        raise ExportError(f"{path}: not JSON: {exc}") from None


def save_spec(edir: Path, spec: ExportSpec) -> None:
    edir.mkdir(parents=True, exist_ok=True)
    _write_json(edir / "spec.json", spec.to_json())


def load_spec(edir: Path) -> ExportSpec:
    """The spec saved in EDIR; ExportError if there is none or it is not a valid spec."""
    path = Path(edir) / "spec.json"
    try:
        doc = _read_json(path)
    except FileNotFoundError:
        raise ExportError(f"{edir}: no export here (spec.json missing)") from None
    except OSError as exc:
        raise ExportError(f"{path}: unreadable export spec: {exc.strerror}") from None
    return ExportSpec.from_json(doc, str(path))


def read_state(edir: Path) -> ExportState:
    """The supervisor's state of the export in EDIR (the default, "stopped", if it never ran);
    ExportError for a state file that is not valid."""
    path = Path(edir) / "state.json"
    try:
        doc = _read_json(path)
    except FileNotFoundError:
        return ExportState()
    except OSError as exc:
        raise ExportError(f"{path}: unreadable export state: {exc.strerror}") from None
    return ExportState.from_json(doc, str(path))


def write_state(edir: Path, state: ExportState) -> None:
    """Replace EDIR's state.json with STATE, stamped with the time now."""
    _write_json(Path(edir) / "state.json", replace(state, updated=time.time()).to_json())


def supervisor_pid(edir: Path, state: ExportState | None = None) -> int | None:
    """The pid of the export's supervisor while it runs (checked against its recorded start time
    and command line, so a recycled pid is never taken for it), else None. A state file that
    cannot be read is not trusted: the supervisor is then looked for by its command line."""
    if state is None:
        try:
            state = read_state(edir)
        except ExportError:
            return _supervisor_by_cmdline(edir)
    pid, start = state.pid, state.pid_start
    if pid is None or pid <= 1 or pid == os.getpid():
        return None
    if process_start_time(pid) != start:
        return None
    if "exporters.supervisor" not in _cmdline(pid):
        return None
    return pid


def _supervisor_by_cmdline(edir: Path) -> int | None:
    """The live supervisor process serving EDIR, found by its command line, else None."""
    want = f" --export-dir {Path(edir).absolute()} "
    for pid in _all_pids():
        cmdline = " " + _cmdline(pid)
        if pid != os.getpid() and "exporters.supervisor" in cmdline and want in cmdline:
            return pid
    return None


def _state_for_stop(edir: Path, notes: list[str]) -> ExportState:
    """The export's state, or (a damaged state file) the default state with a note saying so:
    stopping an export must never depend on its state file being intact."""
    try:
        return read_state(edir)
    except ExportError as exc:
        notes.append(f"warning: {exc}; rewritten")
        return ExportState()


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
        return ",".join(f"{c.cidr}:{c.access.lower()}" for c in spec.nfs.clients) or "-"
    return ",".join(u.name for u in spec.smb.users) or "-"


def status_of(edir: Path) -> ExportStatus:
    spec = load_spec(edir)
    st = read_state(edir)
    pid = supervisor_pid(edir, st)
    state = st.state
    if pid is None and state in LIVE_STATES:
        state = "dead"
    svc = service_of(spec, edir)
    svc_pid = svc.pid if svc is not None else None  # shown even if orphaned (state "dead")
    return ExportStatus(
        volume=spec.volume, kind=spec.kind, bind=spec.options.bind,
        port=spec.options.port, state=state, pid=pid, service_pid=svc_pid,
        restarts=st.restarts, who=_who(spec), mountpoint=st.mountpoint,
        started=st.started, message=st.message, export_dir=str(edir),
        probe_ok=st.probe_ok, probe_at=st.probe_at, probe_message=st.probe_message,
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


@dataclass
class _Prepared:
    """An export checked and rendered, not started yet (see :func:`create_export`)."""

    data_dir: Path
    edir: Path
    spec: ExportSpec
    mountpoint: str
    conf: Path


def _prepare(data_dir: Path, spec: ExportSpec, users: Sequence[SmbUser]) -> _Prepared:
    """Every check of a new export (options, mount, config, listening address) and its
    rendered config; nothing started, no user created."""
    data_dir = Path(data_dir).absolute()
    edir = export_dir(data_dir, spec.volume, spec.kind)
    _refuse_if_running(edir, spec.kind, spec.volume)
    if spec.kind == "nfs":
        if not spec.nfs.clients:
            raise ExportError("say which NFS clients may connect (--clients CIDR[:ro|rw]); "
                              "nobody can by default")
    else:
        smb = spec.smb
        _check_choice(smb.min_protocol, PROTOCOLS, "minimum protocol")
        _check_choice(smb.encrypt, ENCRYPT, "encryption")
        if not smb.users:
            raise ExportError("say which users may connect (--user NAME[:UID])")
        names = {u.name for u in users}
        missing = [u.name for u in smb.users if u.name not in names]
        if missing and not (run_dir(edir) / "private" / "passdb.tdb").exists():
            raise ExportError(f"no password for {', '.join(missing)}")
    validate_spec(data_dir, spec)
    mount = find_mount(data_dir, spec.volume)
    # Render once here: bad options fail now, with the reason, before anything runs.
    conf = write_config(data_dir, edir, spec, mount.mountpoint)
    old = service_of(spec, edir)
    if old is not None and old.alive():  # left behind by a supervisor killed with SIGKILL
        old.stop()
    problem = listen_problem(spec.options.bind, spec.options.port)
    if problem is not None:
        raise ExportError(problem)
    return _Prepared(data_dir, edir, spec, mount.mountpoint, conf)


def _launch(p: _Prepared, timeout: float) -> ExportStatus:
    """Save the prepared export's spec and start its supervisor; a first export that fails
    to start is not kept."""
    first = not (p.edir / "spec.json").exists()
    save_spec(p.edir, p.spec)
    try:
        status = start_supervisor(p.data_dir, p.edir, timeout=timeout)
    except ExportError:
        if first:  # never ran: nothing of it is kept (its logs stay, the error names them)
            (p.edir / "spec.json").unlink(missing_ok=True)
            (p.edir / "state.json").unlink(missing_ok=True)
        raise
    passwords = ""
    if p.spec.kind == "smb" and exportbook.has_etcd(p.data_dir):
        try:  # so that a host taking the volume over lets the same users in
            passwords = export_passwords(p.conf, {u.name: u.uid for u in p.spec.smb.users})
        except ExportError as e:
            log.warning("the SMB users of %s are not recorded: %s", p.spec.volume, e)
    exportbook.record(p.data_dir, p.spec, passwords)  # with etcd: it follows a takeover
    return status


def create_export(data_dir: Path, spec: ExportSpec, users: Sequence[SmbUser] = (),
                  timeout: float = 90.0) -> ExportStatus:
    """Validate SPEC, write its config (and the SMB users), save it and start its supervisor.

    Returns once the service answers (or raises ExportError with the reason and the log).
    :func:`create_smb_export` does the same for SMB and also says what it did to the users
    and whether they can write."""
    p = _prepare(data_dir, spec, users)
    if spec.kind == "smb" and users:
        add_smb_users(p.conf, list(users))
    return _launch(p, timeout)


@dataclass
class SmbExportCreated:
    """What :func:`create_smb_export` did and found: the started export's status, the POSIX
    users (the share's, then the probe's: created or already there), the volume root's new
    owner (``owner``), each share user's write access to the root (empty for a read-only
    share)."""

    status: ExportStatus
    users: list[UserReport]
    owner: OwnerChange | None
    access: list[WriteAccess]

    @property
    def warnings(self) -> list[str]:
        return [a.warning() for a in self.access if not a.can_write]


def create_smb_export(data_dir: Path, spec: ExportSpec, users: Sequence[SmbUser] = (), *,
                      owner: str | None = None, timeout: float = 90.0) -> SmbExportCreated:
    """:func:`create_export` of an SMB SPEC, saying which POSIX users it created
    (:mod:`exporters.shareaccess`); with OWNER (``USER[:GROUP]``) the volume root is chowned
    to it first. Users are created only once every check passed."""
    if spec.kind != "smb":
        raise ExportError(f"not an SMB export: {spec.kind}")
    owner_spec = None if owner is None else parse_owner(owner, [u.name for u in users])
    p = _prepare(data_dir, spec, users)
    reports = set_up_users(users)
    if users:
        add_smb_users(p.conf, list(users), create_posix=False)
    change = None if owner_spec is None else set_root_owner(p.mountpoint, owner_spec)
    status = _launch(p, timeout)
    access = [] if spec.smb.read_only else write_access(
        p.mountpoint, [(u.name, u.uid, u.gid) for u in spec.smb.users])
    return SmbExportCreated(status, reports, change, access)


def _check_choice(value: str, choices: Sequence[str], what: str) -> None:
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
    problem = listen_problem(spec.options.bind, spec.options.port)
    if problem is not None:
        raise ExportError(problem)
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
    notes: list[str] = []
    st = _state_for_stop(edir, notes)
    damaged = bool(notes)
    pid = _supervisor_by_cmdline(edir) if damaged else supervisor_pid(edir, st)
    if pid is not None:
        start = process_start_time(pid) if damaged else st.pid_start
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
    after: list[str] = []
    st = _state_for_stop(edir, after)  # the supervisor may have written it on its way out
    if st.state in LIVE_STATES or pid is None or after:
        write_state(edir, replace(st, state="stopped", pid=None, service_pid=None,
                                  message="stopped by sofsctl export stop"))
    bind, port = spec.options.bind, spec.options.port
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


def remove_export(data_dir: Path, volume: str, kind: str) -> str:
    """Forget a stopped export of VOLUME: its saved spec, state, config and run directory.
    Refused while it runs (stop it first)."""
    edir = export_dir(Path(data_dir).absolute(), volume, kind)
    if not (edir / "spec.json").is_file():
        raise ExportError(f"volume {volume} has no {kind} export")
    pid = supervisor_pid(edir)
    if pid is not None:
        raise ExportError(f"the {kind} export of {volume} runs (supervisor pid {pid}): stop it "
                          f"first: sofsctl export stop --kind {kind} {volume}")
    shutil.rmtree(edir)
    note = exportbook.forget(Path(data_dir).absolute(), volume, kind)
    return f"removed the {kind} export of {volume}" + (f" (warning: {note})" if note else "")
