"""ContainerLog on its own: the append lock's Appender, group commit, rolling, sealed containers,
close; and compaction driven through the log, the index and the fd cache (no DiskStore)."""

import os

import pytest
from rocksdict import Options, Rdict, WriteOptions

from chunkstore.disk import compact as compaction
from chunkstore.disk import container as ctr
from chunkstore.disk import recovery
from chunkstore.disk.fdcache import FdCache
from chunkstore.disk.index import HWM_KEY, PieceInfo, decode_hwm, iter_pieces, piece_id
from chunkstore.disk.log import ContainerLog
from chunkstore.disk.pending import DEL, PUT, PendingOp
from chunkstore.errors import DiskUnavailable
from chunkstore.placement.keys import chunk_key
from chunkstore.protection.policy import REPLICA_INDEX, ReplicationPolicy

CODE = ReplicationPolicy(3).code


class Disk:
    """A log with its index and fd cache, as DiskStore wires them."""

    def __init__(self, path, container_size=4096):
        self.cdir = os.path.join(path, "containers")
        os.makedirs(self.cdir, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        self.db = Rdict(os.path.join(path, "index"), opts)
        self.cache = FdCache(lambda cid: os.open(ctr.container_path(self.cdir, cid), os.O_RDWR), 2)
        wopts = WriteOptions()
        wopts.sync = True
        cids, end = recovery.recover(self.db, self.cache, self.cdir, wopts)
        self.log = ContainerLog(
            str(path), self.cdir, self.db, self.cache, cids, end, container_size=container_size, check_alive=lambda: None
        )

    def put(self, payload):
        key = chunk_key(payload)
        header, checksum = ctr.encode_record(key, REPLICA_INDEX, CODE, len(payload), payload)
        with self.log.appending() as a:
            cid, off = a.append([header, payload])
            info = PieceInfo(key, REPLICA_INDEX, cid, off, len(payload), checksum, CODE, len(payload))
            op = a.enqueue(PendingOp(PUT, info.pid, info, None))
        self.log.wait_committed(op)
        return info

    def delete(self, info):
        with self.log.appending() as a:
            a.append([ctr.encode_tombstone(info.key, info.frag_idx, info.policy, info.chunk_size)])
            op = a.enqueue(PendingOp(DEL, info.pid, None, info))
        self.log.wait_committed(op)

    def close(self):
        self.log.close()
        self.cache.close()
        self.db.close()


@pytest.fixture
def disk(tmp_path):
    d = Disk(tmp_path)
    yield d
    d.close()


def test_append_commit_indexes_and_moves_the_high_water_mark(disk):
    info = disk.put(b"one record")
    assert PieceInfo.decode(info.pid, disk.db.get(info.pid)) == info
    assert decode_hwm(disk.db.get(HWM_KEY)) == (info.container, info.offset + ctr.RECORD_HEADER_SIZE + info.length)
    u = disk.log.usage()
    assert (u.live_pieces, u.live_bytes, u.containers) == (1, ctr.RECORD_HEADER_SIZE + info.length, 1)
    disk.delete(info)
    assert disk.db.get(info.pid) is None
    assert (disk.log.usage().live_pieces, disk.log.usage().live_bytes) == (0, 0)


def test_pending_answers_for_its_piece_until_committed(disk):
    info = disk.put(b"committed")
    with disk.log.appending() as a:
        assert a.pending(info.pid) is None  # committed: the index answers now
        op = a.enqueue(PendingOp(DEL, info.pid, None, info))
        assert a.pending(info.pid) is op
    disk.log.wait_committed(op)
    with disk.log.appending() as a:
        assert a.pending(info.pid) is None


def test_appender_is_dead_after_its_block(disk):
    with disk.log.appending() as a:
        pass
    with pytest.raises(RuntimeError):
        a.append([b"x"])
    with pytest.raises(RuntimeError):
        a.pending(piece_id(bytes(20), REPLICA_INDEX))


def test_rolling_seals_containers_below_the_high_water_mark(disk):
    infos = [disk.put(os.urandom(1500) + bytes([i])) for i in range(6)]
    sealed = disk.log.sealed()
    active = infos[-1].container
    assert sealed and all(c.cid < active for c in sealed)
    assert [c.cid for c in sealed] == sorted(c.cid for c in sealed)
    first = sealed[0]
    assert first.size == os.path.getsize(ctr.container_path(disk.cdir, first.cid))
    assert first.live_bytes == disk.log.live_bytes(first.cid) > 0
    with pytest.raises(ValueError):
        disk.log.remove_sealed(active)


def test_compaction_takes_the_log_index_and_cache(disk):
    infos = [disk.put(os.urandom(1500) + bytes([i])) for i in range(6)]
    first = disk.log.sealed()[0].cid
    doomed = [i for i in infos if i.container == first]
    for info in doomed[1:]:
        disk.delete(info)
    report = compaction.compact(disk.log, disk.db, disk.cache, 0.3)
    assert report.containers_removed >= 1 and report.records_moved >= 1
    assert not os.path.exists(ctr.container_path(disk.cdir, first))
    kept = {i.pid: i for i in iter_pieces(disk.db.items())}
    assert doomed[0].pid in kept and kept[doomed[0].pid].container != first
    with disk.cache.open(kept[doomed[0].pid].container) as fd:
        record = os.pread(fd, ctr.RECORD_HEADER_SIZE + doomed[0].length, kept[doomed[0].pid].offset)
    assert ctr.data_checksum(record[ctr.RECORD_HEADER_SIZE :]) == doomed[0].checksum


def test_close_refuses_appends_and_is_idempotent(disk):
    disk.put(b"before the close")
    disk.log.close()
    disk.log.close()
    with pytest.raises(DiskUnavailable, match="closed"):
        with disk.log.appending():
            pass
    with pytest.raises(DiskUnavailable, match="closed"):
        disk.log.check_writable()
