"""The admin socket: well-formed jobs stream progress and a result; bad requests get an error
line and the server keeps serving."""

from __future__ import annotations

import json
import socket
import time

import pytest
import trio

from fuse_mount import control
from fuse_mount.ctlserver import serve, socket_path


def _ops():
    def slow(progress):
        for i in range(4):
            progress(i, 4)
            time.sleep(0.3)
        return {"done": b"\x01\x02"}

    def boom(progress):
        raise RuntimeError("disk on fire")

    return {"slow": slow, "boom": boom}


def _raw(path, payload: bytes) -> list[dict]:
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(path))
    data = b""
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        while chunk := s.recv(65536):
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass  # an oversized request may be cut off: a closed connection is a fine answer
    finally:
        s.close()
    return [json.loads(line) for line in data.splitlines()]


@pytest.mark.parametrize("payload", [b"not json\n", b"[1,2]\n", b'{"op": 5}\n', b"\n",
                                     b'{"op": "nope"}\n', b"x" * 100_000 + b"\n",
                                     b'{"op": "slow", "args": [1]}\n'])
def test_bad_requests_get_an_error_and_the_server_lives_on(tmp_path, payload):
    path = socket_path(tmp_path)
    answers = {}

    async def main():
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, path, _ops())
            answers["bad"] = await trio.to_thread.run_sync(_raw, path, payload)
            seen = []
            answers["good"] = await trio.to_thread.run_sync(
                lambda: control.call(tmp_path, "slow", lambda d, t: seen.append((d, t))))
            answers["progress"] = seen
            with pytest.raises(control.MountError, match="disk on fire"):
                await trio.to_thread.run_sync(control.call, tmp_path, "boom")
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert answers["bad"] == [] or (len(answers["bad"]) == 1 and "error" in answers["bad"][0])
    assert answers["good"] == {"done": "0102"}
    assert answers["progress"] and all(t == 4 for _, t in answers["progress"])
    assert not path.exists()


def test_no_mount_process_is_a_clear_error(tmp_path):
    with pytest.raises(control.MountError, match="no mount process"):
        control.call(tmp_path, "health")


def test_jobs_can_name_their_phases(tmp_path):
    path = socket_path(tmp_path)
    seen = []

    def phased(progress):
        for phase in ("inodes", "entries"):
            for i in range(3):
                progress(i, 3, phase)
                time.sleep(0.3)
        return {}

    async def main():
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, path, {"phased": phased})
            await trio.to_thread.run_sync(lambda: control.call(
                tmp_path, "phased", lambda d, t, phase="": seen.append((phase, t))))
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert {p for p, _ in seen} == {"inodes", "entries"}


def test_operations_get_the_requests_args(tmp_path):
    path = socket_path(tmp_path)
    got = {}

    def keys(progress, keys: list[str], volumes: list[str]):
        return {"keys": keys, "volumes": volumes}

    async def main():
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, path, {"keys": keys})
            got["ok"] = await trio.to_thread.run_sync(lambda: control.call(
                tmp_path, "keys", args={"keys": ["ab" * 20], "volumes": ["pacs"]}))
            with pytest.raises(control.MountError, match="unexpected keyword"):
                await trio.to_thread.run_sync(lambda: control.call(
                    tmp_path, "keys", args={"keys": [], "volumes": [], "evil": 1}))
            with pytest.raises(control.MountError, match="missing"):
                await trio.to_thread.run_sync(lambda: control.call(tmp_path, "keys"))
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert got["ok"] == {"keys": ["ab" * 20], "volumes": ["pacs"]}
