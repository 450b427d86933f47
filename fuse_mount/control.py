"""Starting and stopping mount processes, for ``sofsctl mount`` / ``sofsctl umount``.

A background mount is a detached ``python -m fuse_mount.daemon`` that writes its log to
``DATA_DIR/log/mount-VOLUME.log`` and says "ready" (or the error) through a pipe, so the
command returns only when the mount really serves or has really failed. Unmounting asks the
kernel (``fusermount3 -u``, which refuses while files are open) and then waits for the process
to flush and exit, so the volume can be mounted again at once. A mount point left dead by a
killed process ("Transport endpoint is not connected") is cleared the same way. A mount that
other mount namespaces still hold is named and ended (see :func:`unmount`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import holders, runstate, unmountreport
from .ctlserver import socket_path
from .errors import MountError, UnmountIncomplete

# after the detach, how long the mount process may take before sofsctl looks for other mount
# namespaces holding the mount (flushing goes on as long as the umount --timeout allows)
UNMOUNT_GRACE_S = 5.0


def log_path(data_dir: Path, volume: str) -> Path:
    return Path(data_dir) / "log" / f"mount-{volume}.log"


def check_mountpoint(mountpoint: str) -> None:
    try:
        os.stat(mountpoint)
    except FileNotFoundError:
        raise MountError(f"{mountpoint}: no such directory") from None
    except OSError as e:
        if e.errno == 107:  # ENOTCONN: a dead FUSE mount
            raise MountError(f"{mountpoint}: a dead mount is still there "
                             f"(its process was killed); run: sofsctl umount {mountpoint}") from None
        raise MountError(f"{mountpoint}: {e.strerror}") from None
    if not os.path.isdir(mountpoint):
        raise MountError(f"{mountpoint}: not a directory")
    if runstate.is_mounted(mountpoint):
        raise MountError(f"{mountpoint}: something is already mounted there")


def start_background(data_dir: Path, volume: str, mountpoint: str, *, timeout: float = 60.0,
                     gc_grace_s: float | None = None, gc_interval_s: float | None = None,
                     down_after_s: float | None = None, daemon_args: Sequence[str] = (),
                     standby_ok: bool = False) -> int:
    """Start a detached mount process; return its pid once it serves (or, STANDBY_OK, once
    it waits as a standby for the volume's lease)."""
    check_mountpoint(mountpoint)
    log = log_path(data_dir, volume)
    log.parent.mkdir(parents=True, exist_ok=True)
    r, w = os.pipe()
    cmd = [sys.executable, "-m", "fuse_mount.daemon", "--data-dir", str(data_dir),
           "--ready-fd", str(w)]
    if gc_grace_s is not None:
        cmd += ["--gc-grace", str(gc_grace_s)]
    if gc_interval_s is not None:
        cmd += ["--gc-interval", str(gc_interval_s)]
    if down_after_s is not None:
        cmd += ["--down-after", str(down_after_s)]
    cmd += list(daemon_args)
    cmd += [volume, os.path.realpath(mountpoint)]
    with open(log, "ab") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                pass_fds=(w,), start_new_session=True, close_fds=True)
    os.close(w)
    try:
        answer = read_ready_line(r, time.monotonic() + timeout)
    except TimeoutError:
        proc.kill()
        raise MountError(f"mount did not become ready in {timeout:.0f} s; see {log}") from None
    finally:
        os.close(r)
    text = answer.decode(errors="replace").strip()
    if text == "standby" and standby_ok:  # waits for the volume's lease, then mounts
        return proc.pid
    if text != "ready":
        proc.wait(timeout=30)
        raise MountError(f"mount failed: {text.removeprefix('error: ') or 'process exited'} "
                         f"(log: {log})")
    return proc.pid


def read_ready_line(fd: int, deadline: float) -> bytes:
    """What a starting daemon writes on its readiness pipe, up to its first newline or its
    end (the daemon exited); TimeoutError at ``deadline`` (time.monotonic())."""
    answer = b""
    while b"\n" not in answer:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            answer += chunk
    return answer


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # reap it if it is our own child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def _find_mount_process(data_dir: Path, real: str) -> runstate.MountState | None:
    """The mount process serving ``real``: from our run state, else from the process table
    (when the admin gave another --data-dir than the one the mount was started with)."""
    state = runstate.find(data_dir, real)
    if state is not None:
        return state
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"fuse_mount.daemon" in argv and real.encode() in argv:
            return runstate.MountState(pid=int(entry), volume="?", mountpoint=real,
                                       data_dir="?")
    return None


