"""DiskStore end to end: writes, reads, compaction, crash recovery, close() racing writers."""

import os
import shutil
import subprocess
import sys
import threading

import pytest

from chunkstore.disk import container as ctr
from chunkstore.disk.log import ContainerLog
from chunkstore.disk.store import DiskStore, default_reserve, read_marker
from chunkstore.errors import ChunkCorrupt, ChunkNotFound, DiskFull, DiskUnavailable, KeyConflict
from chunkstore.placement.keys import chunk_key
from chunkstore.protection.policy import REPLICA_INDEX, ReplicationPolicy

CODE = ReplicationPolicy(3).code


def _init(path, **kw):
    DiskStore.initialise(path, "cluster-a", "d0")
    return DiskStore(path, **kw)


def _put(ds, payload, frag=REPLICA_INDEX):
    key = chunk_key(payload)
    ds.put(key, frag, CODE, len(payload), payload)
    return key


@pytest.fixture
def disk(tmp_path):
    ds = _init(tmp_path / "d0")
    yield ds
    ds.close()


def test_marker(tmp_path):
    p = tmp_path / "d0"
    with pytest.raises(DiskUnavailable):
        DiskStore(p)
    m = DiskStore.initialise(p, "cluster-a", "d0")
    assert read_marker(p) == m
    assert DiskStore.initialise(p, "cluster-a", "d0") == m  # idempotent
    with pytest.raises(DiskUnavailable):
        DiskStore.initialise(p, "cluster-b", "d0")
    with pytest.raises(DiskUnavailable):
        DiskStore(p, cluster_id="cluster-b")
    other = tmp_path / "full"
    other.mkdir()
    (other / "somefile").write_bytes(b"x")
    with pytest.raises(DiskUnavailable):
        DiskStore.initialise(other, "cluster-a", "d1")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "DISK").write_bytes(b"{nope")
    with pytest.raises(DiskUnavailable):
        DiskStore(tmp_path / "bad")


def test_put_get_idempotent_conflict(disk):
    key = _put(disk, b"hello")
    assert disk.get(key, REPLICA_INDEX) == b"hello"
    assert disk.has(key, REPLICA_INDEX)
    _put(disk, b"hello")  # idempotent
    with pytest.raises(KeyConflict):
        disk.put(key, REPLICA_INDEX, CODE, 5, b"world")
    with pytest.raises(ChunkNotFound):
        disk.get(key, 0)
    empty = _put(disk, b"")
    assert disk.get(empty, REPLICA_INDEX) == b""
    assert disk.stats().live_pieces == 2
    infos = {(p.key, p.frag_idx): p for p in disk.pieces()}
    assert infos[(key, REPLICA_INDEX)].length == 5 and infos[(key, REPLICA_INDEX)].policy == CODE


def test_delete(disk):
    key = _put(disk, b"abc")
    disk.delete(key, REPLICA_INDEX)
    disk.delete(key, REPLICA_INDEX)  # idempotent
    with pytest.raises(ChunkNotFound):
        disk.get(key, REPLICA_INDEX)
    assert not disk.has(key, REPLICA_INDEX)
    _put(disk, b"abc")  # re-put after delete
    assert disk.get(key, REPLICA_INDEX) == b"abc"
    st = disk.stats()
    assert st.live_pieces == 1 and st.dead_bytes > 0


def test_corrupt_piece(disk):
    key = _put(disk, b"x" * 1000)
    info = disk.piece(key, REPLICA_INDEX)
    ctr.flip_byte(os.path.join(disk.path, "containers", ctr.container_name(info.container)),
                  ctr.data_offset(info.offset) + 10)
    with pytest.raises(ChunkCorrupt):
        disk.get(key, REPLICA_INDEX)


def test_persistence_and_roll(tmp_path):
    ds = _init(tmp_path / "d0", container_size=4096)
    keys = [_put(ds, os.urandom(1000)) for _ in range(20)]
    data = {k: ds.get(k, REPLICA_INDEX) for k in keys}
    assert ds.stats().containers > 3
    ds.close()
    ds = DiskStore(tmp_path / "d0", container_size=4096, fd_cache_size=2)
    for k in keys:
        assert ds.get(k, REPLICA_INDEX) == data[k]
    ds.close()


