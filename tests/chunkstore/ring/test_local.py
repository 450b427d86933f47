import os
import shutil
import subprocess
import sys
import threading

import pytest

from chunkstore.disk import container as ctr
from chunkstore.errors import ChunkCorrupt, ChunkNotFound, ClusterInUse, NotEnoughDisks
from chunkstore.placement.keys import ChunkRef, chunk_key
from chunkstore.ring.local import LocalRing

SIZES = [0, 1, 60 * 1024 - 1, 60 * 1024 + 1, 4 * 1024 * 1024]


def _payloads():
    return [os.urandom(n) for n in SIZES]


def _container_files(data, disk_id):
    cdir = data / "disks" / disk_id / "containers"
    return [cdir / n for n in sorted(os.listdir(cdir))]


def test_put_get_sizes(cluster_dir, protection):
    with LocalRing.open(cluster_dir) as ring:
        refs = []
        for p in _payloads():
            ref = ring.put(p, protection)
            assert ref.key == chunk_key(p) and ref.size == len(p)
            assert ref.policy == protection.for_size(len(p)).code
            assert ring.get(ref) == p
            assert ring.put(p, protection) == ref  # idempotent
            refs.append((ref, p))
        cap = ring.capacity()
        assert cap.total_bytes > 0 and cap.free_bytes > 0 and cap.used_bytes > 4 * 1024 * 1024
        # one filesystem under all six disks: counted once
        assert cap.total_bytes == os.statvfs(cluster_dir).f_blocks * os.statvfs(cluster_dir).f_frsize
        assert len(ring.repair_log) == 0
    with LocalRing.open(cluster_dir) as ring:
        for ref, p in refs:
            assert ring.get(ref) == p


def test_piece_counts(cluster_dir, protection):
    with LocalRing.open(cluster_dir) as ring:
        ring.put(b"small", protection)
        ring.put(os.urandom(100_000), protection)
        counts = {d: ring.disk(d).stats().live_pieces for d in ring.available_disks()}
    assert sum(counts.values()) == 3 + 6
    assert all(c >= 1 for c in counts.values())


def test_delete(cluster_dir, protection):
    with LocalRing.open(cluster_dir) as ring:
        refs = [ring.put(p, protection) for p in _payloads()[:4]]
        for ref in refs:
            ring.delete(ref)
            ring.delete(ref)
            with pytest.raises(ChunkNotFound):
                ring.get(ref)
        assert sum(ring.disk(d).stats().live_pieces for d in ring.available_disks()) == 0


def test_missing_disks_degraded_reads(cluster_dir, protection):
    payloads = _payloads()
    with LocalRing.open(cluster_dir) as ring:
        refs = [ring.put(p, protection) for p in payloads]
    shutil.rmtree(cluster_dir / "disks" / "d1")
    shutil.rmtree(cluster_dir / "disks" / "d4")
    with LocalRing.open(cluster_dir) as ring:
        assert sorted(ring.unavailable_disks()) == ["d1", "d4"]
        for ref, p in zip(refs, payloads, strict=True):
            assert ring.get(ref) == p
        # writes still reach the quorum with 4 of 6 disks for cos2 (2 of 3)... and EC 4+2 needs 5
        small = ring.put(b"new small chunk", protection)
        assert ring.get(small) == b"new small chunk"


def test_disk_vanishes_while_open(cluster_dir, protection):
    with LocalRing.open(cluster_dir) as ring:
        p = os.urandom(200_000)
        ref = ring.put(p, protection)
        shutil.rmtree(cluster_dir / "disks" / "d2")
        assert ring.get(ref) == p
        ring.put(os.urandom(1000), protection)
        ring.put(os.urandom(100), protection)
        for _ in range(3):
            try:
                ring.put(os.urandom(100_000), protection)
            except NotEnoughDisks:
                pass  # EC 4+2 needs 5 of 6 pieces: fine only if d2 is not an owner
        assert "d2" in ring.unavailable_disks()


def test_not_enough_disks(cluster_dir, protection):
    for d in ("d0", "d1", "d2"):
        shutil.rmtree(cluster_dir / "disks" / d)
    with LocalRing.open(cluster_dir) as ring:
        with pytest.raises(NotEnoughDisks):
            ring.put(os.urandom(100_000), protection)


def test_flipped_bytes_still_read(cluster_dir, protection):
    payloads = _payloads()[1:]
    with LocalRing.open(cluster_dir) as ring:
        refs = [ring.put(p, protection) for p in payloads]
        # flip a byte in the data of every record of two disks
        for disk_id in ("d0", "d3"):
            ds = ring.disk(disk_id)
            for info in ds.pieces():
                path = cluster_dir / "disks" / disk_id / "containers" / ctr.container_name(info.container)
                ctr.flip_byte(path, ctr.data_offset(info.offset) + info.length // 2 if info.length else
                              ctr.checksum_offset(info.offset))
        for ref, p in zip(refs, payloads, strict=True):
            assert ring.get(ref) == p
        assert len(ring.repair_log) > 0


def test_corrupt_beyond_repair(cluster_dir, protection):
    with LocalRing.open(cluster_dir) as ring:
        ref = ring.put(b"tiny", protection)
        for disk_id in ring.available_disks():
            ds = ring.disk(disk_id)
            for info in ds.pieces():
                path = cluster_dir / "disks" / disk_id / "containers" / ctr.container_name(info.container)
                ctr.flip_byte(path, ctr.data_offset(info.offset))
        with pytest.raises(ChunkCorrupt):
            ring.get(ref)
        with pytest.raises(ChunkNotFound):
            ring.get(ChunkRef(chunk_key(b"never"), 5, ref.policy))


def test_cluster_in_use(cluster_dir):
    with LocalRing.open(cluster_dir):
        with pytest.raises(ClusterInUse) as exc:
            LocalRing.open(cluster_dir)
        assert str(os.getpid()) in str(exc.value)
    LocalRing.open(cluster_dir).close()


def test_cluster_in_use_other_process(cluster_dir):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    code = (
        "import sys; sys.path.insert(0, sys.argv[2]);"
        "from chunkstore.ring.local import LocalRing;"
        "r = LocalRing.open(sys.argv[1]); print('locked', flush=True); sys.stdin.read(); r.close()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(cluster_dir), root],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(ClusterInUse) as exc:
            LocalRing.open(cluster_dir)
        assert exc.value.pid == proc.pid and str(proc.pid) in str(exc.value)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    LocalRing.open(cluster_dir).close()


def test_concurrent_puts(cluster_dir, protection):
    payloads = [os.urandom(n) for n in [10, 1000, 70_000, 200_000] * 6]
    results = {}
    with LocalRing.open(cluster_dir) as ring:
        def worker(i):
            results[i] = ring.put(payloads[i], protection)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(payloads))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, p in enumerate(payloads):
            assert ring.get(results[i]) == p
