"""Time in the file layer is injectable (chunkstore.clock): the collector's grace period, file
timestamps when a clock is given, checkpoint dates; tests advance a FakeClock instead of
sleeping."""

from __future__ import annotations

import json
import os
import time

from chunkstore.clock import SYSTEM_CLOCK, FakeClock, SteppedWallClock
from sofs import metacheckpoint as mc
from sofs.fs import Statistics
from sofs.inode import ROOT_INO
from sofs.timestamps import wall_ns

from .conftest import BS, read_file, write_file


def test_the_grace_period_runs_on_the_given_clock(env):
    mount, store = env
    clock = FakeClock()
    fs = mount(gc_grace_s=60, clock=clock)
    ino = write_file(fs, ROOT_INO, b"f", os.urandom(BS))
    fh = fs.open(ino, os.O_WRONLY)
    fs.write(fh, 0, os.urandom(BS))  # the first version's chunk is released
    fs.release(fh)
    assert len(store) == 2
    assert fs.collect_garbage() == 0
    clock.advance(59)
    assert fs.collect_garbage() == 0  # still within the grace period
    clock.advance(2)
    assert fs.collect_garbage() == 1
    assert len(store) == 1
    assert len(read_file(fs, ino)) == BS


def test_a_wall_clock_step_moves_the_grace_period_too(env):
    """The queue is stored with the metadata (it outlives the process): it is dated on the
    wall clock, which a remount after a reboot still shares."""
    mount, store = env
    clock = FakeClock()
    fs = mount(gc_grace_s=3600, clock=clock)
    write_file(fs, ROOT_INO, b"f", os.urandom(100))
    fs.unlink(ROOT_INO, b"f")
    clock.step_wall(3601)
    assert fs.collect_garbage() == 1


def test_file_times_follow_a_given_clock_and_the_system_one_otherwise(env):
    mount, _ = env
    clock = FakeClock()
    fs = mount(clock=clock)
    node = fs.mkdir(ROOT_INO, b"d", 0o755)
    assert node.mtime_ns == node.ctime_ns == wall_ns(clock) == int(clock.time() * 1e9)
    clock.advance(5)
    fs.setattr(node.ino, mode=0o700)
    assert fs.getattr(node.ino).ctime_ns == node.ctime_ns + 5 * 10**9
    fs.close()
    before = time.time_ns()
    fs = mount()  # the system clock: nanosecond timestamps as ever
    other = fs.mkdir(ROOT_INO, b"e", 0o755)
    assert before <= other.mtime_ns <= time.time_ns()
    assert wall_ns(SYSTEM_CLOCK) >= other.mtime_ns


def test_file_times_follow_a_stepped_wall_clock(env, tmp_path):
    """SOFS_WALL_STEP_FILE's clock is a SystemClock whose time() moves: its step counts."""
    mount, _ = env
    step = tmp_path / "step"
    step.write_text("900")
    clock = SteppedWallClock(str(step))
    before = time.time_ns()
    assert before + 899 * 10**9 <= wall_ns(clock) <= time.time_ns() + 901 * 10**9
    fs = mount(clock=clock)
    node = fs.mkdir(ROOT_INO, b"d", 0o755)
    assert before + 899 * 10**9 <= node.ctime_ns <= time.time_ns() + 901 * 10**9


def test_checkpoints_are_dated_and_timed_by_the_given_clock(env, tmp_path):
    mount, store = env
    fs = mount()
    write_file(fs, ROOT_INO, b"a", b"x")
    clock = FakeClock()
    info = mc.Checkpointer(fs.meta, store, fs.config, tmp_path / "v", clock=clock).write()
    assert info.created == clock.time() and info.took == 0.0
    state = json.loads((tmp_path / "v" / mc.STATE_FILE).read_text())
    assert state == {"seq": 1, "written": clock.time()}
    assert mc.list_checkpoints(store, fs.config.uuid)[0].created == clock.time()


def test_statistics_is_a_snapshot_record_with_the_control_sockets_keys(env):
    mount, _ = env
    fs = mount()
    fh, _node = fs.create(ROOT_INO, b"f", 0o644, os.O_WRONLY)
    fs.write(fh, 0, b"abc")
    stats = fs.statistics()
    assert isinstance(stats, Statistics)
    assert stats.as_dict() == {"open_files": 1, "dirty_bytes": 3,
                               "cached_inodes": stats.cached_inodes,
                               "cache_hits": stats.cache_hits,
                               "cache_misses": stats.cache_misses}
    fs.release(fh)
    assert fs.statistics().open_files == 0 and fs.statistics().dirty_bytes == 0