def test_compact(tmp_path):
    ds = _init(tmp_path / "d0", container_size=8192)
    keys = [_put(ds, os.urandom(1500)) for _ in range(30)]
    for k in keys[::2] + keys[1:10]:
        ds.delete(k, REPLICA_INDEX)
    survivors = [k for k in keys if k not in set(keys[::2] + keys[1:10])]
    before = ds.stats()
    rep = ds.compact(0.3)
    after = ds.stats()
    assert rep.containers_removed > 0 and rep.records_moved > 0
    assert after.used_bytes < before.used_bytes
    assert after.live_pieces == before.live_pieces == len(survivors)
    for k in survivors:
        assert ds.get(k, REPLICA_INDEX)
    ds.close()
    ds = DiskStore(tmp_path / "d0", container_size=8192)
    for k in survivors:
        assert ds.get(k, REPLICA_INDEX)
    for k in keys[::2]:
        assert not ds.has(k, REPLICA_INDEX)
    ds.close()


def test_compaction_reaches_the_active_container(tmp_path):
    """Space of pieces deleted from the active container comes back (it never did: only
    sealed containers were compacted), and everything reads back after a reopen."""
    from chunkstore.disk import compact as compaction
    ds = _init(tmp_path / "d0")  # the default 64 MiB container: all of it in the active one
    keys = [_put(ds, os.urandom(600_000)) for _ in range(12)]
    cdir = tmp_path / "d0" / "containers"
    assert len(os.listdir(cdir)) == 1
    for k in keys[:9]:
        ds.delete(k, REPLICA_INDEX)
    before = ds.stats().used_bytes
    rep = ds.compact(0.3)
    assert rep.containers_removed == 1 and rep.records_moved == 3, rep
    assert ds.stats().used_bytes < before / 3
    for k in keys[9:]:
        assert ds.get(k, REPLICA_INDEX)
    k_new = _put(ds, b"after the seal")
    assert ds.compact(0.3).containers_removed == 0  # nothing dead: nothing sealed again
    ds.close()
    ds = DiskStore(tmp_path / "d0")
    try:
        for k in keys[9:] + [k_new]:
            assert ds.get(k, REPLICA_INDEX)
        for k in keys[:9]:
            assert not ds.has(k, REPLICA_INDEX)
    finally:
        ds.close()
    # a few dead bytes are not worth a new container, unless the disk is too full to roll
    active = compaction.SealedContainer(1, ctr.FILE_HEADER_SIZE + 100_000, 50_000)
    assert not compaction.worth_sealing(active, 0.3, free_bytes=10 << 30, container_size=64 << 20)
    assert compaction.worth_sealing(active, 0.3, free_bytes=2 << 20, container_size=64 << 20)
    assert not compaction.worth_sealing(active, 0.6, free_bytes=2 << 20, container_size=64 << 20)
    # nor when its live records could not be copied out
    assert not compaction.worth_sealing(active, 0.3, free_bytes=1 << 20, container_size=64 << 20)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_disk_smaller_than_one_container_gets_space_back_after_deletes(tmp_path):
    """On a 12 MiB filesystem (64 MiB containers) writes reach ENOSPC; after deletes and a
    compaction they succeed again."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        ds = _init(mnt / "d0")
        keys = []
        with pytest.raises(DiskFull):
            for _ in range(40):
                keys.append(_put(ds, os.urandom(1 << 20)))
        for k in keys:
            ds.delete(k, REPLICA_INDEX)
        rep = ds.compact(0.3)
        assert rep.containers_removed == 1, rep
        again = [_put(ds, os.urandom(1 << 20)) for _ in range(5)]  # ENOSPC before the fix
        for k in again:
            assert len(ds.get(k, REPLICA_INDEX)) == 1 << 20
        ds.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _active_container(path):
    cdir = os.path.join(path, "containers")
    return os.path.join(cdir, sorted(os.listdir(cdir))[-1])


def test_recovery_torn_tail(tmp_path):
    ds = _init(tmp_path / "d0")
    k1 = _put(ds, b"first" * 100)
    ds.close()
    path = _active_container(tmp_path / "d0")
    size = os.path.getsize(path)
    # a torn record at the tail (crash in the middle of an append)
    payload = b"second" * 100
    hdr, _ = ctr.encode_record(chunk_key(payload), REPLICA_INDEX, CODE, len(payload), payload)
    with open(path, "ab") as f:
        f.write(hdr + payload[:50])
    ds = DiskStore(tmp_path / "d0")
    assert os.path.getsize(path) == size
    assert ds.get(k1, REPLICA_INDEX) == b"first" * 100
    assert not ds.has(chunk_key(payload), REPLICA_INDEX)
    k3 = _put(ds, b"third")
    ds.close()
    ds = DiskStore(tmp_path / "d0")
    assert ds.get(k3, REPLICA_INDEX) == b"third"
    ds.close()


def test_recovery_unindexed_record(tmp_path):
    """Crash between the append (+fdatasync) and the index commit."""
    ds = _init(tmp_path / "d0")
    _put(ds, b"first")
    ds.close()
    path = _active_container(tmp_path / "d0")
    payloads = [b"second" * 10, b"third" * 10]
    with open(path, "ab") as f:
        for p in payloads:
            hdr, _ = ctr.encode_record(chunk_key(p), REPLICA_INDEX, CODE, len(p), p)
            f.write(hdr + p)
        f.write(ctr.encode_tombstone(chunk_key(payloads[1]), REPLICA_INDEX, CODE))
    ds = DiskStore(tmp_path / "d0")
    assert ds.get(chunk_key(payloads[0]), REPLICA_INDEX) == payloads[0]
    assert not ds.has(chunk_key(payloads[1]), REPLICA_INDEX)
    assert ds.stats().live_pieces == 2
    ds.close()
    ds = DiskStore(tmp_path / "d0")  # second recovery is a no-op
    assert ds.stats().live_pieces == 2
    ds.close()


def test_group_commit(disk, monkeypatch):
    calls = []
    real = os.fdatasync
    gate = threading.Event()

    def slow_sync(fd):
        calls.append(fd)
        gate.wait(0.05)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_sync)
    payloads = [os.urandom(100) for _ in range(64)]

    def worker(chunk):
        for p in chunk:
            _put(disk, p)

    threads = [threading.Thread(target=worker, args=(payloads[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monkeypatch.setattr(os, "fdatasync", real)
    assert len(calls) < len(payloads) / 2, len(calls)
    for p in payloads:
        assert disk.get(chunk_key(p), REPLICA_INDEX) == p


def test_concurrent_same_piece(disk):
    payload = os.urandom(5000)
    errors = []

    def worker():
        try:
            _put(disk, payload)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert disk.stats().live_pieces == 1


def test_vanished_disk(tmp_path):
    ds = _init(tmp_path / "d0")
    key = _put(ds, b"abc")
    shutil.rmtree(tmp_path / "d0")
    with pytest.raises(DiskUnavailable):
        ds.get(key, REPLICA_INDEX)
    with pytest.raises(DiskUnavailable):
        _put(ds, b"def")
    ds.close()


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot mount a 4 MiB tmpfs for the ENOSPC test: {e}")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 4 MiB tmpfs for the ENOSPC test (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)


def test_enospc(small_fs):
    """Without a reserve the disk fills to ENOSPC: the torn record is cut off."""
    ds = _init(small_fs / "d0", reserve_bytes=0)
    stored = []
    with pytest.raises(DiskFull):
        for _ in range(100):
            stored.append(_put(ds, os.urandom(256 * 1024)))
    assert stored
    # the partial record was truncated away: the file ends at the last good record
    path = _active_container(small_fs / "d0")
    fd = os.open(path, os.O_RDONLY)
    try:
        sc = ctr.scan(fd)
        list(sc)
        assert sc.valid_end == sc.file_end
    finally:
        os.close(fd)
    for k in stored:
        assert len(ds.get(k, REPLICA_INDEX)) == 256 * 1024
    # space freed -> small puts work again, and are recovered after reopen
    ds.delete(stored[-1], REPLICA_INDEX)
    ds.compact(0.0)
    small = _put(ds, b"small")
    ds.close()
    ds = DiskStore(small_fs / "d0")
    assert ds.get(small, REPLICA_INDEX) == b"small"
    ds.close()


def test_fds_bounded(tmp_path):
    ds = _init(tmp_path / "d0", container_size=4096, fd_cache_size=2)
    keys = [_put(ds, os.urandom(1500)) for _ in range(60)]
    before = len(os.listdir("/proc/self/fd"))
    for k in keys:
        ds.get(k, REPLICA_INDEX)
    after = len(os.listdir("/proc/self/fd"))
    assert ds.stats().containers >= 20
    assert after - before <= 2
    ds.close()


def test_concurrent_put_delete_compact(tmp_path):
    ds = _init(tmp_path / "d0", container_size=16 * 1024)
    payloads = [os.urandom(700 + i) for i in range(240)]
    doomed = set(range(0, 240, 3))
    stop = threading.Event()
    errors = []

    def writer(part):
        try:
            for i in part:
                _put(ds, payloads[i])
                if i in doomed:
                    ds.delete(chunk_key(payloads[i]), REPLICA_INDEX)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    def compactor():
        try:
            while not stop.is_set():
                ds.compact(0.2)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(range(i, 240, 4),)) for i in range(4)]
    comp = threading.Thread(target=compactor)
    comp.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    comp.join()
    assert not errors
    ds.compact(0.0)

    def check(store):
        for i, p in enumerate(payloads):
            if i in doomed:
                assert not store.has(chunk_key(p), REPLICA_INDEX)
            else:
                assert store.get(chunk_key(p), REPLICA_INDEX) == p
        st = store.stats()
        assert st.live_pieces == sum(1 for _ in store.pieces()) == 240 - len(doomed)
        assert st.dead_bytes >= 0

    check(ds)
    ds.close()
    ds = DiskStore(tmp_path / "d0", container_size=16 * 1024)
    check(ds)
    ds.close()


_CRASH_WRITER = r"""
import os, sys
sys.path.insert(0, sys.argv[2])
from chunkstore.disk.store import DiskStore
from chunkstore.placement.keys import chunk_key
from chunkstore.protection.policy import ReplicationPolicy
code = ReplicationPolicy(3).code
ds = DiskStore(sys.argv[1], container_size=64 * 1024)
i = 0
while True:
    p = (b"%08d" % i) * (1 + i % 50)
    ds.put(chunk_key(p), 255, code, len(p), p)
    sys.stdout.write("%d\n" % i)
    sys.stdout.flush()
    i += 1
