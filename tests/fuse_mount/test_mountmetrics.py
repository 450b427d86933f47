"""A mount's Prometheus metrics: the collectors over a real volume on an embedded RING (fast),
the FUSE request counting, ``sofsctl mount --metrics`` option checks, and a real FUSE mount
scraped over HTTP with urllib and parsed with prometheus_client's parser (integration).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import types
import urllib.request

import pyfuse3
import pytest
import trio
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from chunkstore.clock import FakeClock
from chunkstore.healing.healer import RebuildStatus, SweepSummary
from chunkstore.placement.keys import ChunkRef
from chunkstore.protection.policy import PolicyCode
from chunkstore.ring.diskusage import disk_usage
from chunkstore.ring.localcluster import init_local_cluster
from chunkstore.ring.open import open_ring
from chunkstore.ring.repairlog import DELETED
from fuse_mount import operations
from fuse_mount.mountmetrics import MountCollector, gc_backlog, mount_registry
from fuse_mount.opmetrics import FUSE_OPS, FuseMetrics, measured
from sofs.fs import Filesystem
from sofs.volume import create_volume, load_volume
from sofsctl.main import cli
from tests.netcluster import free_port

from .conftest import Archive, needs_fuse

MiB = 1 << 20


def samples(families) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in families:
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got, name, **labels):
    return got.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        assert r.status == 200
        return samples(text_string_to_metric_families(r.read().decode()))


# -- the collectors, over a real volume on an embedded RING -------------------------------------


@pytest.fixture
def volume(tmp_path):
    data = tmp_path / "data"
    init_local_cluster(data, disks=6, vnodes=4)
    create_volume(data, "v", block_size=256 * 1024, trash_s=0)  # deletes queue chunks at once
    ring = open_ring(data)
    fs = Filesystem.open_volume(data, "v", ring)
    try:
        yield fs, ring
    finally:
        fs.close()
        ring.close()


def _write(fs, name: bytes, data: bytes) -> int:
    fh, node = fs.create(1, name, 0o644, os.O_WRONLY)
    fs.write(fh, 0, data)
    fs.flush(fh)
    fs.release(fh)
    return node.ino


def test_mount_collector_reads_volume_gc_cache_and_disks(volume):
    fs, ring = volume
    ino = _write(fs, b"a", os.urandom(3 * 256 * 1024))  # three blocks, three chunks
    fs.cache.clear()
    fh = fs.open(ino, os.O_RDONLY)
    fs.read(fh, 0, 256 * 1024)
    fs.read(fh, 0, 256 * 1024)
    fs.release(fh)
    registry = CollectorRegistry()
    registry.register(MountCollector(fs, ring))
    before = samples(registry.collect())
    assert value(before, "sofs_mount_info", volume="v", uuid=fs.config.uuid) == 1
    assert value(before, "sofs_block_cache_hits_total") == fs.cache.hits >= 1
    assert value(before, "sofs_block_cache_misses_total") == fs.cache.misses >= 1
    assert value(before, "sofs_ring_disks") == 6
    assert value(before, "sofs_ring_disks_unavailable") == 0
    disks = [f"d{i}" for i in range(6)]
    assert all(value(before, "sofs_disk_up", disk=d) == 1 for d in disks)
    usage = {u.id: u.stats for u in disk_usage(ring)}
    for d in disks:
        assert value(before, "sofs_disk_pieces", disk=d) == usage[d].live_pieces
    assert sum(value(before, "sofs_disk_pieces", disk=d) for d in disks) == 3 * 6  # EC 4+2
    assert value(before, "sofs_gc_queued_chunks") == 0

    fs.unlink(1, b"a")
    after = samples(registry.collect())
    assert value(after, "sofs_gc_queued_chunks") == 3
    assert value(after, "sofs_gc_due_chunks") == 0  # an hour of grace
    assert value(after, "sofs_metrics_collect_errors_total") == 0
    future = 10**19  # past every due time
    assert gc_backlog(fs, future, 100) == (3, 3)
    assert gc_backlog(fs, future, 2) == (2, 2)  # counted up to the limit


def test_mount_collector_reads_healer_checkpoint_and_repair_log(volume):
    fs, ring = volume
    clock = FakeClock()
    status = types.SimpleNamespace(state="rebuilding", chunks_done=25, chunks_total=100,
                                   bytes_done=4096, epoch=7, sweeps=3, finished=0.0,
                                   last_report=SweepSummary(pieces_rebuilt=5, bytes_rebuilt=500,
                                                            pieces_removed=0, unrecoverable=2,
                                                            errors=1, seconds=9.0, verified=True),
                                   eta_s=lambda: 30.0)
    healer = types.SimpleNamespace(status=status)
    checkpointer = types.SimpleNamespace(
        last=types.SimpleNamespace(created=clock.time() - 120.0, seq=4), last_error="",
        overtaken=False)
    for i in range(3):
        ring.repair_log.note(ChunkRef(bytes([i]) * 20, 100, PolicyCode(1, 3, 0, 0)))
    ring.repair_log.note(ChunkRef(b"\xff" * 20, 100, PolicyCode(1, 3, 0, 0)), DELETED)
    got = samples(MountCollector(fs, ring, healer, checkpointer, clock=clock).collect())
    assert value(got, "sofs_healer_state", state="rebuilding") == 1
    assert value(got, "sofs_healer_state", state="idle") == 0
    assert value(got, "sofs_rebuild_chunks_done") == 25
    assert value(got, "sofs_rebuild_chunks_total") == 100
    assert value(got, "sofs_rebuild_progress_ratio") == 0.25
    assert value(got, "sofs_rebuild_eta_seconds") == 30
    assert value(got, "sofs_rebuild_map_epoch") == 7
    assert value(got, "sofs_healer_sweeps_total") == 3
    assert value(got, "sofs_unrecoverable_chunks") == 2
    assert value(got, "sofs_last_sweep_failed_chunks") == 1
    assert value(got, "sofs_degraded_chunks") == 3
    assert value(got, "sofs_pending_piece_delete_chunks") == 1
    assert value(got, "sofs_checkpoint_age_seconds") == 120
    assert value(got, "sofs_checkpoint_seq") == 4
    assert value(got, "sofs_checkpoint_failing") == 0
    checkpointer.last_error = "ChunkStoreError: too few disks"
    status.chunks_total = 0
    got = samples(MountCollector(fs, ring, healer, checkpointer, clock=clock).collect())
    assert value(got, "sofs_checkpoint_failing") == 1
    assert value(got, "sofs_rebuild_progress_ratio") == 1  # nothing to check


def test_a_mount_served_by_the_ring_host_shows_the_hosts_healer_and_repair_log(volume):
    """Its own repair log is not the one the host's sweep settles: the figures are the
    host's, as its healer-metrics op answers them (through the real codec of that answer)."""
    fs, ring = volume
    ring.repair_log.note(ChunkRef(b"\x01" * 20, 100, PolicyCode(1, 3, 0, 0)))  # ignored
    status = RebuildStatus(state="rebuilding", epoch=2, chunks_done=10, chunks_total=40,
                           started=1.0, elapsed_s=2.0, sweeps=5,
                           last_report=SweepSummary(pieces_rebuilt=1, bytes_rebuilt=9,
                                                    pieces_removed=0, unrecoverable=4,
                                                    errors=0, seconds=1.5, verified=False))
    answer = json.loads(json.dumps({"status": status.to_dict(),
                                    "repair_log": {"needs_repair": 7, "deleted": 2}}))
    got = samples(MountCollector(fs, ring, None, host_view=lambda: answer).collect())
    assert value(got, "sofs_healer_state", state="rebuilding") == 1
    assert value(got, "sofs_rebuild_chunks_done") == 10
    assert value(got, "sofs_healer_sweeps_total") == 5
    assert value(got, "sofs_unrecoverable_chunks") == 4
    assert value(got, "sofs_degraded_chunks") == 7
    assert value(got, "sofs_pending_piece_delete_chunks") == 2
    assert value(got, "sofs_metrics_collect_errors_total") == 0

    def host_gone() -> dict:
        raise OSError("no ring host answers")
    got = samples(MountCollector(fs, ring, None, host_view=host_gone).collect())
    assert value(got, "sofs_metrics_collect_errors_total") == 1
    assert ("sofs_degraded_chunks", ()) not in got


