"""The healer on an embedded RING: the scrub schedule, kept across restarts, finds and repairs
a corrupt piece on its own; wall-clock steps move no scrub; sweeps can be paced and
cancelled (a cancelled sweep leaves the ring before cancel returns)."""

import json
import os
import shutil
import threading

from chunkstore.clock import FakeClock
from chunkstore.disk import container as ctr
from chunkstore.healing.healer import Healer
from chunkstore.healing.sweep import health, repair
from chunkstore.placement.layout import HEALER_STATE_FILE
from chunkstore.ring.local import LocalRing
from tests.chunkstore.ring.fakes import DiskRing

HOUR = 3600.0


def test_scheduled_scrub_repairs_corruption_and_the_schedule_survives_a_restart(
        cluster_dir, protection):
    clock = FakeClock()
    data = os.urandom(500_000)
    with LocalRing.open(cluster_dir) as ring:
        ref = ring.put(data, protection)
        victim = ring.ring.owners(ref.key, 6)[2]
        info = ring.disk(victim).piece(ref.key, 2)
        path = cluster_dir / "disks" / victim / "containers" / ctr.container_name(info.container)
        ctr.flip_byte(path, ctr.data_offset(info.offset) + 7)
        healer = Healer(ring, scrub_interval_s=HOUR, clock=clock)
        healer.step()  # a fresh healer starts the schedule now: nothing is due
        assert healer.status.sweeps == 0
        assert health(ring, verify=True).degraded == 1
        second = Healer(ring, scrub_interval_s=0, clock=clock)  # another mount's: the first one acts
        second.step()
        assert second.status.state == "standby" and second.status.sweeps == 0
        second.close()
        healer.close()
    clock.advance(HOUR + 1)  # an hour later (the mount was restarted meanwhile)
    with LocalRing.open(cluster_dir) as ring:
        healer = Healer(ring, scrub_interval_s=HOUR, clock=clock)
        healer.step()
        assert healer.status.sweeps == 1
        report = healer.status.last_report
        assert report is not None and report.pieces_rebuilt == 1 and report.verified
        assert healer.status.to_dict()["last_report"]["pieces_rebuilt"] == 1
        assert health(ring, verify=True).protected == 1
        healer.step()  # not due again
        assert healer.status.sweeps == 1
        assert ring.get(ref) == data
        healer.close()


def test_a_wall_clock_step_moves_no_scrub(cluster_dir, protection):
    clock = FakeClock()
    with LocalRing.open(cluster_dir) as ring:
        ring.put(b"x", protection)
        healer = Healer(ring, scrub_interval_s=HOUR, clock=clock)
        clock.step_wall(2 * HOUR)  # NTP steps the clock two hours forward
        healer.step()
        assert healer.status.sweeps == 0  # no time passed: not due
        clock.step_wall(-24 * HOUR)  # and then a day back
        clock.advance(HOUR)
        healer.step()
        assert healer.status.sweeps == 1  # an hour passed: due, whatever the wall clock says
        healer.close()


def test_a_last_sweep_stamped_in_the_future_delays_the_next_scrub_by_one_interval_at_most(
        cluster_dir, protection):
    clock = FakeClock()
    with LocalRing.open(cluster_dir) as ring:
        ring.put(b"x", protection)
        clock.step_wall(24 * HOUR)  # the clock is a day ahead while a scrub runs
        healer = Healer(ring, scrub_interval_s=0, clock=clock)
        healer.step()
        assert healer.status.sweeps == 1
        healer.close()
    stamped = json.loads((cluster_dir / HEALER_STATE_FILE).read_text())["last_full_sweep"]
    assert stamped == clock.time()
    clock.step_wall(-24 * HOUR)  # set right; the mount restarts
    with LocalRing.open(cluster_dir) as ring:
        healer = Healer(ring, scrub_interval_s=HOUR, clock=clock)
        healer.step()
        assert healer.status.sweeps == 0
        clock.advance(HOUR)  # not a day and an hour
        healer.step()
        assert healer.status.sweeps == 1
        healer.close()


def test_paced_sweep_reports_the_same(cluster_dir, protection):
    with LocalRing.open(cluster_dir) as ring:
        refs = [ring.put(os.urandom(n), protection) for n in (1000, 200_000, 900_000)]
        fast = repair(ring)
        clock = FakeClock()
        done = {}
        sweeper = threading.Thread(target=lambda: done.setdefault(
            "report", repair(ring, max_bytes_per_s=1000, clock=clock)))
        sweeper.start()
        # a few MB at 1000 B/s: the sweep waits on the clock after its first chunk
        assert clock.wait_for_sleepers(1)
        while sweeper.is_alive():
            clock.advance(5.0)  # the throttle waits 5 s at most at a time
            sweeper.join(0.01)
        paced = done["report"]
        assert fast.chunks_checked == paced.chunks_checked == len(refs)
        assert paced.pieces_rebuilt == paced.pieces_removed == 0
        assert clock.monotonic() - 1000.0 >= 5.0  # it did wait on the clock