"""


def test_kill_9_loses_nothing_acknowledged(tmp_path):
    import signal

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    DiskStore.initialise(tmp_path / "d0", "cluster-a", "d0")
    proc = subprocess.Popen([sys.executable, "-c", _CRASH_WRITER, str(tmp_path / "d0"), root],
                            stdout=subprocess.PIPE, text=True)
    acked = []
    try:
        for line in proc.stdout:
            acked.append(int(line))
            if len(acked) >= 300:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    ds = DiskStore(tmp_path / "d0", container_size=64 * 1024)
    for i in acked:
        p = (b"%08d" % i) * (1 + i % 50)
        assert ds.get(chunk_key(p), REPLICA_INDEX) == p
    ds.close()


def test_acknowledged_tail_cut_off(tmp_path):
    """Bytes below the high-water mark vanish (outside interference): appends resume after the
    last intact record, lost pieces read as corrupt, and nothing shadows later records."""
    ds = _init(tmp_path / "d0")
    payloads = [os.urandom(3000) for _ in range(5)]
    keys = [_put(ds, p) for p in payloads]
    ds.close()
    path = _active_container(tmp_path / "d0")
    os.truncate(path, os.path.getsize(path) - 1000)
    ds = DiskStore(tmp_path / "d0")
    for k, p in zip(keys[:-1], payloads[:-1], strict=True):
        assert ds.get(k, REPLICA_INDEX) == p
    with pytest.raises(ChunkCorrupt):
        ds.get(keys[-1], REPLICA_INDEX)
    ds.delete(keys[-1], REPLICA_INDEX)
    _put(ds, payloads[-1])
    new = _put(ds, b"after the cut")
    ds.close()
    ds = DiskStore(tmp_path / "d0")
    assert ds.get(keys[-1], REPLICA_INDEX) == payloads[-1]
    assert ds.get(new, REPLICA_INDEX) == b"after the cut"
    ds.close()


def test_damaged_file_header_tolerated(tmp_path):
    ds = _init(tmp_path / "d0")
    key = _put(ds, b"abc")
    ds.close()
    ctr.flip_byte(_active_container(tmp_path / "d0"), 3)
    ds = DiskStore(tmp_path / "d0")
    assert ds.get(key, REPLICA_INDEX) == b"abc"
    ds.close()


# -- close() racing writers ---------------------------------------------------------------


def _fd_of(path):
    """The descriptor number this process has open on ``path`` (the store's active container)."""
    want = os.path.realpath(path)
    fds = [int(n) for n in os.listdir("/proc/self/fd") if _readlink(f"/proc/self/fd/{n}") == want]
    assert len(fds) == 1, fds
    return fds[0]


def _readlink(p):
    try:
        return os.readlink(p)
    except OSError:
        return None


def _victim_fd_at(fd, tmp_path):
    """Make fd number ``fd`` (closed) refer to a fresh, empty file, as a reused descriptor
    would; returns the file's path."""
    with pytest.raises(OSError):
        os.fstat(fd)  # the store closed it
    victim = tmp_path / "victim"
    tmp = os.open(victim, os.O_RDWR | os.O_CREAT, 0o600)  # often gets number ``fd`` itself
    if tmp != fd:
        os.dup2(tmp, fd)
        os.close(tmp)
    return victim


class _IndexClosedLater:
    """A store's index whose close() is held back: the moment when close() has released the
    container files but not yet closed the index, the window a racing write falls into."""

    def __init__(self, db):
        self.db = db

    def close(self):
        pass

    def __getattr__(self, name):
        return getattr(self.db, name)


@pytest.mark.parametrize("op", ["put", "delete"])
def test_write_racing_close_never_uses_the_released_fd(tmp_path, monkeypatch, op):
    """close() runs between a put's (or delete's) first closed-check and its append: the
    write must see the close under the append lock and raise DiskUnavailable, writing not a
    byte through the old descriptor number – which by then names another file – and not
    closing that file either."""
    ds = _init(tmp_path / "d0")
    key = _put(ds, b"already there")
    old_fd = _fd_of(_active_container(tmp_path / "d0"))
    index = _IndexClosedLater(ds._db)
    monkeypatch.setattr(ds, "_db", index)
    real_check = ds.check_alive
    victim = []

    def check_then_close():
        real_check()  # passes: the store is still open (the last step of the first check)
        ds.close()  # ... and here close() wins the race
        victim.append(_victim_fd_at(old_fd, tmp_path))

    monkeypatch.setattr(ds, "check_alive", check_then_close)
    try:
        with pytest.raises(DiskUnavailable, match="closed"):
            if op == "put":
                ds.put(chunk_key(b"new piece"), REPLICA_INDEX, CODE, 9, b"new piece")
            else:
                ds.delete(key, REPLICA_INDEX)
        assert victim and os.path.getsize(victim[0]) == 0
        os.fstat(old_fd)  # still open: the store did not close the file that reused the number
    finally:
        index.db.close()
        try:
            os.close(old_fd)
        except OSError:
            pass
    ds = DiskStore(tmp_path / "d0")
    assert ds.get(key, REPLICA_INDEX) == b"already there"
    ds.close()


def test_close_commits_what_was_queued_before_it(tmp_path, monkeypatch):
    """A put whose record was appended but not yet committed when close() runs is committed
    by close() and acknowledged normally; the released descriptor is not touched after."""
    ds = _init(tmp_path / "d0")
    old_fd = _fd_of(_active_container(tmp_path / "d0"))
    real_wait = ContainerLog.wait_committed
    victim = []

    def close_then_wait(log, op):
        ds.close()  # between the append and the group commit
        victim.append(_victim_fd_at(old_fd, tmp_path))
        real_wait(log, op)

    monkeypatch.setattr(ContainerLog, "wait_committed", close_then_wait)
    try:
        key = _put(ds, b"appended before the close")
        os.fstat(old_fd)  # not closed again by a group commit after close()
    finally:
        try:
            os.close(old_fd)
        except OSError:
            pass
    ds = DiskStore(tmp_path / "d0")
    assert ds.get(key, REPLICA_INDEX) == b"appended before the close"
    ds.close()


# -- hashing and lookups per call ---------------------------------------------------------


def _count_hashes(monkeypatch, size):
    import blake3

    made = []
    real = blake3.blake3

    def counting(data=b"", *args, **kw):
        if len(data) == size:
            made.append(size)
        return real(data, *args, **kw)

    monkeypatch.setattr(blake3, "blake3", counting)
    return made


def test_put_takes_a_checksum_verified_by_the_caller(disk, monkeypatch):
    data = os.urandom(10_000)
    key = chunk_key(data)
    checksum = ctr.data_checksum(data)
    hashes = _count_hashes(monkeypatch, len(data))
    disk.put(key, REPLICA_INDEX, CODE, len(data), data, checksum=checksum)
    assert hashes == []  # not hashed again
    disk.put(key, REPLICA_INDEX, CODE, len(data), data)  # idempotent; hashed here
    assert hashes == [len(data), len(data)]  # and the stored copy verified (issue 13)
    monkeypatch.undo()
    assert disk.piece(key, REPLICA_INDEX).checksum == checksum
    assert disk.get(key, REPLICA_INDEX) == data
    with pytest.raises(KeyConflict):
        disk.put(key, REPLICA_INDEX, CODE, len(data), data, checksum=bytes(16))


def test_get_piece_one_lookup_reserve_before_read(disk, monkeypatch):
    data = os.urandom(5000)
    key = _put(disk, data)
    lookups = []
    real_db = disk._db

    class Index:
        def get(self, k):
            lookups.append(k)
            return real_db.get(k)

        def __getattr__(self, name):
            return getattr(real_db, name)

    events = []
    real_pread = os.pread

    def pread(fd, n, off):
        events.append("read")
        return real_pread(fd, n, off)

    monkeypatch.setattr(disk, "_db", Index())
    monkeypatch.setattr(os, "pread", pread)
    info, got = disk.get_piece(key, REPLICA_INDEX, False, reserve=lambda i: events.append(("reserve", i.length)))
    monkeypatch.undo()
    assert got == data and info == disk.piece(key, REPLICA_INDEX)
    assert len(lookups) == 1
    assert events == [("reserve", len(data)), "read"]

    def refuse(info):
        raise MemoryError("no room")

    with pytest.raises(MemoryError):
        disk.get_piece(key, REPLICA_INDEX, reserve=refuse)


def test_a_full_disk_keeps_a_reserve_for_its_index_and_for_deletes(small_fs):
    """A disk filled to the last byte cannot reopen its index (RocksDB writes while it
    recovers): puts stop short of that, deletes still fit, and the disk opens again."""
    ds = _init(small_fs / "d0")
    stored = []
    with pytest.raises(DiskFull, match="kept for the index"):
        for _ in range(100):
            stored.append(_put(ds, os.urandom(256 * 1024)))
    assert stored
    vfs = os.statvfs(small_fs)
    assert vfs.f_bavail * vfs.f_frsize >= default_reserve(vfs.f_blocks * vfs.f_frsize)
    for k in stored:
        ds.delete(k, REPLICA_INDEX)
    ds.close()
    ds = DiskStore(small_fs / "d0")
    for k in stored:
        with pytest.raises(ChunkNotFound):
            ds.get(k, REPLICA_INDEX)
    ds.close()
