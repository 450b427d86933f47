"""NetRing's failure detector on a fake clock, without storage nodes: every node of the map
listens on a loopback port that refuses connections, so every PING fails at once. How long a
node has been unreachable is monotonic time: a wall-clock step marks no node down early."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Iterator

import pytest

from chunkstore.clock import FakeClock
from chunkstore.healing.healer import Healer
from chunkstore.placement.clustermap import ClusterMap
from chunkstore.ring.net import NetRing

NODES = ("n1", "n2", "n3")
HEARTBEAT_S = 1.0


@contextlib.contextmanager
def silent_cluster(tmp_path, clock: FakeClock) -> Iterator[NetRing]:
    """A NetRing client of three nodes that never answer (bound ports, not listening)."""
    ports = []
    with contextlib.ExitStack() as stack:
        for _ in NODES:
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        cmap = ClusterMap.create("cluster-under-test", vnodes=4)
        for node_id, port in zip(NODES, ports, strict=True):
            cmap = cmap.add_node(node_id, f"127.0.0.1:{port}").add_disk(f"{node_id}.d0", node_id)
        ring = NetRing(cmap, b"secret", tmp_path / "client", heartbeat_s=HEARTBEAT_S,
                       ping_timeout_s=0.5, timeout=0.5, clock=clock)
        try:
            yield ring
        finally:
            ring.close()


def test_heartbeats_follow_the_clock(tmp_path):
    clock = FakeClock()
    with silent_cluster(tmp_path, clock) as ring:
        assert clock.wait_for_sleepers(1)  # the heartbeat thread waits for its first round
        time.sleep(0.2)
        assert ring.unreachable_for() == {}  # no fake time passed: no PING yet
        clock.advance(HEARTBEAT_S)
        deadline = time.monotonic() + 10
        while set(ring.unreachable_for()) != set(NODES) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert set(ring.unreachable_for()) == set(NODES)
        assert ring.available_disks() == []  # suspect nodes' disks leave the data path


def test_a_wall_clock_step_does_not_mark_a_suspect_node_down_early(tmp_path):
    clock = FakeClock()
    with silent_cluster(tmp_path, clock) as ring:
        assert ring.membership is ring
        ring.heartbeat_once()  # nobody answers
        healer = Healer(ring, down_after_s=300, clock=clock)
        clock.advance(10)
        clock.step_wall(20 * 60)  # NTP steps the wall clock 20 minutes forward
        assert ring.unreachable_for() == {n: 10.0 for n in NODES}
        assert ring.suspects() == {n: pytest.approx(clock.time() - 10) for n in NODES}
        assert healer.update_map() is False
        assert {n.state for n in ring.cmap.nodes} == {"up"}
        epoch = ring.cmap.epoch
        clock.advance(290)  # five minutes of real silence
        assert healer.update_map() is True
        states = [n.state for n in ring.cmap.nodes]
        # all silent: two go down, the last stays to keep one disk placing (min_placing)
        assert states == ["down", "down", "up"] and ring.cmap.epoch > epoch
        healer.close()
