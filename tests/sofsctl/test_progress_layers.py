"""The bytes the layers report for sofsctl's progress lines: the repair sweep's chunks with
their payload bytes (``progress_sized``), next to the counts its ``progress`` keeps
reporting; a volume deletion's chunks and bytes."""

from __future__ import annotations

import os

from chunkstore.healing.sweep import repair
from chunkstore.protection.policy import Protection
from chunkstore.ring.local import LocalRing
from chunkstore.ring.localcluster import init_local_cluster
from sofs import volumedelete
from sofs.metacheckpoint import Checkpointer
from sofs.metadata import MetaStore
from sofs.volume import create_volume, volume_dir

SIZES = [0, 1000, 70_000, 300_000, 1_000_000]


def test_the_sweep_reports_chunks_and_their_bytes(tmp_path):
    data = tmp_path / "data"
    init_local_cluster(data, disks=6, vnodes=6)
    with LocalRing.open(data) as ring:
        for n in SIZES:
            ring.put(os.urandom(n), Protection.parse("cos2", "ec4+2"))
        counts: list[tuple[int, int]] = []
        sized: list[tuple[int, ...]] = []
        rep = repair(ring, progress=lambda d, t: counts.append((d, t)),
                     progress_sized=lambda *a: sized.append(a))
    assert rep.chunks_checked == len(SIZES)
    assert [s[:2] for s in sized] == counts  # the same steps, the counts unchanged
    assert counts[-1] == (len(SIZES), len(SIZES))
    assert sized[-1][2:] == (sum(SIZES), sum(SIZES))
    done_bytes = [s[2] for s in sized]
    assert done_bytes == sorted(done_bytes) and all(s[3] == sum(SIZES) for s in sized)


def test_a_volume_deletion_reports_chunks_and_their_bytes(tmp_path):
    data = tmp_path / "data"
    init_local_cluster(data, disks=6, vnodes=6)
    config = create_volume(data, "pacs")
    with LocalRing.open(data) as ring:  # a checkpoint: chunks of the volume in the RING
        meta = MetaStore(volume_dir(data, "pacs") / "meta")
        try:
            Checkpointer(meta, ring, config, volume_dir(data, "pacs")).write()
        finally:
            meta.close()
    tomb = volumedelete.begin(data, "pacs")
    with LocalRing.open(data) as ring:
        sized: list[tuple[int, ...]] = []
        counts: list[tuple[int, int]] = []
        report = volumedelete.finish(tomb, ring, progress=lambda d, t: counts.append((d, t)),
                                     progress_sized=lambda *a: sized.append(a))
    assert report.chunks_failed == 0 and not tomb.exists()
    assert report.chunks_deleted > 0 and [s[:2] for s in sized] == counts
    assert counts[-1] == (report.chunks_deleted, report.chunks_deleted)
    assert sized[-1][2] == sized[-1][3] > 0
    done_bytes = [s[2] for s in sized]
    assert done_bytes == sorted(done_bytes) and len(set(done_bytes)) == len(done_bytes)
