"""What several sofsctl commands share: running a job that needs the RING (here, or in the
mount process that holds it) and reading the volumes of a data directory."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from chunkstore import errors as cerr
from chunkstore.atomicfile import atomic_write
from chunkstore.placement.layout import RUN_DIR
from chunkstore.ring.hosted import running_host
from chunkstore.ring.open import is_networked, open_ring
from fuse_mount import control, ringhost
from fuse_mount.ctlserver import to_jsonable
from sofs import errors as ferr
from sofs.volume import VolumeConfig, list_volume_names, load_volume

from .common import fail
from .progress import ProgressLine, job_callback

JOB_FILE = "sofsctl-job.json"  # under DATA_DIR/run: the job a sofsctl process runs on the ring


def job_path(home: Path) -> Path:
    return Path(home) / RUN_DIR / JOB_FILE


def running_job(home: Path) -> dict | None:
    """The job a sofsctl process runs on the ring here (op, pid, started, done, total,
    updated), if its process is alive."""
    try:
        job = json.loads(job_path(home).read_text())
        os.kill(int(job["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return job if isinstance(job, dict) else None


def _busy_message(home: Path, e: Exception) -> str:
    job = running_job(home)
    if job is None:
        return str(e)
    since = time.strftime("%H:%M:%S", time.localtime(job.get("started", 0)))
    return (f"the ring is held by sofsctl {job.get('op')} (pid {job.get('pid')}, since {since}, "
            f"{job.get('done', 0)}/{job.get('total', 0)} done): wait for it, or stop it with "
            f"kill -INT {job.get('pid')}")


class _JobRecord:
    """Progress of a job this process runs on the ring, written to :func:`job_path` (at most
    once a second) so ``status`` in another shell can show it."""

    def __init__(self, home: Path, op: str, progress) -> None:
        self.path = job_path(home)
        self.doc = {"op": op, "pid": os.getpid(), "started": time.time(), "done": 0, "total": 0}
        self.progress = progress
        self.written = 0.0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write()

    def _write(self) -> None:
        self.doc["updated"] = time.time()
        atomic_write(self.path, json.dumps(self.doc))
        self.written = time.monotonic()

    def __call__(self, done: int, total: int, *rest) -> None:
        self.doc["done"], self.doc["total"] = done, total
        if time.monotonic() - self.written >= 1.0:
            self._write()
        self.progress(done, total, *rest)

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def ring_job(home: Path, op: str, run_local, label: str | None = None,
             args: dict | None = None, record: bool = False, unit: str = "chunks",
             succeeded: Callable[[Any], bool] | None = None):
    """Run a job that needs the RING: here (``run_local(ring, progress)``; with ``record``,
    recorded for ``status`` while it runs), or as admin op ``op`` (with ``args``) in the mount
    process that holds it. With a ``label``, its progress line is drawn on a terminal:
    ``progress(done, total)`` counts in ``unit``, ``progress(done, total, bytes_done,
    bytes_total)`` bytes; it ends at 100% unless the job fails or ``succeeded(result)`` says
    it did not finish (a cancelled sweep)."""
    if label is None:
        return _run_ring_job(home, op, run_local, lambda *a, **k: None, args, record)
    with ProgressLine(label, unit) as line:
        result = _run_ring_job(home, op, run_local, job_callback(line, unit), args, record)
        if succeeded is not None and not succeeded(result):
            line.finish(ok=False, note="cancelled")
    return result


def _run_ring_job(home: Path, op: str, run_local, progress, args: dict | None, record: bool):
    try:
        ring = open_ring(home, instance="sofsctl")
    except cerr.ClusterInUse as e:
        if is_networked(home):
            raise fail(f"another sofsctl job holds this data directory: "
                       f"{_busy_message(home, e)}") from None
        try:  # a mount process serves the RING: it runs the job for us
            return control.call(home, op, progress, args=args)
        except control.MountError as e:
            raise fail(_busy_message(home, e)) from None
    except cerr.ChunkStoreError as e:
        raise fail(e) from None
    job = _JobRecord(home, op, progress) if record else None
    try:
        return to_jsonable(run_local(ring, job or progress))
    finally:
        if job is not None:
            job.close()
        ring.close()


def open_ring_or_host(home: Path, instance: str = "sofsctl"):
    """The RING of ``home`` opened here, or, while the embedded ring's host serves it (other
    volumes are mounted), a client of that host. Other errors as open_ring's."""
    try:
        return open_ring(home, instance=instance)
    except cerr.ClusterInUse:
        if is_networked(home) or running_host(home) is None:
            raise
        return ringhost.open_client(home, instance)


def volumes(home: Path) -> list[VolumeConfig]:
    """Volume configs; an unreadable one is reported and skipped, not fatal."""
    out = []
    for name in list_volume_names(home):
        try:
            out.append(load_volume(home, name))
        except ferr.VolumeError as e:
            click.echo(f"warning: {e}", err=True)
    return out


def require_volume(home: Path, name: str) -> VolumeConfig:
    """Volume ``name``'s config, or the command fails naming the volumes there are and the
    closest to what was typed."""
    vols = {v.name: v for v in volumes(home)}
    if name in vols:
        return vols[name]
    names = sorted(vols)
    close = difflib.get_close_matches(name, names, n=1) or [
        n for n in names if n.lower() == name.lower()]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise fail(f"no volume {name!r}; volumes: {', '.join(names) or 'none'}{hint}")


def ask_mount(home: Path, op: str, volume: str | None = None, **args: object):
    """Admin op ``op`` (with keyword ``args``) of the mount process that serves the ring here
    (on a networked data directory: ``volume``'s mount); the command fails with the reason."""
    try:
        return control.call(home, op, timeout=30, volume=volume, args=args or None)
    except control.MountError as e:
        raise fail(e) from None
