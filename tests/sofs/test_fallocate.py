"""fallocate(2) in the file layer (sofs.fallocate, DataPath.fallocate), driven in-process over a
memory store: mode 0 (extend, no-op inside the file, NoSpace), KEEP_SIZE, and punching holes
(whole blocks become holes and their chunks go to the collector, the edges are rewritten),
with the data outside the range, the refcounts and fsck as judges, after a remount too."""

from __future__ import annotations

import os
import threading

import pytest

from chunkstore.clock import FakeClock
from chunkstore.placement.keys import ChunkRef
from chunkstore.protection.policy import Protection
from chunkstore.ring.memory import MemoryChunkStore
from sofs import chunkrefs, fsck, schema
from sofs.errors import BadFileHandle, InvalidArgument, NoSpace, NotSupported
from sofs.fallocate import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, HolePlan, raw_space_needed
from sofs.fs import Filesystem
from sofs.inode import ROOT_INO
from sofs.metadata import MetaStore
from sofs.volume import create_volume, volume_dir

from .conftest import BS, read_file, write_file

PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
COLLAPSE_RANGE, ZERO_RANGE, INSERT_RANGE, UNSHARE_RANGE = 0x08, 0x10, 0x20, 0x40


def pattern(n: int, seed: int = 1) -> bytes:
    """n bytes without a zero block anywhere (so no block of it is a hole)."""
    return bytes((i * 7 + seed * 13) % 251 + 1 for i in range(n))


def blocks(fs: Filesystem, ino: int) -> dict[int, bytes]:
    """block index -> chunk key of the file's map."""
    return {schema.parse_block_key(k): ChunkRef.from_bytes(schema.parse_block_value(v)[1]).key
            for k, v in fs.meta.scan(schema.block_prefix(ino))}


def queued(fs: Filesystem) -> set[bytes]:
    """Chunk keys in the collector's queue."""
    return {schema.parse_gc_key(k)[1] for k, _ in fs.meta.scan(b"G")}


def open_rw(fs: Filesystem, ino: int) -> int:
    return fs.open(ino, os.O_RDWR)


def assert_fsck_clean(root, store) -> None:
    m = MetaStore(volume_dir(root, "v") / "meta")
    try:
        report = fsck.check(m, store, block_size=BS)
    finally:
        m.close()
    assert report.clean and not report.problems, report.problems


# ------------------------------------------------------------------ mode 0 and KEEP_SIZE


def test_mode_0_extends_with_zeros_that_cost_nothing_and_survives_a_remount(env, tmp_path):
    mount, store = env
    clock = FakeClock()
    fs = mount(clock=clock)
    data = pattern(BS + 100)
    ino = write_file(fs, ROOT_INO, b"f", data)
    before = fs.getattr(ino)
    chunks = len(store)
    clock.advance(5)
    fh = open_rw(fs, ino)
    fs.fallocate(fh, 0, BS, 3 * BS)
    after = fs.getattr(ino)
    assert after.size == 4 * BS
    assert after.mtime_ns > before.mtime_ns and after.ctime_ns > before.ctime_ns
    assert fs.read(fh, 0, 5 * BS) == data + bytes(4 * BS - len(data))
    fs.release(fh)
    assert len(store) == chunks  # the new range is holes
    fs.close()
    fs = mount()
    assert read_file(fs, ino) == data + bytes(4 * BS - len(data))
    fs.close()
    assert_fsck_clean(tmp_path, store)


def test_mode_0_inside_the_file_changes_only_the_times(env):
    mount, store = env
    clock = FakeClock()
    fs = mount(clock=clock)
    data = pattern(3 * BS)
    ino = write_file(fs, ROOT_INO, b"f", data)
    before, chunks = fs.getattr(ino), blocks(fs, ino)
    clock.advance(5)
    fh = open_rw(fs, ino)
    fs.fallocate(fh, 0, 10, BS)
    fs.release(fh)
    after = fs.getattr(ino)
    assert after.size == before.size and after.mtime_ns > before.mtime_ns
    assert blocks(fs, ino) == chunks
    assert read_file(fs, ino) == data