def unmount(data_dir: Path, mountpoint: str, *, timeout: float = 120.0) -> str:
    """Unmount and wait for the mount process to finish; returns what was done.

    When the process has not ended ``UNMOUNT_GRACE_S`` after the detach and other mount
    namespaces still hold a copy of the mount (:mod:`.holders`), it never would: they are
    named, and the process is told to end (SIGTERM: it flushes and exits as on any unmount),
    which leaves their copies disconnected."""
    real = os.path.realpath(mountpoint)
    state = _find_mount_process(data_dir, real)
    device = holders.device_of(real)
    if runstate.is_mounted(real):
        res = subprocess.run(["fusermount3", "-u", real], capture_output=True, text=True)
        if res.returncode != 0:
            err = res.stderr.strip()
            if "not connected" in err or (state is not None and not state.alive):
                subprocess.run(["umount", "-l", real], capture_output=True)
            elif "busy" in err.lower():
                raise MountError(f"{real} is busy: files are open there (or it is exported); "
                                 "close them or stop the exports first" + _users_of(real))
            else:
                raise MountError(f"fusermount3 -u {real}: {err}")
    elif state is None:
        raise MountError(f"{real}: not mounted")
    notes: list[str] = []
    if state is not None and state.alive:
        grace = min(UNMOUNT_GRACE_S, timeout)
        if not _wait_gone(state.pid, grace):
            held = holders.holders(device, real)
            if held:
                notes.append(f"{real} was still mounted in {len(held)} other mount "
                             f"namespace(s), which kept the mount process {state.pid} serving:")
                notes += [f"  {h.describe()}" for h in held]
                notes.append(f"ended mount process {state.pid}; their copies are now "
                             "disconnected; clear them with:")
                notes += [f"  {h.clear_command()}" for h in held]
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state.pid, signal.SIGTERM)
            if not _wait_gone(state.pid, max(timeout - grace, 0.0)):
                raise MountError(f"mount process {state.pid} did not finish flushing in "
                                 f"{timeout:.0f} s; see {log_path(data_dir, state.volume)}")
    if state is not None:
        runstate.remove(data_dir, state)
        report = unmountreport.take(data_dir, state.volume, state.pid)
        if report is not None:
            notes += report.lines()
            if report.final_error is not None:
                raise UnmountIncomplete("\n".join(
                    [*notes, f"unmounted {real}, but data buffered at the unmount is not stored "
                     f"(see {log_path(data_dir, state.volume)})"]))
        if not state.alive:
            return "\n".join([*notes, f"unmounted {real} (volume {state.volume})"])
    return "\n".join([*notes, f"unmounted {real}"])


def _users_of(real: str) -> str:
    """``; used by: pid comm (cwd), ...`` for processes of this namespace with a file, cwd or
    root under ``real`` (what fuser -vm shows), or nothing."""
    users = []
    prefix = real.rstrip("/") + "/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        base = f"/proc/{entry}"
        try:
            links = [os.readlink(f"{base}/cwd"), os.readlink(f"{base}/root")]
            links += [os.readlink(f"{base}/fd/{fd}") for fd in os.listdir(f"{base}/fd")]
            with open(f"{base}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if any(link == real or link.startswith(prefix) for link in links):
            users.append(f"{entry} {comm}")
    return f"; used by: {', '.join(users[:10])}" if users else ""


def call(data_dir: Path, op: str, progress=None, timeout: float | None = None,
         volume: str | None = None, args: dict | None = None) -> Any:
    """Run admin ``op`` (with keyword ``args``) in the mount process that serves the RING;
    returns its result.

    ``progress(done, total)`` is called as the job reports (with ``phase=name`` too when
    the job names its phases). Raises MountError when no mount
    process answers or the job failed.
    """
    path = socket_path(data_dir, volume)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(str(path))
        except OSError as e:
            raise MountError(f"no mount process answers on {path}: {e.strerror}") from None
        s.sendall(json.dumps({"op": op, **({"args": args} if args else {})}).encode() + b"\n")
        for line in s.makefile("rb"):
            msg = json.loads(line)
            if "progress" in msg:
                if progress is not None:
                    if "phase" in msg:
                        progress(*msg["progress"], phase=msg["phase"])
                    else:
                        progress(*msg["progress"])
            elif "error" in msg:
                raise MountError(msg["error"])
            elif "result" in msg:
                return msg["result"]
        raise MountError("the mount process closed the connection without an answer")
    finally:
        s.close()