def test_a_rebuild_sweep_trusting_the_indexes_restores_the_same(cluster_dir, protection):
    payloads = [os.urandom(n) for n in (10, 70_000, 400_000, 3_000_000)]
    with LocalRing.open(cluster_dir) as ring:
        refs = [ring.put(p, protection) for p in payloads]
    shutil.rmtree(cluster_dir / "disks" / "d1")
    with LocalRing.open(cluster_dir) as ring:
        quick = repair(ring, verify=False, init_disks={"d1"})
        assert quick.pieces_rebuilt > 0 and quick.unrecoverable == () and not quick.errors
        h = health(ring, verify=True)
        assert (h.protected, h.degraded) == (len(refs), 0)
        assert repair(ring).pieces_rebuilt == 0  # a verifying sweep finds nothing left
        for ref, p in zip(refs, payloads, strict=True):
            assert ring.get(ref) == p


def test_cancel_returns_once_the_sweep_has_left_the_ring(cluster_dir, protection):
    clock = FakeClock()
    ring = DiskRing(cluster_dir)
    refs = [ring.put(os.urandom(100_000), protection) for _ in range(24)]
    healer = Healer(ring, scrub_interval_s=HOUR, clock=clock)
    stamped = json.loads((cluster_dir / HEALER_STATE_FILE).read_text())
    gate = threading.Event()
    entered = ring.hold_reads(gate)  # every piece read of the scrub waits inside the disk
    clock.advance(HOUR)  # a scrub is due
    stepper = threading.Thread(target=healer.step)
    stepper.start()
    assert entered.wait(10)
    canceller = threading.Thread(target=healer.cancel)
    canceller.start()
    canceller.join(0.3)
    assert canceller.is_alive()  # the sweep is still inside a chunk: cancel waits for it
    gate.set()
    canceller.join(10)
    assert not canceller.is_alive()
    assert ring.calls_inside() == 0  # nothing of the healer is in the ring any more
    stepper.join(10)
    assert not stepper.is_alive()
    report = healer.status.last_report
    assert report is not None and report.cancelled
    assert healer.status.chunks_done < len(refs)  # stopped between chunks, not at the end
    # not recorded as a full sweep: the next one does it all
    assert json.loads((cluster_dir / HEALER_STATE_FILE).read_text()) == stamped
    ring.close()
    healer.step()  # a cancelled healer does nothing more
    assert healer.sweep().cancelled
    healer.close()
    assert ring.calls_after_close() == {}


def test_close_waits_for_an_admin_sweep(cluster_dir, protection):
    ring = DiskRing(cluster_dir)
    for _ in range(12):
        ring.put(os.urandom(100_000), protection)
    healer = Healer(ring)
    gate = threading.Event()
    entered = ring.hold_reads(gate)
    sweeper = threading.Thread(target=healer.sweep)  # sofsctl repair through the mount
    sweeper.start()
    assert entered.wait(10)
    closer = threading.Thread(target=healer.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive()
    gate.set()
    closer.join(10)
    sweeper.join(10)
    assert not closer.is_alive() and not sweeper.is_alive()
    assert ring.calls_inside() == 0
    ring.close()
    assert ring.calls_after_close() == {}


def test_maintenance_mode_suspends_sweeps_until_it_is_turned_off(cluster_dir, protection):
    from chunkstore.healing.maintenance import clear_maintenance, read_maintenance, set_maintenance
    clock = FakeClock()
    with LocalRing.open(cluster_dir) as ring:
        ring.put(os.urandom(300_000), protection)
        healer = Healer(ring, scrub_interval_s=HOUR, clock=clock)
        healer.step()
        m = set_maintenance(cluster_dir, "disk swap in rack 3", "admin@host", clock)
        assert read_maintenance(cluster_dir) == m and m.reason == "disk swap in rack 3"
        clock.advance(HOUR + 1)  # a scrub is due, but not during maintenance
        healer.step()
        assert healer.status.state == "maintenance" and healer.status.sweeps == 0
        assert clear_maintenance(cluster_dir) and not clear_maintenance(cluster_dir)
        healer.step()
        assert healer.status.sweeps == 1 and healer.status.state == "idle"
        healer.close()


def test_scrubs_pause_and_resume(cluster_dir, protection):
    clock = FakeClock()
    with LocalRing.open(cluster_dir) as ring:
        ring.put(os.urandom(300_000), protection)
        healer = Healer(ring, scrub_interval_s=HOUR, clock=clock)
        healer.step()
        assert healer.pause_scrubs() is False  # none running
        clock.advance(HOUR + 1)
        healer.step()
        assert healer.status.sweeps == 0 and healer.scrub_status()["paused"]
        assert healer.scrub_status()["next_in_s"] is None
        st = healer.resume_scrubs()
        assert not st["paused"] and st["next_in_s"] == 0.0  # it came due while paused
        healer.step()
        assert healer.status.sweeps == 1
        assert healer.scrub_status()["next_in_s"] == HOUR
        healer.close()
