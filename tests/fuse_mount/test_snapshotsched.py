"""The mount's snapshot scheduler (fuse_mount.snapshotops.snapshot_scheduler) over virtual
time: trio's MockClock drives its sleeps and the volume's wall clock, so hours pass at once
(it jumps only after half a second of real idleness, never while a snapshot is being taken in
a worker thread)."""

from __future__ import annotations

import trio
import trio.testing

from chunkstore.ring.memory import MemoryChunkStore
from fuse_mount.snapshotops import run_snapshot_op, snapshot_scheduler
from sofs.fs import Filesystem
from sofs.snapshot.manager import Snapshots
from sofs.volume import create_volume

START = 1_800_000_000.0


class TrioWall:
    """A wall clock that follows trio's (mock) clock: START + its current time."""

    def __init__(self, mock: trio.testing.MockClock) -> None:
        self.mock = mock

    def time(self) -> float:
        return START + self.mock.current_time()

    def monotonic(self) -> float:
        return self.mock.current_time()

    def sleep(self, seconds: float) -> None:
        raise AssertionError("nothing sleeps here")

    def wait(self, event, seconds: float) -> bool:
        raise AssertionError("nothing waits here")


def test_the_scheduler_takes_hourly_snapshots_and_keeps_the_newest(tmp_path):
    create_volume(tmp_path, "v", block_size=64 * 1024)
    mock = trio.testing.MockClock(autojump_threshold=0.5)
    wall = TrioWall(mock)
    fs = Filesystem.open_volume(tmp_path, "v", MemoryChunkStore(), clock=wall)
    try:
        snaps = Snapshots(fs, wall)
        assert run_snapshot_op(snaps, "snapshot-schedule", {"keep": "hourly=2"}) == {"hourly": 2}
        snaps.create("by-hand")
        forgotten: list[str] = []

        async def main() -> None:
            with trio.move_on_after(5 * 3600 + 30):
                await snapshot_scheduler(snaps, interval_s=3600, forget=forgotten.append)

        trio.run(main, clock=mock)
        ready = snaps.ready()
        assert [i.name for i in ready][0] == "by-hand"
        scheduled = [i for i in ready if i.scheduled]
        assert len(scheduled) == 2
        assert len(forgotten) == 3  # one an hour for five hours, the three oldest deleted
        assert not set(forgotten) & {i.name for i in ready}
        assert run_snapshot_op(snaps, "snapshot-schedule", {"keep": "off"}) is None
    finally:
        fs.close()
