"""The data path (sofs/fileio.py, DataPath) under races and failures: each test pins a bug a review
found in it (write vs base-block load, flush vs size update, failed flushes, close, cold reads,
the dirty limit, GC vs flushes, crash vs size), fixed since."""

import os
import threading
import time

import pytest

from chunkstore import errors as cerr
from sofs import schema
from sofs.errors import FsError
from sofs.fs import Filesystem
from sofs.inode import ROOT_INO

from .conftest import BS, read_file
from .conftest import write_file as _write_in


def write_file(fs, name, data):
    return _write_in(fs, ROOT_INO, name, data)


read_all = read_file


def test_write_loading_a_base_block_does_not_undo_a_concurrent_write(env):
    """fs.py _writable_block: the stored block is loaded outside the lock and then installed
    as the dirty buffer without checking that the block was rewritten (and committed)
    meanwhile: a concurrent full-block write is silently lost."""
    mount, store = env
    fs = mount(cache_bytes=0)
    ino = write_file(fs, b"f", b"\x01" * BS)
    fh = fs.open(ino, os.O_RDWR)
    in_get, go = threading.Event(), threading.Event()

    def slow_get(ref):
        if threading.current_thread().name == "patcher":
            in_get.set()
            go.wait(5)

    store.before_get = slow_get
    t = threading.Thread(target=fs.write, args=(fh, 10, b"a" * 100), name="patcher")
    t.start()
    assert in_get.wait(5)
    new = b"\x02" * BS
    fs.write(fh, 0, new)  # full block: flushed and committed right away
    go.set()
    t.join(5)
    fs.release(fh)
    expected = new[:10] + b"a" * 100 + new[110:]
    assert read_all(fs, ino) == expected


def test_flush_between_copy_and_size_update_keeps_the_block(env):
    """fs.py write(): data is copied into the dirty buffer before node.size grows
    (_written runs after the loop); a flush in that window sees the block beyond EOF,
    treats it as truncated away (_commit_blocks) and drops it: the file reads zeros."""
    mount, _ = env
    fs = mount()
    fh, node = fs.create(ROOT_INO, b"f", 0o644, os.O_RDWR)
    fs.write(fh, 0, b"h" * 100)
    fs.flush(fh)
    reached, go = threading.Event(), threading.Event()
    real = fs._data._writable_block  # the data path's internals, on purpose
    calls = []

    def pausing(ino, index, boff, n):
        calls.append(index)
        if threading.current_thread().name == "writer" and len(calls) == 2:
            reached.set()  # block 1 copied in, size not yet updated
            go.wait(5)
        return real(ino, index, boff, n)

    fs._data._writable_block = pausing
    data = b"D" * (BS + 200)  # block 1 (new, past EOF) and block 2
    t = threading.Thread(target=fs.write, args=(fh, BS + 50, data), name="writer")
    t.start()
    assert reached.wait(5)
    fs.fsync(fh)  # e.g. fsync of another descriptor, or a writer over the dirty limit
    go.set()
    t.join(5)
    fs.release(fh)
    got = read_all(fs, node.ino)
    assert got[BS + 50:BS + 50 + len(data)] == data


def test_failed_flush_does_not_leak_the_chunks_it_stored(env):
    """fs.py _store_and_commit: when one put of a multi-block flush fails, chunks already
    put are neither referenced nor queued for GC (same after a crash between put and
    commit): they stay in the RING forever."""
    mount, store = env
    fs = mount(gc_grace_s=0)
    fh, node = fs.create(ROOT_INO, b"f", 0o644, os.O_RDWR)
    good, bad = os.urandom(BS), b"FAIL" + os.urandom(BS - 4)

    def fail_bad(payload):
        if b"FAIL" in bytes(payload[:32]):
            raise cerr.ChunkStoreError("injected")

    store.before_put = fail_bad
    fs.write(fh, 0, good[:BS - 1])
    fs.write(fh, BS, bad[:BS - 1])
    with pytest.raises(FsError):
        fs.fsync(fh)
    store.before_put = None
    fs.setattr(node.ino, size=0)  # the data is dropped: nothing references any chunk
    fs.release(fh)
    fs.unlink(ROOT_INO, b"f")
    fs.collect_garbage()
    assert len(store) == 0


def test_truncate_of_a_closed_file_leaves_no_buffers_behind(env):
    """fs.py truncate: setattr(size) on a file nobody has open creates a FileBuffers that
    only release() would remove: one leaked entry (and a never-evicted inode) per file."""
    mount, _ = env
    fs = mount()
    inos = [write_file(fs, b"f%d" % i, b"x" * 100) for i in range(20)]
    for ino in inos:
        fs.setattr(ino, size=10)
    assert not fs._data.buffered()


