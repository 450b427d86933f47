"""The snapshot schedule (sofs.snapshot.schedule): parsing ``--keep``, when a scheduled snapshot
is due, which ones are kept, and Snapshots.run_schedule over a volume with a fake clock."""

from __future__ import annotations

import datetime

import pytest

from chunkstore.clock import FakeClock
from sofs.errors import InvalidArgument, SnapshotUnreadable
from sofs.snapshot.catalog import SnapshotInfo
from sofs.snapshot.manager import Snapshots
from sofs.snapshot.schedule import Keep, expired, is_due, load_schedule, save_schedule, schedule_path

HOUR = 3600 * 10**9


def _ns(*ymdh: int) -> int:
    return int(datetime.datetime(*ymdh, tzinfo=datetime.timezone.utc).timestamp()) * 10**9


def _snap(ns: int, scheduled: bool = True, name: str | None = None) -> SnapshotInfo:
    return SnapshotInfo(name or f"s{ns}", ns, 1, scheduled=scheduled)


def test_keep_parses_and_refuses_nonsense():
    keep = Keep.parse("hourly=24,daily=30,monthly=12")
    assert (keep.hourly, keep.daily, keep.weekly, keep.monthly) == (24, 30, 0, 12)
    assert str(keep) == "hourly=24,daily=30,monthly=12"
    assert Keep.parse(" weekly=4 ").as_dict() == {"weekly": 4}
    for bad in ("", "hourly", "hourly=x", "yearly=3", "hourly=1,hourly=2", "daily=-1",
                "hourly=0"):
        with pytest.raises(InvalidArgument):
            Keep.parse(bad)


def test_a_snapshot_is_due_once_per_period_of_the_finest_kind():
    keep = Keep(hourly=3, daily=2)
    t = _ns(2026, 12, 3, 10) + 5 * 60 * 10**9
    assert is_due(keep, [], t)
    assert not is_due(keep, [_snap(_ns(2026, 12, 3, 10))], t)
    assert is_due(keep, [_snap(_ns(2026, 12, 3, 10), scheduled=False)], t)  # by hand: not it
    assert is_due(keep, [_snap(_ns(2026, 12, 3, 9))], t)
    assert not is_due(Keep(daily=1), [_snap(_ns(2026, 12, 3, 0))], t)


def test_the_newest_of_each_of_the_last_periods_are_kept():
    # one snapshot an hour for three days
    snaps = [_snap(_ns(2026, 12, 1) + h * HOUR) for h in range(72)]
    manual = _snap(_ns(2026, 11, 1), scheduled=False, name="by-hand")
    gone = set(expired(Keep(hourly=5, daily=2), [*snaps, manual]))
    kept = {s.name for s in snaps} - gone
    newest = [s.name for s in snaps[-5:]]
    end_of_day_2 = snaps[47].name  # the newest of Dec 2 (Dec 3's is among the hourly ones)
    assert kept == {*newest, end_of_day_2}
    assert "by-hand" not in gone
    assert expired(Keep(monthly=12), snaps) == [s.name for s in snaps[:-1]]


def test_the_schedule_file_round_trips_and_a_damaged_one_is_an_error(tmp_path):
    assert load_schedule(tmp_path) is None
    save_schedule(tmp_path, Keep(hourly=24, monthly=12))
    assert load_schedule(tmp_path) == Keep(hourly=24, monthly=12)
    save_schedule(tmp_path, None)
    assert load_schedule(tmp_path) is None
    schedule_path(tmp_path).write_text('{"format": "sofs-snapshot-schedule", "version": 1, '
                                       '"keep": {"hourly": "x"}}')
    with pytest.raises(SnapshotUnreadable):
        load_schedule(tmp_path)


def test_run_schedule_takes_one_an_hour_and_deletes_the_old_ones(env):
    mount, store = env
    clock = FakeClock()
    fs = mount(gc_grace_s=0, clock=clock)
    snaps = Snapshots(fs, clock)
    assert snaps.run_schedule().taken is None  # no schedule
    snaps.create("by-hand")
    save_schedule(snaps.vdir, Keep(hourly=3))
    first = snaps.run_schedule()
    assert first.taken and first.taken.startswith("@GMT-") and first.deleted == ()
    assert snaps.run_schedule().taken is None  # this hour has one
    for _ in range(4):
        clock.advance(3600)
        snaps.run_schedule()
    names = [i.name for i in snaps.ready()]
    assert len(names) == 4 and names[0] == "by-hand"
    assert first.taken not in names
    assert all(i.scheduled for i in snaps.ready()[1:])
