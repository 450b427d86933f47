"""The mount's teardown with a healer sweep in flight: the event loop ends only once the
sweep's thread has stopped (cancelled between chunks) and left the RING, so the RING is
closed under nobody. Driven without FUSE: pyfuse3's session is replaced by one that "unmounts"
as soon as the sweep is inside a chunk."""

from __future__ import annotations

import os
import threading

import pyfuse3
import trio

from chunkstore.healing.healer import Healer
from chunkstore.protection.policy import Protection
from chunkstore.ring.localcluster import init_local_cluster
from fuse_mount import daemon, ringhost
from tests.chunkstore.ring.fakes import DiskRing


def test_unmount_joins_the_healer_sweep_before_the_ring_closes(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    init_local_cluster(data_dir, disks=6, vnodes=6)
    ring = DiskRing(data_dir)
    protection = Protection.parse("cos2", "ec4+2")
    for _ in range(24):
        ring.put(os.urandom(100_000), protection)
    healer = Healer(ring, scrub_interval_s=0)  # a scrub at every round
    gate = threading.Event()
    inside_a_chunk = ring.hold_reads(gate)

    async def session() -> None:
        """Serve until the sweep is inside a chunk, then end (as an unmount does); the
        chunk's reads go on a little later."""
        assert await trio.to_thread.run_sync(inside_a_chunk.wait, 30)
        threading.Timer(0.3, gate.set).start()

    monkeypatch.setattr(pyfuse3, "main", session)
    monkeypatch.setattr(daemon, "_raise_read_ahead", lambda mountpoint: None)
    monkeypatch.setattr(ringhost, "HEAL_INTERVAL_S", 0.01)
    try:
        trio.run(daemon._serve, None, ring, str(tmp_path), None, None, 3600.0, healer)
        assert ring.calls_inside() == 0  # the sweep's thread has left the RING
        report = healer.status.last_report
        assert report is not None and report.cancelled
    finally:
        gate.set()
        healer.close()  # what the ExitStack does next: fs.close, then ring.close
        ring.close()
    assert ring.calls_after_close() == {}
