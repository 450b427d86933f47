"""The healer on an embedded RING: the scrub schedule, kept across restarts, finds and repairs
a corrupt piece on its own; sweeps can be paced."""

import json
import os

from chunkstore.disk import container as ctr
from chunkstore.healing.healer import STATE_FILE, Healer
from chunkstore.ring.local import LocalRing
from chunkstore.healing.sweep import health, repair


def test_scheduled_scrub_repairs_corruption_and_the_schedule_survives_a_restart(
        cluster_dir, protection):
    data = os.urandom(500_000)
    with LocalRing.open(cluster_dir) as ring:
        ref = ring.put(data, protection)
        victim = ring.ring.owners(ref.key, 6)[2]
        info = ring.disk(victim).piece(ref.key, 2)
        path = cluster_dir / "disks" / victim / "containers" / ctr.container_name(info.container)
        ctr.flip_byte(path, ctr.data_offset(info.offset) + 7)
        healer = Healer(ring, scrub_interval_s=3600)
        healer.step()  # a fresh healer starts the schedule now: nothing is due
        assert healer.status.sweeps == 0
        assert health(ring, verify=True).degraded == 1
        second = Healer(ring, scrub_interval_s=0)  # another mount's: the first one acts
        second.step()
        assert second.status.state == "standby" and second.status.sweeps == 0
        second.close()
        healer.close()
    state = json.loads((cluster_dir / STATE_FILE).read_text())
    state["last_full_sweep"] -= 3601  # an hour later (the mount was restarted meanwhile)
    (cluster_dir / STATE_FILE).write_text(json.dumps(state))
    with LocalRing.open(cluster_dir) as ring:
        healer = Healer(ring, scrub_interval_s=3600)
        healer.step()
        assert healer.status.sweeps == 1
        assert healer.status.last_report["pieces_rebuilt"] == 1
        assert health(ring, verify=True).protected == 1
        healer.step()  # not due again
        assert healer.status.sweeps == 1
        assert ring.get(ref) == data
        healer.close()


def test_paced_sweep_reports_the_same(cluster_dir, protection):
    with LocalRing.open(cluster_dir) as ring:
        refs = [ring.put(os.urandom(n), protection) for n in (1000, 200_000, 900_000)]
        fast = repair(ring)
        paced = repair(ring, max_bytes_per_s=50 << 20)
        assert fast.chunks_checked == paced.chunks_checked == len(refs)
        assert paced.pieces_rebuilt == paced.pieces_removed == 0


def test_a_rebuild_sweep_trusting_the_indexes_restores_the_same(cluster_dir, protection):
    import shutil

    payloads = [os.urandom(n) for n in (10, 70_000, 400_000, 3_000_000)]
    with LocalRing.open(cluster_dir) as ring:
        refs = [ring.put(p, protection) for p in payloads]
    shutil.rmtree(cluster_dir / "disks" / "d1")
    with LocalRing.open(cluster_dir) as ring:
        quick = repair(ring, verify=False)
        assert quick.pieces_rebuilt > 0 and quick.unrecoverable == () and not quick.errors
        h = health(ring, verify=True)
        assert (h.protected, h.degraded) == (len(refs), 0)
        assert repair(ring).pieces_rebuilt == 0  # a verifying sweep finds nothing left
        for ref, p in zip(refs, payloads):
            assert ring.get(ref) == p
