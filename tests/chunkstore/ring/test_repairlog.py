"""The repair log's durability (issue 13): a note (a quorum-only write's debt) is synced before
it returns, concurrent notes share syncs (group commit), and the counts say how old the oldest
debt is (dated on the injected clock)."""

from __future__ import annotations

import threading

from chunkstore.clock import FakeClock
from chunkstore.placement.keys import ChunkRef, chunk_key
from chunkstore.protection.policy import parse_policy
from chunkstore.ring.repairlog import DELETED, NEEDS_REPAIR, RepairLog


def _ref(n: int) -> ChunkRef:
    payload = f"chunk {n}".encode()
    return ChunkRef(chunk_key(payload), len(payload), parse_policy("cos2").code)


def test_a_note_is_synced_before_it_returns(tmp_path):
    log = RepairLog(tmp_path / "rl")
    try:
        seen: list[bool] = []
        real = log._flush_wal

        def flush() -> None:  # the sync runs with the entry already written
            seen.append(log.get(_ref(1).key) is not None)
            real()
        log._flush_wal = flush  # type: ignore[method-assign]
        log.note(_ref(1))
        assert seen == [True]
        log.note(_ref(2), DELETED)
        assert seen == [True, True] and log.syncs == 2
        log.clear(_ref(1).key)  # a clear is not synced: losing one only re-checks a chunk
        assert log.syncs == 2
    finally:
        log.close()


class _CountingLock:
    """A lock that tells a condition each time it is released."""

    def __init__(self, cond: threading.Condition) -> None:
        self._lock = threading.Lock()
        self._cond = cond

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        with self._cond:
            self._cond.notify_all()


def test_concurrent_notes_share_one_sync(tmp_path):
    log = RepairLog(tmp_path / "rl")
    cond = threading.Condition()
    log._seq_lock = _CountingLock(cond)  # type: ignore[assignment]
    entered, release = threading.Event(), threading.Event()
    real = log._flush_wal
    calls = 0

    def flush() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the first sync is slow: two more notes arrive meanwhile
            entered.set()
            assert release.wait(30)
        real()
    log._flush_wal = flush  # type: ignore[method-assign]
    threads = [threading.Thread(target=log.note, args=(_ref(0),))]
    try:
        threads[0].start()
        assert entered.wait(30)
        threads += [threading.Thread(target=log.note, args=(_ref(n),)) for n in (1, 2)]
        for t in threads[1:]:
            t.start()
        with cond:  # both written and counted, waiting behind the running sync
            assert cond.wait_for(lambda: log._written == 3, timeout=30)
        release.set()
        for t in threads:
            t.join(30)
            assert not t.is_alive()
        assert calls == 2 and log.syncs == 2  # 3 notes, the last two in one sync
        assert log._synced == 3
        assert {e.ref.key for e in log.entries()} == {_ref(n).key for n in range(3)}
    finally:
        release.set()
        log.close()


def test_counts_say_when_the_oldest_debt_was_noted(tmp_path):
    clock = FakeClock(wall_start=1_800_000_000.0)
    log = RepairLog(tmp_path / "rl", clock=clock)
    try:
        assert log.counts() == {"needs_repair": 0, "deleted": 0, "oldest_needs_repair": 0}
        log.note(_ref(1), DELETED)
        clock.step_wall(60)
        log.note(_ref(2), NEEDS_REPAIR)
        clock.step_wall(60)
        log.note(_ref(3), NEEDS_REPAIR)
        assert log.counts() == {"needs_repair": 2, "deleted": 1,
                                "oldest_needs_repair": 1_800_000_060}
    finally:
        log.close()
