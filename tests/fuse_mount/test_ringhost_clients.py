"""Ring clients of a real ring host process (no FUSE): what the host's sweep may delete after
a client wrote a chunk again, and a disk added under connected clients."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chunkstore.protection.policy import Protection, parse_policy
from chunkstore.ring.localcluster import init_local_cluster
from chunkstore.ring.repairlog import DELETED
from fuse_mount import control, ringhost

from .conftest import stop_ring_host

pytestmark = pytest.mark.integration

PROTECTION = Protection(parse_policy("cos2"), parse_policy("ec4+2"))


@pytest.fixture
def host(tmp_path) -> Path:
    data = tmp_path / "data"
    init_local_cluster(data, disks=6)
    ringhost.ensure_host(data, daemon_args=["--idle-exit", "0"])
    try:
        yield data
    finally:
        stop_ring_host(data)


def _deleted_on_host(data: Path) -> set[str]:
    return {e["key"] for e in control.call(data, "repair-deleted", timeout=10)}


def test_a_chunk_written_again_after_an_incomplete_delete_survives_the_hosts_sweep(host):
    payload = os.urandom(300_000)
    a = ringhost.open_client(host, "vol-a")
    try:
        ref = a.put(payload, PROTECTION)
        # as after a delete that missed a disk: the chunk is DELETED in the logs, pieces remain
        a.repair_log.note(ref, DELETED)
    finally:
        a.close()
    assert ref.key.hex() in _deleted_on_host(host)

    b = ringhost.open_client(host, "vol-a")  # the volume mounted again: it learns the host's log
    try:
        assert b.repair_log.get(ref.key).kind == DELETED
        assert b.put(payload, PROTECTION) == ref  # the same content written again
        assert ref.key.hex() not in _deleted_on_host(host)
        report = control.call(host, "repair", timeout=120)
        assert report["pieces_removed"] == 0, report
        assert b.get(ref) == payload
    finally:
        b.close()


def test_a_disk_added_under_connected_clients_places_their_next_writes(host):
    c1 = ringhost.open_client(host, "one")
    c2 = ringhost.open_client(host, "two")
    try:
        old = [c1.put(os.urandom(1 << 20), PROTECTION) for _ in range(3)]
        report = control.call(host, "disk-add", timeout=120)
        assert report["added"]["disk_id"] == "d6", report
        for c in (c1, c2):
            refs = [c.put(os.urandom(1 << 20), PROTECTION) for _ in range(8)]
            assert "d6" in c.disk_ids()
            assert any("d6" in c.ring.owners(r.key, 6) for r in refs)
            for r in refs:  # every piece where the grown ring wants it
                owners = c.ring.owners(r.key, 6)
                for i, disk_id in enumerate(owners):
                    assert c.disk(disk_id).has(r.key, i), (r.hex, disk_id)
        health = control.call(host, "health", timeout=60)
        assert health["degraded"] == 0 and health["unrecoverable"] == 0, health
        for r in old:
            assert len(c2.get(r)) == 1 << 20
    finally:
        c1.close()
        c2.close()
