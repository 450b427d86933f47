"""A small supervisor for the export daemons (NFS-Ganesha, smbd).

A :class:`Service` runs one daemon in the foreground of its own session (``setsid``), its
output appended to a log file, and keeps ``PIDFILE`` with three numbers: the pid, the kernel's
start time of that process (so a recycled pid is never mistaken for the daemon) and the session
id. Everything it needs to stop the daemon is in that file, so another process (a later
``sofsctl export stop``) can stop it with a :class:`Service` built from the same arguments.

Stopping sends SIGTERM to the daemon, then to every process left in its session (Samba's
``samba-dcerpcd`` and ``rpcd_*`` helpers are started on demand and outlive smbd's main process)
and to the pids in ``helper_pidfiles``, and SIGKILL to whatever is still there after
``stop_timeout`` seconds. Processes are always addressed by pid, never by name.

Ganesha and Samba specifics (argv, readiness) live in :func:`exporters.ganesha.ganesha_service`
and :func:`exporters.samba.samba_service`.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from chunkstore.atomicfile import atomic_write

from .errors import ExportError


def listen_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on HOST:PORT here (an address this host does not have,
    a port in use), or None. Found by binding a socket there, not by connecting: a connection
    to an address of another host may be answered by something else on the way."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{host} is not an address of this host (see: ip -brief address)"
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use"
            return f"cannot listen on {host} port {port}: {exc.strerror}"
    return None


def tcp_port_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a TCP connection to HOST:PORT is accepted within TIMEOUT seconds.

    A wildcard bind address ('0.0.0.0', '::') is probed on the matching loopback address.
    """
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 30) -> str:
    """The last LINES lines of a log file ('' if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


@dataclass(frozen=True)
class _ProcInfo:
    pid: int
    ppid: int
    sid: int
    starttime: int
    state: str


def _proc_info(pid: int) -> _ProcInfo | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # "pid (comm) state ppid pgrp session ..." - comm may contain spaces and parentheses.
    rest = raw[raw.rindex(")") + 2 :].split()
    return _ProcInfo(
        pid=pid, state=rest[0], ppid=int(rest[1]), sid=int(rest[3]), starttime=int(rest[19])
    )


def _running(info: _ProcInfo | None) -> TypeGuard[_ProcInfo]:
    """Whether INFO is a live (not zombie) process."""
    return info is not None and info.state not in ("Z", "X")


def _all_pids() -> Iterable[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def session_members(sid: int) -> list[int]:
    """Pids of the live processes whose session id is SID."""
    out = []
    for pid in _all_pids():
        info = _proc_info(pid)
        if info is not None and info.sid == sid and _running(info):
            out.append(pid)
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


class Service:
    """One supervised daemon. See the module docstring.

    ``argv`` must keep the daemon in the foreground (it is the child we spawned);
    ``ready_check`` is polled after the spawn until it returns True (``ready_timeout`` seconds at
    most; it may raise :class:`ExportError` to fail the start at once, and may read what this
    start wrote to the log from offset ``log_start``). ``helper_pidfiles`` name pidfiles of
    helpers the daemon starts itself and that may have left its session; they (and the
    sessions they lead) are stopped with it, provided their command line contains
    ``helper_match`` when that is set.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        pidfile: Path,
        logfile: Path,
        ready_check: Callable[[], bool],
        *,
        ready_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        helper_pidfiles: Sequence[Path] = (),
        helper_match: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.pidfile = Path(pidfile)
        self.logfile = Path(logfile)
        self.ready_check = ready_check
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.helper_pidfiles = [Path(p) for p in helper_pidfiles]
        self.helper_match = helper_match
        self.env = env
        self.cwd = cwd
        self._proc: subprocess.Popen | None = None
        # Size of the log when the current start began: ready checks may read what it wrote.
        self.log_start = 0

    # --- state ---------------------------------------------------------------------------

    def _record(self) -> tuple[int, int, int] | None:
        """(pid, starttime, sid) from the pidfile, or None."""
        try:
            fields = self.pidfile.read_text().split()
            pid, start, sid = (int(x) for x in fields[:3])
            return pid, start, sid
        except (OSError, ValueError):
            return None

    @property
    def pid(self) -> int | None:
        """The daemon's pid while it runs, else None."""
        rec = self._record()
        if rec is None:
            return None
        pid, start, _sid = rec
        if self._proc is not None and self._proc.pid == pid and self._proc.poll() is not None:
            return None
        info = _proc_info(pid)
        if not _running(info) or info.starttime != start:
            return None
        return pid

    def alive(self) -> bool:
        """True while the daemon process runs (it may still be starting up)."""
        return self.pid is not None

    def healthy(self) -> bool:
        """Alive and its ready check passes."""
        try:
            return self.alive() and bool(self.ready_check())
        except Exception:
            return False

    # --- start ---------------------------------------------------------------------------

    def start(self) -> int:
        """Start the daemon and wait until it is ready; return its pid.

        Does nothing (returns the pid) if it already runs. On failure (exit during start-up or
        not ready in time) the daemon and its helpers are stopped and :class:`ExportError` says
        what happened, with the end of the log.
        """
        pid = self.pid
        if pid is not None:
            return pid
        self._cleanup_leftovers()
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        log_start = self.logfile.stat().st_size if self.logfile.exists() else 0
        self.log_start = log_start
        with open(self.logfile, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}: "
                      f"{' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                    env=self.env,
                    cwd=self.cwd,
                )
            except OSError as exc:
                raise ExportError(f"cannot start {self.name} ({self.argv[0]}): {exc}") from None
        self._proc = proc
        info = _proc_info(proc.pid)
        start = info.starttime if info else 0
        atomic_write(self.pidfile, f"{proc.pid} {start} {proc.pid}\n")

        deadline = time.monotonic() + self.ready_timeout
        while True:
            rc = proc.poll()
            if rc is not None:
                self.stop()
                raise ExportError(
                    f"{self.name} exited with status {rc} while starting; log {self.logfile}:\n"
                    + self._log_since(log_start)
                )
            try:
                ready = bool(self.ready_check())
            except ExportError as exc:
                # The check knows the start has failed for good.
                self.stop()
                raise ExportError(
                    f"{self.name} failed to start: {exc}\nlog {self.logfile}:\n"
                    + self._log_since(log_start)
                ) from None
            except Exception:
                ready = False
            if ready:
                return proc.pid
            if time.monotonic() > deadline:
                self.stop()
                raise ExportError(
                    f"{self.name} was not ready after {self.ready_timeout:g} s and was stopped; "
                    f"log {self.logfile}:\n" + self._log_since(log_start)
                )
            time.sleep(0.1)

    def _log_since(self, offset: int, lines: int = 40) -> str:
        """The last lines this start wrote to the log."""
        try:
            with open(self.logfile, "rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            data = b""
        text = "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
        return text or "(empty log)"

    # --- stop ----------------------------------------------------------------------------

    def _helper_pids(self) -> list[int]:
        """Live helpers named by the helper pidfiles (and their sessions, when they lead one).

        A pid from a pidfile is trusted only if its command line contains ``helper_match``
        (when set), so a stale pidfile never gets an unrelated process signalled.
        """
        pids = []
        for path in self.helper_pidfiles:
            pid = _read_pid(path)
            if pid is None or pid <= 1 or pid == os.getpid():
                continue
            info = _proc_info(pid)
            if not _running(info):
                continue
            if self.helper_match is not None and self.helper_match not in _cmdline(pid):
                continue
            pids.append(pid)
            if info.sid == pid and pid != os.getsid(0):
                pids.extend(p for p in session_members(pid) if p != pid)
        return pids

    def _targets(self, pid: int | None, sid: int | None) -> set[int]:
        targets: set[int] = set()
        if pid is not None and _running(_proc_info(pid)):
            targets.add(pid)
        if sid is not None and sid > 1 and sid != os.getsid(0):
            targets.update(session_members(sid))
        for hp in self._helper_pids():
            if _running(_proc_info(hp)):
                targets.add(hp)
        targets.discard(os.getpid())
        return targets

    def stop(self) -> bool:
        """Stop the daemon and its helpers (SIGTERM, then SIGKILL). True if something was stopped."""
        rec = self._record()
        pid = self.pid
        sid = rec[2] if rec is not None else None
        if pid is None and rec is not None:
            # The recorded process is gone (or the pid was recycled): only its session remains
            # interesting, and only if the session leader is not a different, live process.
            leader = _proc_info(rec[0])
            if _running(leader) and leader.starttime != rec[1]:
                sid = None
        stopped = False
        # Helpers may drop their pidfiles when the daemon goes: remember them (with start times,
        # so a pid recycled meanwhile is not signalled).
        early = {p: _proc_info(p) for p in self._targets(None, sid)}

        def still(pids) -> set[int]:
            out = set()
            for p in pids:
                now = _proc_info(p)
                then = early.get(p)
                if _running(now) and (then is None or then.starttime == now.starttime):
                    out.add(p)
            return out

        if pid is not None:
            self._signal(pid, signal.SIGTERM)
            stopped = True
            self._wait_gone({pid}, self.stop_timeout)
        targets = self._targets(None, sid) | still(early)
        if targets:
            stopped = True
            for t in targets:
                self._signal(t, signal.SIGTERM)
            self._wait_gone(targets, min(self.stop_timeout, 5.0))
        left = self._targets(pid, sid) | still(targets)
        for t in left:
            self._signal(t, signal.SIGKILL)
        if left:
            stopped = True
            self._wait_gone(left, 5.0)
        self._reap()
        for path in [self.pidfile, *self.helper_pidfiles]:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        return stopped

    def _cleanup_leftovers(self) -> None:
        """Before a start: stop helpers a dead previous instance left behind."""
        if self._record() is not None or any(p.exists() for p in self.helper_pidfiles):
            self.stop()

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _wait_gone(self, pids: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._reap()
            if not any(_running(_proc_info(p)) for p in pids):
                return
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.poll()

    # --- supervision ---------------------------------------------------------------------

    def restart_if_dead(self) -> bool:
        """Start the daemon again if it died; True if it was restarted."""
        if self.alive():
            return False
        self.stop()  # helpers of the dead instance, stale pidfiles
        self.start()
        return True

    def __repr__(self) -> str:
        return f"Service({self.name!r}, pid={self.pid})"


def process_start_time(pid: int) -> int | None:
    info = _proc_info(pid)
    return info.starttime if _running(info) else None
