"""The mount process's admin socket: ``sofsctl`` commands that need a mounted volume's RING.

One process at a time serves the embedded RING (it holds the cluster lock), so the admin
commands that need the RING ask that process over a Unix socket, ``DATA_DIR/run/ring.sock``
(mode 0600: root only), instead of opening the disks themselves; on a networked data
directory each volume's mount has its own, ``DATA_DIR/run/mount-VOLUME.sock``.

Protocol: one request per connection, a JSON object on one line (at most 64 KiB), e.g.
``{"op": "repair"}``, with ``"args": {...}`` for an operation that takes arguments. The answer
is a sequence of JSON lines: zero or more
``{"progress": [done, total]}`` (with ``"phase": name`` for jobs of several phases) while the
job runs, then exactly one ``{"result": {...}}`` or
``{"error": "message"}``. Unknown ops and malformed requests get an error line; the server lives
on. The operations are the mount's to choose (:func:`fuse_mount.daemon.admin_ops`): ``health``
(chunk protection counts), ``repair`` (the full repair sweep, through the healer when there is
one), ``stats`` (mount statistics and the last checkpoint), ``fsck`` (a check of the mounted
volume, no repair), and when they apply ``checkpoint``, ``checkpoint-take-over`` and
``checkpoints`` (metadata checkpoints in the RING), ``sweep`` (the healer's progress) and
``cluster`` (node states of a networked RING), ``chunks`` (where the pieces of the chunks
named in its args are, for ``sofsctl chunk which`` and ``file info``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import trio

log = logging.getLogger("sofs.ctl")

MAX_REQUEST = 64 << 10
PROGRESS_INTERVAL_S = 0.5


class Progress(Protocol):
    """The progress callback an operation gets: ``progress(done, total, phase="")``."""

    def __call__(self, done: int, total: int, phase: str = "") -> None: ...


# An operation runs in a worker thread; it gets a progress callback (and the request's "args"
# as keyword arguments) and returns a JSON-serialisable result (dataclasses are converted).
Operation = Callable[..., Any]


def socket_path(data_dir: Path, volume: str | None = None) -> Path:
    """The admin socket of the process holding the embedded RING, or (``volume``) of that
    volume's mount on a networked data directory."""
    if volume is not None:
        return Path(data_dir) / "run" / f"mount-{volume}.sock"
    return Path(data_dir) / "run" / "ring.sock"


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


async def _send(stream: trio.SocketStream, obj: dict) -> None:
    await stream.send_all(json.dumps(obj).encode() + b"\n")


async def _read_request(stream: trio.SocketStream) -> dict:
    buf = b""
    with trio.move_on_after(10):
        while b"\n" not in buf and len(buf) <= MAX_REQUEST:
            data = await stream.receive_some(MAX_REQUEST)
            if not data:
                break
            buf += data
    line = buf.split(b"\n", 1)[0]
    if len(line) > MAX_REQUEST:
        raise ValueError("request too long")
    req = json.loads(line)
    if not isinstance(req, dict) or not isinstance(req.get("op"), str):
        raise ValueError('a request is a JSON object with a string "op"')
    if not isinstance(req.get("args", {}), dict):
        raise ValueError('"args" must be a JSON object')
    return req


# Jobs that change things or take long: one at a time. Every other op (health, stats, the
# healer's sweep status, ...) answers while one runs, so status works during a repair.
EXCLUSIVE_OPS = frozenset({"repair", "checkpoint", "checkpoint-take-over", "fsck", "disk-add"})


async def _handle(stream: trio.SocketStream, ops: dict[str, Operation],
                  busy: trio.Lock) -> None:
    async with stream:
        try:
            req = await _read_request(stream)
        except (ValueError, UnicodeDecodeError) as e:
            await _send(stream, {"error": f"malformed request: {e}"})
            return
        op = ops.get(req["op"])
        if op is None:
            await _send(stream, {"error": f"unknown op {req['op']!r}; known: {sorted(ops)}"})
            return
        exclusive = req["op"] in EXCLUSIVE_OPS
        if exclusive and busy.locked():
            await _send(stream, {"error": "another admin job is running on this mount"})
            return
        async with busy if exclusive else contextlib.nullcontext():
            progress: list[Any] = [[0, 0], ""]

            def report(done: int, total: int, *sized: int, phase: str = "") -> None:
                # (done, total), or (done, total, bytes_done, bytes_total): forwarded as given
                progress[0], progress[1] = [done, total, *sized], phase

            result: dict[str, Any] = {}
            done = trio.Event()

            async def run() -> None:
                try:
                    args = req.get("args", {})
                    result["result"] = to_jsonable(await trio.to_thread.run_sync(
                        lambda: op(report, **args)))
                except Exception as e:  # the job failed (or bad args): tell the admin, keep serving
                    log.exception("admin op %s failed", req["op"])
                    result["error"] = f"{type(e).__name__}: {e}"
                finally:
                    done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                while not done.is_set():
                    with trio.move_on_after(PROGRESS_INTERVAL_S):
                        await done.wait()
                    if not done.is_set() and progress[0][1]:
                        try:
                            msg: dict[str, Any] = {"progress": progress[0]}
                            if progress[1]:
                                msg["phase"] = progress[1]
                            await _send(stream, msg)
                        except trio.BrokenResourceError:
                            pass  # the client went away; the job still finishes
            try:
                await _send(stream, result)
            except trio.BrokenResourceError:
                pass


async def serve(path: Path, ops: dict[str, Operation], *,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``path`` until cancelled; the socket file is removed on the way out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(8)
    listener = trio.SocketListener(sock)
    busy = trio.Lock()
    try:
        async with trio.open_nursery() as nursery:
            task_status.started()

            async def handler(stream: trio.SocketStream) -> None:
                try:
                    await _handle(stream, ops, busy)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

            await trio.serve_listeners(handler, [listener], handler_nursery=nursery)
    finally:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
