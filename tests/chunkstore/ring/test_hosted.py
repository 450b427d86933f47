"""The hosted ring client's repair log: what it forwards to the ring host, and when a failed
forward must fail the write (unit tests; the real host and mounts: tests/fuse_mount)."""

from __future__ import annotations

import pytest

from chunkstore.errors import DiskUnavailable, RingHostDown
from chunkstore.placement.keys import ChunkRef, chunk_key
from chunkstore.protection.policy import parse_policy
from chunkstore.ring.hosted import HostedRepairLog, HostState, host_state, make_secret
from chunkstore.ring.repairlog import DELETED, NEEDS_REPAIR


def _ref(n: int = 0) -> ChunkRef:
    payload = f"chunk {n}".encode()
    return ChunkRef(chunk_key(payload), len(payload), parse_policy("cos2").code)


class Recorder:
    def __init__(self, deleted: list[dict] | None = None, fail: bool = False) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.deleted = deleted or []
        self.fail = fail

    def __call__(self, op: str, args: dict):
        self.calls.append((op, args))
        if self.fail:
            raise RingHostDown("no host")
        return self.deleted if op == "repair-deleted" else {}


def test_notes_and_clears_are_forwarded(tmp_path):
    fwd = Recorder()
    log = HostedRepairLog(tmp_path / "rl", fwd)
    ref = _ref()
    log.note(ref, NEEDS_REPAIR)
    log.clear(ref.key)
    assert [op for op, _ in fwd.calls] == ["repair-note", "repair-clear"]
    note = fwd.calls[0][1]
    assert note == {"key": ref.key.hex(), "size": ref.size,
                    "policy": ref.policy.to_bytes().hex(), "kind": NEEDS_REPAIR}
    assert log.get(ref.key) is None
    log.close()


def test_the_hosts_deleted_chunks_are_merged_at_open(tmp_path):
    ref = _ref(1)
    fwd = Recorder(deleted=[{"key": ref.key.hex(), "size": ref.size,
                             "policy": ref.policy.to_bytes().hex()},
                            {"key": "not hex", "size": 1, "policy": "00"}])
    log = HostedRepairLog(tmp_path / "rl", fwd)
    log.merge_deleted()
    entry = log.get(ref.key)
    assert entry is not None and entry.kind == DELETED and entry.ref == ref
    assert len(log) == 1  # the malformed one is skipped
    log.close()


def test_clearing_a_deleted_entry_that_cannot_reach_the_host_fails(tmp_path):
    """The host's sweep removes the pieces of chunks its log says DELETED: a chunk written
    again must not stay DELETED there, so the write fails instead."""
    fwd = Recorder()
    log = HostedRepairLog(tmp_path / "rl", fwd)
    deleted, degraded = _ref(2), _ref(3)
    log.note(deleted, DELETED)
    log.note(degraded, NEEDS_REPAIR)
    fwd.fail = True
    log.clear(degraded.key)  # advisory: a warning, no error
    with pytest.raises(DiskUnavailable, match="written again"):
        log.clear(deleted.key)
    log.note(_ref(4))  # advisory too
    log.close()


def test_a_deleted_entry_whose_clear_did_not_reach_the_host_stays_for_the_retry(tmp_path):
    fwd = Recorder()
    log = HostedRepairLog(tmp_path / "rl", fwd)
    ref = _ref(5)
    log.note(ref, DELETED)
    fwd.fail = True
    with pytest.raises(DiskUnavailable):
        log.clear(ref.key)
    assert log.get(ref.key).kind == DELETED  # the put's retry will tell the host again
    fwd.fail = False
    log.clear(ref.key)
    assert log.get(ref.key) is None
    assert fwd.calls[-1] == ("repair-clear", {"key": ref.key.hex()})
    log.close()


def test_a_host_that_cannot_list_its_deleted_chunks_fails_the_open(tmp_path):
    log = HostedRepairLog(tmp_path / "rl", Recorder(fail=True))
    with pytest.raises(RingHostDown, match="deleted chunks"):
        log.merge_deleted()
    log.close()


def test_host_state_and_secret_files(tmp_path):
    assert host_state(tmp_path) is None
    (tmp_path / "run").mkdir()
    st = HostState(pid=0, host="127.0.0.1", port=4242, epoch=3, started=1.0)
    (tmp_path / "run" / "ringhost.json").write_text(st.to_json())
    assert host_state(tmp_path) == st
    assert not st.alive  # pid 0: written by a host that stopped
    (tmp_path / "run" / "ringhost.json").write_text("{not json")
    assert host_state(tmp_path) is None
    secret = make_secret(tmp_path)
    assert make_secret(tmp_path) == secret and len(secret) >= 32
    assert (tmp_path / "run" / "ringhost.secret").stat().st_mode & 0o777 == 0o600