def test_a_section_that_fails_is_left_out_and_counted(volume):
    fs, ring = volume
    broken = types.SimpleNamespace(status=None)  # the healer section cannot be read
    collector = MountCollector(fs, ring, broken)
    got = samples(collector.collect())
    assert value(got, "sofs_metrics_collect_errors_total") == 1
    assert value(got, "sofs_ring_disks") == 6  # the other sections are still there
    assert ("sofs_healer_state", (("state", "idle"),)) not in got


# -- FUSE request counting --------------------------------------------------------------------------


class _Ops:
    def __init__(self, metrics):
        self.metrics = metrics
        self.seen_in_flight = None

    @measured
    async def read(self, fh, off, size):
        self.seen_in_flight = self.metrics.in_flight if self.metrics else None
        return b"x" * size

    @measured
    async def write(self, fh, off, buf):
        return len(buf)

    @measured
    async def lookup(self, parent, name, ctx):
        raise pyfuse3.FUSEError(errno.ENOENT)


def test_measured_counts_ops_bytes_errors_and_in_flight():
    m = FuseMetrics()
    ops = _Ops(m)

    async def main():
        assert await ops.read(1, 0, 100) == b"x" * 100
        await ops.read(1, 100, 50)
        await ops.write(1, 0, b"y" * 4096)
        with pytest.raises(pyfuse3.FUSEError):
            await ops.lookup(1, b"nope", None)

    trio.run(main)
    got = samples(m.collect())
    assert ops.seen_in_flight == 1
    assert value(got, "sofs_fuse_operations_total", op="read") == 2
    assert value(got, "sofs_fuse_operations_total", op="write") == 1
    assert value(got, "sofs_fuse_operations_total", op="lookup") == 1
    assert value(got, "sofs_fuse_operation_seconds_count", op="read") == 2
    assert value(got, "sofs_fuse_errors_total", op="lookup", errno="ENOENT") == 1
    assert value(got, "sofs_fuse_read_bytes_total") == 150
    assert value(got, "sofs_fuse_written_bytes_total") == 4096
    assert value(got, "sofs_fuse_requests_in_flight") == 0


