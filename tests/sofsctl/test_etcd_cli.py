"""``sofsctl etcd init|run|status`` with real etcd members started by ``sofsctl etcd run``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from .cli import ROOT, sofsctl

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("etcd") is None,
                                 reason="etcd not installed (scripts/install)")]


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _run_member(data, name: str, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sofsctl", "--data-dir", str(data),
                             "etcd", "run", name], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log)


def _status_until(data, want_rc: int, what: str, says: str = "") -> subprocess.CompletedProcess:
    deadline = time.monotonic() + 60
    while True:
        res = sofsctl(data, "etcd", "status", "--timeout", "1")
        if res.returncode == want_rc and says in res.stdout:
            return res
        if time.monotonic() > deadline:
            raise AssertionError(f"etcd status never {what}:\n{res.stdout}\n{res.stderr}")
        time.sleep(0.3)  # polling for members to start or go, not a timed assertion


def test_three_members_set_up_run_and_lose_quorum(tmp_path):
    data = tmp_path / "data"
    ports = _ports(6)
    members = [f"--member=e{i}=127.0.0.1:{ports[2 * i]}:{ports[2 * i + 1]}" for i in range(3)]
    res = sofsctl(data, "etcd", "init", *members)
    assert res.returncode == 0, res.stderr
    assert "etcd run e2" in res.stdout
    assert os.stat(data / "etcd" / "members.json").st_mode & 0o777 == 0o600
    assert os.stat(data / "pki" / "ca.key").st_mode & 0o777 == 0o600
    again = sofsctl(data, "etcd", "init")
    assert again.returncode == 1 and "already set up" in again.stderr
    procs = {}
    log = open(tmp_path / "etcd.log", "ab")
    try:
        for i in range(3):
            procs[f"e{i}"] = _run_member(data, f"e{i}", log)
        # healthy as soon as a majority answers: wait for the third member too
        res = _status_until(data, 0, "healthy", says="3 of 3 members up")
        assert "3 of 3 members up" in res.stdout and res.stdout.count("leader") >= 1
        doc = json.loads(sofsctl(data, "etcd", "status", "--json").stdout)
        assert [m["name"] for m in doc] == ["e0", "e1", "e2"]
        assert sum(m["is_leader"] for m in doc) == 1 and all(m["ok"] for m in doc)
        assert os.stat(data / "etcd" / "e0").st_mode & 0o777 == 0o700
        for name in ("e0", "e1"):  # two of three gone: no majority
            procs[name].kill()
            procs[name].wait(30)
        res = _status_until(data, 1, "without quorum")
        assert "NO QUORUM" in res.stdout and "DOWN" in res.stdout
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(30)
        log.close()


def test_bad_member_lists_are_refused(tmp_path):
    res = sofsctl(tmp_path, "etcd", "init", "--member", "a=127.0.0.1", "--member",
                  "b=127.0.0.2")
    assert res.returncode == 1 and "2 etcd members" in res.stderr
    res = sofsctl(tmp_path, "etcd", "init", "--member", "a=127.0.0.1:notaport")
    assert res.returncode == 1 and "ports must be numbers" in res.stderr
    assert not (tmp_path / "etcd" / "members.json").exists()
    res = sofsctl(tmp_path, "etcd", "status")
    assert res.returncode == 1 and "sofsctl etcd init" in res.stderr
    res = sofsctl(tmp_path, "etcd", "run", "e0")
    assert res.returncode == 1 and "no etcd set up" in res.stderr
