"""The generic supervisor, with small stand-in daemons (sh, sleep, a Python TCP listener)."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from exporters.errors import ExportError
from exporters.service import Service, session_members, tcp_port_answers

from .helpers import free_port, running

LISTENER = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "print('listening', flush=True)\n"
    "while True: s.accept()[0].close()\n"
)


def listener(tmp_path, port, delay=0.0, **kw) -> Service:
    return Service(
        "listener",
        [sys.executable, "-c", LISTENER, str(port), str(delay)],
        pidfile=tmp_path / "listener.pid",
        logfile=tmp_path / "listener.log",
        ready_check=lambda: tcp_port_answers("127.0.0.1", port, 0.2),
        **kw,
    )


def test_start_ready_stop(tmp_path):
    port = free_port()
    svc = listener(tmp_path, port, delay=0.3)
    with running(svc):
        assert svc.alive() and svc.healthy()
        pid = svc.pid
        assert os.getsid(pid) == pid  # its own session
        assert svc.start() == pid  # already running: nothing new
        # another supervisor object (a later command) sees and stops the same process
        other = listener(tmp_path, port)
        assert other.pid == pid
        assert other.stop()
        assert not svc.alive() and not tcp_port_answers("127.0.0.1", port, 0.2)
    assert not svc.pidfile.exists()
    assert "listening" in svc.logfile.read_text()


def test_exit_during_start_reports_log(tmp_path):
    svc = Service("failing", ["sh", "-c", "echo 'bad config line 3' >&2; exit 3"],
                  tmp_path / "f.pid", tmp_path / "f.log", ready_check=lambda: False)
    with pytest.raises(ExportError, match=r"(?s)exited with status 3.*bad config line 3"):
        svc.start()
    assert not svc.alive()


def test_ready_timeout_stops_and_reports(tmp_path):
    svc = Service("slow", ["sh", "-c", "echo still-starting; exec sleep 60"],
                  tmp_path / "s.pid", tmp_path / "s.log", ready_check=lambda: False,
                  ready_timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(ExportError, match=r"(?s)not ready after 0.5 s.*still-starting"):
        svc.start()
    assert time.monotonic() - t0 < 10
    assert not svc.alive() and not svc.pidfile.exists()


def test_ready_check_can_fail_the_start(tmp_path):
    def check():
        raise ExportError("rejected its configuration")
    svc = Service("rejected", ["sleep", "60"], tmp_path / "r.pid", tmp_path / "r.log", check)
    with pytest.raises(ExportError, match="rejected its configuration"):
        svc.start()
    assert not svc.alive()


def test_stop_reaches_session_and_helpers(tmp_path):
    # a daemon that leaves a child in its session and a helper in a session of its own
    helper_pid = tmp_path / "helper.pid"
    script = (f"sleep 300 & setsid sh -c 'echo $$ > {helper_pid}; exec sleep 301 my-helper' & "
              "exec sleep 302")
    svc = Service("family", ["sh", "-c", script], tmp_path / "fam.pid", tmp_path / "fam.log",
                  ready_check=lambda: helper_pid.exists() and helper_pid.read_text().strip() != "",
                  helper_pidfiles=[helper_pid], helper_match="my-helper", stop_timeout=3)
    with running(svc):
        sid = svc.pid
        hp = int(helper_pid.read_text())
        assert len(session_members(sid)) == 2
        assert os.getsid(hp) == hp
        svc.stop()
        assert session_members(sid) == [] and session_members(hp) == []


def test_helper_pidfile_not_trusted_without_match(tmp_path):
    # a stale helper pidfile naming an unrelated process (here: this test) is ignored
    stale = tmp_path / "stale.pid"
    stale.write_text(f"{os.getpid()}\n")
    svc = Service("x", ["sleep", "60"], tmp_path / "x.pid", tmp_path / "x.log",
                  ready_check=lambda: True, helper_pidfiles=[stale], helper_match="nothing-like")
    with running(svc):
        pass
    svc.stop()  # we are still here


def test_recycled_pid_is_not_ours(tmp_path):
    # a pidfile whose pid now belongs to another process (start time differs) is not "alive"
    # and stop() does not signal that process
    proc = os.spawnlp(os.P_NOWAIT, "sleep", "sleep", "60")
    try:
        svc = Service("x", ["true"], tmp_path / "x.pid", tmp_path / "x.log", lambda: True)
        svc.pidfile.write_text(f"{proc} 1 {proc}\n")
        assert not svc.alive()
        svc.stop()
        assert os.waitpid(proc, os.WNOHANG) == (0, 0)  # still running
    finally:
        os.kill(proc, signal.SIGKILL)
        os.waitpid(proc, 0)


def test_sigkill_noticed_and_restarted(tmp_path):
    port = free_port()
    svc = listener(tmp_path, port)
    with running(svc):
        assert not svc.restart_if_dead()
        first = svc.pid
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while svc.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not svc.alive()
        assert svc.restart_if_dead()
        assert svc.alive() and svc.pid != first and tcp_port_answers("127.0.0.1", port)


def test_tcp_port_answers():
    port = free_port()
    assert not tcp_port_answers("127.0.0.1", port, 0.2)
    assert not tcp_port_answers("0.0.0.0", port, 0.2)