def test_close_flushes_every_file_even_if_one_fails(env):
    """fs.py close: the first flush error aborts close: later files' data is never stored,
    metadata is neither synced nor closed."""
    mount, store = env
    fs = mount()
    fa, a = fs.create(ROOT_INO, b"a", 0o644, os.O_RDWR)
    fb, b = fs.create(ROOT_INO, b"b", 0o644, os.O_RDWR)
    fs.write(fa, 0, b"FAIL" + b"a" * 100)
    fs.write(fb, 0, b"b" * 100)

    def fail(payload):
        if b"FAIL" in bytes(payload[:32]):
            raise cerr.ChunkStoreError("injected")

    store.before_put = fail
    with pytest.raises(FsError):
        fs.close()
    store.before_put = None
    fs2 = mount()  # close released the metadata: the volume opens again
    assert fs2.meta.get(schema.block_key(b.ino, 0)) is not None


def test_concurrent_cold_reads_of_one_block_fetch_it_once(env):
    """fs.py _load_block: no single-flight for demand reads: the kernel's parallel
    read-ahead requests for pieces of one block each fetch and decode the whole chunk."""
    mount, store = env
    fs = mount()
    ino = write_file(fs, b"f", os.urandom(BS))
    fs.cache.clear()  # cold cache
    store.before_get = lambda ref: time.sleep(0.2)
    gets0 = store.gets
    fh = fs.open(ino, os.O_RDONLY)
    q = BS // 4
    threads = [threading.Thread(target=fs.read, args=(fh, i * q, q)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    fs.release(fh)
    assert store.gets - gets0 == 1


def test_dirty_limit_does_not_store_partial_blocks_over_and_over(env):
    """fs.py write(): once the volume-wide dirty limit is reached, every write flushes all
    of its file's dirty blocks, partial ones included; the next write to that block
    reloads it and stores it again: write amplification grows with concurrent files."""
    mount, store = env
    fs = mount(dirty_limit=4 * BS)
    files = 16
    handles = [fs.create(ROOT_INO, b"f%d" % i, 0o644, os.O_WRONLY)[0] for i in range(files)]
    piece = BS // 8
    puts0 = store.puts
    for block in range(2):
        for k in range(8):
            for fh in handles:
                fs.write(fh, block * BS + k * piece, os.urandom(piece))
    for fh in handles:
        fs.release(fh)
    blocks = files * 2
    assert store.puts - puts0 <= 2 * blocks  # today: ~4x (126 puts for 32 blocks) plus reloads


def test_gc_pass_does_not_stall_flushes_for_its_whole_duration(env):
    """fs.py collect_garbage holds the GC lock exclusively for the entire pass (every
    delete of every due chunk): fsync/close of unrelated files wait behind it."""
    mount, store = env
    fs = mount(gc_grace_s=0)
    for i in range(30):
        write_file(fs, b"g%d" % i, os.urandom(100))
        fs.unlink(ROOT_INO, b"g%d" % i)
    started = threading.Event()

    def slow_delete(ref):
        started.set()
        time.sleep(0.05)

    deleted = []
    store.before_delete = lambda ref: (slow_delete(ref), deleted.append(ref))
    gc = threading.Thread(target=fs.collect_garbage)
    gc.start()
    assert started.wait(5)
    write_file(fs, b"new", b"n" * 100)
    done_when_flushed = len(deleted)
    gc.join(10)
    assert len(deleted) == 30
    assert done_when_flushed < 30  # the flush got in between two batches of the pass


def test_crash_never_persists_a_size_beyond_the_stored_data(env):
    """fs.py _commit_blocks saves the in-memory inode, whose size already covers dirty,
    unstored blocks: after a kill -9 the file has its full length but zeros where the
    unflushed data was (a DICOM that looks complete but is not)."""
    mount, store = env
    fs = mount()
    fh, node = fs.create(ROOT_INO, b"f", 0o644, os.O_WRONLY)
    fs.write(fh, 0, b"x" * (BS + BS // 2))  # block 0 full: committed; block 1 still dirty
    fs.meta.close()  # kill -9
    fs._pool.shutdown()
    fs2 = Filesystem.open_volume(fs.meta.path.parent.parent.parent, "v", store)
    try:
        data = read_all(fs2, node.ino)
        assert bytes(BS // 2) not in data[BS:] or len(data) <= BS
    finally:
        fs2.close()
