"""sd_notify without libsystemd: what arrives on a real AF_UNIX datagram socket (a path, and
the abstract namespace), the no-op outside systemd, refused states, and ``sofs-node`` itself
saying READY=1 once it listens and STOPPING=1 on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from chunkstore import sdnotify
from chunkstore.disk.store import DiskStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def listener(tmp_path, monkeypatch):
    """A bound datagram socket with NOTIFY_SOCKET naming its path; yields the socket."""
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield s
    s.close()


def test_ready_arrives_on_a_path_socket(listener):
    assert sdnotify.notify("READY=1") is True
    assert listener.recv(4096) == b"READY=1"


def test_several_variables_in_one_datagram(listener):
    assert sdnotify.notify("READY=1\nSTATUS=serving 2 disks")
    assert listener.recv(4096) == b"READY=1\nSTATUS=serving 2 disks"
    assert sdnotify.notify("STOPPING=1")
    assert listener.recv(4096) == b"STOPPING=1"


def test_abstract_namespace(monkeypatch):
    name = f"sofs-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(b"\0" + name.encode())
        s.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("STATUS=checkpointing") is True
        assert s.recv(4096) == b"STATUS=checkpointing"


def test_no_socket_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert sdnotify.notify("READY=1") is False


def test_unsupported_address_and_dead_socket_return_false(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert sdnotify.notify("READY=1") is False
    assert "cannot tell the service manager READY=1" in caplog.text


@pytest.mark.parametrize("state", ["", "READY", "READY=1\n", "=1"])
def test_malformed_states_are_refused(state, listener):
    with pytest.raises(ValueError):
        sdnotify.notify(state)


def _node_config(tmp_path: Path) -> Path:
    DiskStore.initialise(tmp_path / "d0", "cluster-t", "d0")
    secret = tmp_path / "secret"
    secret.write_bytes(b"test-cluster-secret-0123456789abcdef\n")
    os.chmod(secret, 0o600)
    config = tmp_path / "node.json"
    config.write_text(json.dumps({"node_id": "n1", "host": "127.0.0.1", "port": 0,
                                  "cluster_id": "cluster-t", "secret_file": "secret",
                                  "disks": [{"id": "d0", "path": "d0"}]}))
    return config


@pytest.mark.integration
def test_sofs_node_says_ready_once_listening_and_stopping_on_sigterm(tmp_path, listener):
    config = _node_config(tmp_path)
    state = tmp_path / "state.json"
    proc = subprocess.Popen([sys.executable, "-m", "chunkstore.net.node", "--config", str(config),
                             "--state-file", str(state)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        lines = listener.recv(4096).decode().split("\n")
        assert lines[0] == "READY=1"
        assert any(line.startswith("STATUS=") and "n1" in line for line in lines)
        # READY=1 comes after the listening socket and the state file: it serves at once
        port = json.loads(state.read_text())["port"]
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        proc.send_signal(signal.SIGTERM)
        assert listener.recv(4096).decode().split("\n")[0] == "STOPPING=1"
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
