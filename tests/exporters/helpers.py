"""Shared helpers for the exporter tests: free ports, scratch trees, guaranteed cleanup."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

import pytest

from exporters.service import Service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_root_and(*binaries: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/install adds them)")


@contextlib.contextmanager
def scratch_dir(prefix: str):
    """A world-traversable directory under /tmp (pytest's tmp_path is 0700, which squashed or
    unprivileged NFS/SMB identities could not enter), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def running(service: Service):
    """Start SERVICE; whatever happens, stop it and SIGKILL by pid anything it left."""
    seen: set[int] = set()
    try:
        pid = service.start()
        seen.add(pid)
        yield service
    finally:
        pid = service.pid
        if pid:
            seen.add(pid)
        try:
            service.stop()
        finally:
            for p in seen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