def test_measured_without_metrics_only_calls_the_handler():
    ops = _Ops(None)
    assert trio.run(ops.read, 1, 0, 3) == b"xxx"


def test_every_measured_handler_has_its_op():
    measured_ops = {name for name, f in vars(operations.SofsOperations).items()
                    if getattr(f, "__wrapped__", None) is not None and callable(f)
                    and not isinstance(f, staticmethod)}
    assert measured_ops == set(FUSE_OPS)


def test_mount_registry_holds_fuse_and_mount_metrics(volume):
    fs, ring = volume
    registry = mount_registry(fs, ring, None, None, FuseMetrics())
    names = {f.name for f in registry.collect()}
    assert {"sofs_fuse_operations", "sofs_fuse_operation_seconds", "sofs_mount_info",
            "sofs_gc_due_chunks", "process_resident_memory_bytes"} <= names


# -- sofsctl mount --metrics ---------------------------------------------------------------------


def test_mount_refuses_a_bad_metrics_address(tmp_path):
    res = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "mount", "v", str(tmp_path),
                                   "--metrics", "9710"])
    assert res.exit_code == 2 and "is not HOST:PORT" in res.output


def test_mount_refuses_a_metrics_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "mount", "v", str(tmp_path),
                                       "--metrics", f"127.0.0.1:{port}"])
    assert res.exit_code == 2 and f"port {port} on 127.0.0.1 is already in use" in res.output