def test_keep_size_preallocates_nothing_and_keeps_the_size(env):
    mount, store = env
    fs = mount()
    data = pattern(100)
    ino = write_file(fs, ROOT_INO, b"f", data)
    fh = open_rw(fs, ino)
    fs.fallocate(fh, FALLOC_FL_KEEP_SIZE, 0, 10 * BS)
    fs.release(fh)
    assert fs.getattr(ino).size == 100
    assert read_file(fs, ino) == data


def test_mode_0_stores_what_was_written_before_it(env):
    """The data written before (dirty, not yet stored) is stored with the new size."""
    mount, store = env
    fs = mount()
    fh, node = fs.create(ROOT_INO, b"f", 0o644, os.O_RDWR)
    fs.write(fh, 0, pattern(BS // 2))
    fs.fallocate(fh, 0, 0, 2 * BS)
    assert not fs.needs_flush(node.ino)
    assert schema.unflushed_key(node.ino) not in dict(fs.meta.scan(b"W"))
    fs.release(fh)
    assert read_file(fs, node.ino) == pattern(BS // 2) + bytes(2 * BS - BS // 2)


def small_volume(tmp_path, free: int) -> tuple[Filesystem, MemoryChunkStore]:
    create_volume(tmp_path, "v", block_size=BS)
    store = MemoryChunkStore(total_bytes=free)
    return Filesystem.open_volume(tmp_path, "v", store), store


def test_mode_0_refuses_what_the_policy_could_not_store(tmp_path):
    fs, store = small_volume(tmp_path, free=10 * BS)
    try:
        ino = write_file(fs, ROOT_INO, b"f", pattern(100))
        fh = open_rw(fs, ino)
        free = store.capacity().free_bytes
        fits = (free // raw_space_needed(fs.protection, BS, 0, BS)) * BS
        assert raw_space_needed(fs.protection, BS, 0, fits) <= free
        assert raw_space_needed(fs.protection, BS, 0, fits + BS) > free
        for mode in (0, FALLOC_FL_KEEP_SIZE):
            with pytest.raises(NoSpace):
                fs.fallocate(fh, mode, 0, fits + BS)
        with pytest.raises(NoSpace):  # inside the file too: writing it would need the space
            fs.fallocate(fh, 0, 0, free)
        assert fs.getattr(ino).size == 100
        fs.fallocate(fh, 0, 0, fits)
        assert fs.getattr(ino).size == fits
        # more than is free, but a punch stores nothing new
        fs.fallocate(fh, PUNCH, 0, 100 * BS)
        fs.release(fh)
        assert read_file(fs, ino) == bytes(fits)
    finally:
        fs.close()


def test_space_needed_follows_the_policy_of_each_block():
    p = Protection.parse("cos2", "ec4+2", 60 * 1024)
    assert raw_space_needed(p, BS, 0, 1000) == 3000                  # a small chunk: 3 copies
    assert raw_space_needed(p, BS, 0, BS) == BS * 3 // 2             # a block: EC 4+2
    assert raw_space_needed(p, BS, BS - 10, 20) == 10 * 3 + 10 * 3   # two small pieces
    assert raw_space_needed(p, BS, 10, 4 * BS) == (3 * (BS * 3 // 2) + (BS - 10) * 3 // 2
                                                   + 10 * 3)


# ------------------------------------------------------------------ punching holes


def test_punch_of_whole_blocks_makes_holes_and_feeds_the_collector(env, tmp_path):
    mount, store = env
    clock = FakeClock()
    fs = mount(clock=clock, gc_grace_s=10)
    data = pattern(5 * BS + 100)
    ino = write_file(fs, ROOT_INO, b"f", data)
    old = blocks(fs, ino)
    assert sorted(old) == [0, 1, 2, 3, 4, 5]
    fh = open_rw(fs, ino)
    fs.fallocate(fh, PUNCH, BS, 3 * BS)
    fs.release(fh)
    assert sorted(blocks(fs, ino)) == [0, 4, 5]
    assert blocks(fs, ino)[0] == old[0] and blocks(fs, ino)[4] == old[4]
    gone = {old[i] for i in (1, 2, 3)}
    assert all(chunkrefs.refcount(fs.meta, k) == 0 for k in gone)
    assert gone <= queued(fs)
    assert fs.getattr(ino).size == len(data)
    expected = data[:BS] + bytes(3 * BS) + data[4 * BS:]
    assert read_file(fs, ino) == expected
    clock.advance(11)
    assert fs.collect_garbage() == 3
    assert not any(k in set(store.keys()) for k in gone)
    fs.close()
    fs = mount()
    assert read_file(fs, ino) == expected
    fs.close()
    assert_fsck_clean(tmp_path, store)


def test_punch_of_partial_blocks_rewrites_the_edges(env, tmp_path):
    mount, store = env
    fs = mount()
    data = pattern(4 * BS)
    ino = write_file(fs, ROOT_INO, b"f", data)
    old = blocks(fs, ino)
    fh = open_rw(fs, ino)
    start, length = BS // 3, 2 * BS  # the end of block 0, all of block 1, most of block 2
    fs.fallocate(fh, PUNCH, start, length)
    fs.release(fh)
    new = blocks(fs, ino)
    assert sorted(new) == [0, 2, 3]
    assert new[0] != old[0] and new[2] != old[2] and new[3] == old[3]
    assert {old[0], old[1], old[2]} <= queued(fs)
    expected = data[:start] + bytes(length) + data[start + length:]
    assert read_file(fs, ino) == expected
    fs.close()
    fs = mount()
    assert read_file(fs, ino) == expected
    fs.close()
    assert_fsck_clean(tmp_path, store)


def test_punch_inside_one_block(env):
    mount, store = env
    fs = mount()
    data = pattern(BS + 500)
    ino = write_file(fs, ROOT_INO, b"f", data)
    fh = open_rw(fs, ino)
    fs.fallocate(fh, PUNCH, 100, 200)
    fs.fallocate(fh, PUNCH, BS + 10, 20)
    fs.release(fh)
    expected = bytearray(data)
    expected[100:300] = bytes(200)
    expected[BS + 10:BS + 30] = bytes(20)
    assert read_file(fs, ino) == bytes(expected)


def test_punch_to_the_end_of_file_and_past_it(env):
    mount, store = env
    clock = FakeClock()
    fs = mount(clock=clock)
    data = pattern(2 * BS + 300)  # the last block is partial
    ino = write_file(fs, ROOT_INO, b"f", data)
    fh = open_rw(fs, ino)
    fs.fallocate(fh, PUNCH, 2 * BS, 10 * BS)  # the whole last block, and beyond the end
    assert sorted(blocks(fs, ino)) == [0, 1]
    assert fs.getattr(ino).size == len(data)
    before = fs.getattr(ino)
    clock.advance(5)
    fs.fallocate(fh, PUNCH, len(data), BS)  # entirely past the end: nothing, as on ext4
    assert fs.getattr(ino) == before
    fs.release(fh)
    assert read_file(fs, ino) == data[:2 * BS] + bytes(300)


def test_punch_keeps_unflushed_writes_outside_the_range_and_zeros_those_inside(env, tmp_path):
    mount, store = env
    fs = mount()
    data = pattern(4 * BS)
    ino = write_file(fs, ROOT_INO, b"f", data)
    fh = open_rw(fs, ino)
    fs.write(fh, 10, b"A" * 100)            # dirty, outside the range
    fs.write(fs_fh := fh, BS + 10, b"B" * 100)  # dirty, inside a whole punched block
    fs.write(fs_fh, 2 * BS + BS // 2, b"C" * 100)  # dirty, in the edge, inside the range
    fs.write(fs_fh, 3 * BS + 50, b"D" * 100)  # dirty, in the edge, outside the range
    fs.fallocate(fh, PUNCH, BS, 2 * BS + BS // 2 + 200 - BS)  # [BS, 2.5 BS + 200)
    assert fs.statistics().dirty_bytes == 0  # all stored with the punch
    expected = bytearray(data)
    expected[10:110] = b"A" * 100
    expected[3 * BS + 50:3 * BS + 150] = b"D" * 100
    expected[BS:2 * BS + BS // 2 + 200] = bytes(BS + BS // 2 + 200)
    assert fs.read(fh, 0, 5 * BS) == bytes(expected)
    fs.release(fh)
    fs.close()
    fs = mount()
    assert read_file(fs, ino) == bytes(expected)
    fs.close()
    assert_fsck_clean(tmp_path, store)


def test_punch_of_a_block_shared_with_another_keeps_the_chunk(env):
    """Content-addressed: two equal blocks name one chunk; punching one leaves it referenced."""
    mount, store = env
    fs = mount()
    block = pattern(BS, seed=3)
    ino = write_file(fs, ROOT_INO, b"f", block * 2)
    key = blocks(fs, ino)[0]
    assert blocks(fs, ino)[1] == key and chunkrefs.refcount(fs.meta, key) == 2
    fh = open_rw(fs, ino)
    fs.fallocate(fh, PUNCH, 0, BS)
    fs.release(fh)
    assert chunkrefs.refcount(fs.meta, key) == 1 and key not in queued(fs)
    assert read_file(fs, ino) == bytes(BS) + block


def test_punch_of_a_hole_stores_nothing(env):
    mount, store = env
    fs = mount()
    fh, node = fs.create(ROOT_INO, b"f", 0o644, os.O_RDWR)
    fs.truncate(node.ino, 3 * BS)
    puts = store.puts
    fs.fallocate(fh, PUNCH, 100, 2 * BS)
    fs.release(fh)
    assert store.puts == puts and not blocks(fs, node.ino)
    assert read_file(fs, node.ino) == bytes(3 * BS)


def test_punch_while_a_writer_loads_the_edge_block_keeps_its_write(env):
    """A writer that loads the edge block (outside the range) while the punch loads it too:
    whichever installs its copy first, both changes end up in the block."""
    mount, store = env
    fs = mount(cache_bytes=0)
    data = pattern(2 * BS)
    ino = write_file(fs, ROOT_INO, b"f", data)
    fh = open_rw(fs, ino)
    writers: list[threading.Thread] = []

    def write_meanwhile(ref):
        if not writers and threading.current_thread().name == "puncher":
            writers.append(threading.Thread(target=fs.write, args=(fh, 10, b"W" * 50)))
            writers[0].start()

    store.before_get = write_meanwhile
    t = threading.Thread(target=fs.fallocate, args=(fh, PUNCH, BS // 2, BS), name="puncher")
    t.start()
    t.join(10)
    assert writers
    writers[0].join(10)
    assert not t.is_alive() and not writers[0].is_alive()
    store.before_get = None
    fs.release(fh)
    expected = bytearray(data)
    expected[10:60] = b"W" * 50
    expected[BS // 2:BS // 2 + BS] = bytes(BS)
    assert read_file(fs, ino) == bytes(expected)


def test_punch_while_a_writer_loads_a_punched_block_never_brings_old_bytes_back(env):
    """A writer that loads a block of the range while the punch stores its edges holds the old
    bytes: the punch zeros its buffer too, and no old byte comes back later."""
    mount, store = env
    fs = mount(cache_bytes=0)
    data = pattern(3 * BS)
    ino = write_file(fs, ROOT_INO, b"f", data)
    fh = open_rw(fs, ino)
    armed, fired = threading.Event(), []

    def write_meanwhile(payload):
        if armed.is_set() and not fired:
            fired.append(1)
            t = threading.Thread(target=fs.write, args=(fh, BS + 10, b"W" * 50))
            t.start()
            t.join(5)
            assert not t.is_alive()

    store.before_put = write_meanwhile
    armed.set()
    # [BS // 2, 2 BS + 100): block 1 whole, the edges (0 and 2) are rewritten (stored)
    fs.fallocate(fh, PUNCH, BS // 2, BS + BS // 2 + 100)
    assert fired
    store.before_put = None
    fs.release(fh)
    got = read_file(fs, ino)
    assert got[BS:2 * BS] == bytes(BS)  # the write was ordered before the punch
    assert got[:BS // 2] == data[:BS // 2] and got[2 * BS + 100:] == data[2 * BS + 100:]


def test_punch_with_a_flush_of_full_blocks_in_flight(env):
    """A writer's background flush of a full block is under way when the punch starts: the
    punch lands on the new block, and the older flush never overwrites it."""
    mount, store = env
    fs = mount()
    data = pattern(3 * BS)
    ino = write_file(fs, ROOT_INO, b"f", data)
    fh = open_rw(fs, ino)
    in_put, go = threading.Event(), threading.Event()

    def slow_put(payload):
        if threading.current_thread().name == "writer":
            in_put.set()
            go.wait(5)

    store.before_put = slow_put
    new = pattern(BS, seed=9)
    w = threading.Thread(target=fs.write, args=(fh, 2 * BS, new), name="writer")
    w.start()
    assert in_put.wait(5)
    p = threading.Thread(target=fs.fallocate, args=(fh, PUNCH, 2 * BS + 10, 20))
    p.start()  # waits for the flush under way (the file's gate), or works from its copy
    go.set()
    w.join(5)
    p.join(5)
    assert not w.is_alive() and not p.is_alive()
    store.before_put = None
    fs.release(fh)
    expected = bytearray(data[:2 * BS] + new)
    expected[2 * BS + 10:2 * BS + 30] = bytes(20)
    assert read_file(fs, ino) == bytes(expected)


# ------------------------------------------------------------------ refused


def test_unsupported_modes_and_bad_arguments(env):
    mount, store = env
    fs = mount()
    ino = write_file(fs, ROOT_INO, b"f", pattern(100))
    fh = open_rw(fs, ino)
    for mode in (FALLOC_FL_PUNCH_HOLE, COLLAPSE_RANGE, ZERO_RANGE, ZERO_RANGE | 1,
                 INSERT_RANGE, UNSHARE_RANGE, 0x80):
        with pytest.raises(NotSupported):
            fs.fallocate(fh, mode, 0, 10)
    for offset, length in ((-1, 10), (0, 0), (0, -5), (2**62, 2**62)):
        with pytest.raises(InvalidArgument):
            fs.fallocate(fh, 0, offset, length)
    fs.release(fh)
    ro = fs.open(ino, os.O_RDONLY)
    with pytest.raises(BadFileHandle):
        fs.fallocate(ro, 0, 0, 10)
    fs.release(ro)
    d = fs.mkdir(ROOT_INO, b"d", 0o755)
    dh = fs.open(d.ino, os.O_RDONLY)
    with pytest.raises(BadFileHandle):  # as the kernel: a directory is never open for writing
        fs.fallocate(dh, 0, 0, 10)
    fs.release(dh)
    fifo = fs.mknod(ROOT_INO, b"p", 0o10644)
    ph = fs.open(fifo.ino, os.O_RDWR)
    with pytest.raises(InvalidArgument):
        fs.fallocate(ph, 0, 0, 10)
    fs.release(ph)
    assert read_file(fs, ino) == pattern(100)


def test_hole_plan():
    assert HolePlan.of(10, 20, 1000, BS).edges == (0,)
    p = HolePlan.of(BS // 2, 3 * BS, 10 * BS, BS)
    assert (p.first_whole, p.end_whole, p.edges) == (1, 3, (0,))
    p = HolePlan.of(BS // 2, 3 * BS + 1, 10 * BS, BS)
    assert (p.first_whole, p.end_whole, p.edges) == (1, 3, (0, 3))
    p = HolePlan.of(BS, 10 * BS, 2 * BS + 5, BS)  # reaches EOF: the partial last block is whole
    assert (p.end, p.first_whole, p.end_whole, p.edges) == (2 * BS + 5, 1, 3, ())
    p = HolePlan.of(3 * BS, 4 * BS, 2 * BS, BS)
    assert p.offset == p.end and not p.edges and p.first_whole == p.end_whole