# -- a real mount -----------------------------------------------------------------------------------


@pytest.mark.integration
@needs_fuse
def test_a_real_mount_counts_fuse_requests_bytes_and_gc(tmp_path):
    a = Archive(tmp_path, create_args=("--trash", "0"))  # deletes feed the collector at once
    port = free_port()
    try:
        a.mount("--metrics", f"127.0.0.1:{port}")
        files = {f"f{i}": os.urandom(n) for i, n in enumerate((1 * MiB, 8 * MiB, 64 * 1024))}
        for name, data in files.items():
            with open(a.mnt / name, "wb") as f:
                f.write(data)
        written = scrape(port)
        total = sum(len(d) for d in files.values())
        assert value(written, "sofs_fuse_written_bytes_total") == total
        assert value(written, "sofs_fuse_operations_total", op="create") == len(files)
        # close(2) waits for FLUSH (RELEASE follows asynchronously)
        assert value(written, "sofs_fuse_operations_total", op="flush") >= len(files)
        assert value(written, "sofs_fuse_operation_seconds_count", op="write") == \
            value(written, "sofs_fuse_operations_total", op="write") > 0
        # (a RELEASE may still be in flight: its value is the unit tests')
        assert ("sofs_fuse_requests_in_flight", ()) in written
        assert value(written, "sofs_dirty_bytes") == 0  # closed: stored
        assert value(written, "sofs_mount_info", volume="vol", uuid=load_volume(a.data, "vol").uuid) == 1
        assert all(value(written, "sofs_disk_up", disk=f"d{i}") == 1 for i in range(6))
        assert sum(value(written, "sofs_disk_pieces", disk=f"d{i}") for i in range(6)) > 0

        # read back through a fresh mount: nothing in the kernel's page cache
        a.umount()
        a.mount("--metrics", f"127.0.0.1:{port}")
        for i in range(3):
            assert not os.path.exists(a.mnt / f"missing-{i}")
        for name, data in files.items():
            with open(a.mnt / name, "rb") as f:
                assert f.read() == data
        read = scrape(port)
        assert value(read, "sofs_fuse_read_bytes_total") == total
        assert value(read, "sofs_fuse_written_bytes_total") == 0
        assert value(read, "sofs_fuse_errors_total", op="lookup", errno="ENOENT") == 3
        assert value(read, "sofs_fuse_operations_total", op="open") == len(files)
        assert value(read, "sofs_block_cache_misses_total") >= 3  # at least a block a file

        queued = value(read, "sofs_gc_queued_chunks")
        os.unlink(a.mnt / "f1")  # two 4 MiB blocks of random bytes: two chunks
        assert value(scrape(port), "sofs_gc_queued_chunks") == queued + 2
    finally:
        a.cleanup()


@pytest.mark.integration
@needs_fuse
def test_a_mount_whose_metrics_port_is_taken_fails_and_unmounts(tmp_path):
    a = Archive(tmp_path)
    try:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            # the daemon itself, past sofsctl's own check
            res = subprocess.run([sys.executable, "-m", "fuse_mount.daemon", "--data-dir",
                                  str(a.data), "--metrics", f"127.0.0.1:{port}", "vol",
                                  str(a.mnt)], capture_output=True, text=True, timeout=120)
        assert res.returncode == 1
        assert f"mount failed: cannot serve metrics on 127.0.0.1:{port}: port {port} on " \
               "127.0.0.1 is already in use" in res.stderr
        with open("/proc/self/mountinfo") as f:
            assert str(a.mnt) not in f.read()  # unmounted again
        a.mount()  # and the volume mounts fine without it
        assert os.listdir(a.mnt) == []
    finally:
        a.cleanup()
