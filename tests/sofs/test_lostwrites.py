"""Writes the RING could not store (sofs/fileio.py DataPath._abandon, sofs/lostwrites.py): the
data is dropped, never retried behind the writer's back, never shown; the file is what its last
complete close or fsync left; every open of it at the time hears of it once."""

import os

import pytest

from chunkstore import errors as cerr
from sofs import schema
from sofs.errors import NoSpace
from sofs.inode import ROOT_INO

from .conftest import BS, read_file


@pytest.fixture
def full(env):
    """(mount, store, set_full(bool)): a store whose puts fail with DiskFull while full."""
    mount, store = env
    state = {"full": False}

    def before_put(payload):
        if state["full"]:
            raise cerr.DiskFull("every disk is full")

    store.before_put = before_put
    return mount, store, lambda on: state.update(full=on)


def test_a_failed_fsync_drops_the_data_and_the_file_is_its_last_close(full):
    mount, store, set_full = full
    fs = mount()
    fh, node = fs.create(ROOT_INO, b"f", 0o644, os.O_RDWR)
    first = b"a" * (BS + 100)
    fs.write(fh, 0, first)
    fs.fsync(fh)
    set_full(True)
    fs.write(fh, BS + 100, b"b" * 500)      # grows the file, buffered
    fs.write(fh, 10, b"c" * 20)             # overwrites stored data, buffered
    with pytest.raises(NoSpace):
        fs.fsync(fh)
    assert fs.getattr(node.ino).size == len(first)
    assert fs.read(fh, 0, 3 * BS) == first   # nothing that was not stored shows
    fs.fsync(fh)                             # the error was this open's: reported once
    set_full(False)
    fs.release(fh)
    assert read_file(fs, node.ino) == first
    lost = fs.lost_writes.records()
    assert [(r.ino, r.kept_size, r.written_size, r.open_count) for r in lost] == [
        (node.ino, len(first), BS + 600, 1)]
    assert "full" in lost[0].error
    fs.close()
    assert read_file(mount(), node.ino) == first


def test_every_open_at_the_time_reports_it_once_and_later_opens_do_not(full):
    mount, store, set_full = full
    fs = mount()
    writer, node = fs.create(ROOT_INO, b"f", 0o644, os.O_RDWR)
    reader = fs.open(node.ino, os.O_RDONLY)
    fs.write(writer, 0, b"x" * 100)
    set_full(True)
    with pytest.raises(NoSpace):
        fs.flush(writer)
    set_full(False)
    later = fs.open(node.ino, os.O_RDONLY)
    fs.flush(later)                     # opened after: nothing to report
    with pytest.raises(NoSpace):
        fs.raise_lost_writes(reader)    # a close with nothing to flush still reports it
    fs.flush(reader)                    # once
    fs.flush(writer)
    for fh in (writer, reader, later):
        fs.release(fh)
    assert fs.getattr(node.ino).size == 0


def test_blocks_stored_past_the_last_close_are_cut_and_their_stale_tail_never_shows(full):
    """Full blocks are stored as they fill (before the close): a failure later cuts them,
    and the block holding the kept end is cut too, so growing the file again reads zeros
    where the lost data was."""
    mount, store, set_full = full
    fs = mount(gc_grace_s=0)
    fh, node = fs.create(ROOT_INO, b"f", 0o644, os.O_RDWR)
    fs.write(fh, 0, b"k" * 100)
    fs.flush(fh)                                   # kept: 100 bytes
    fs.write(fh, 100, b"L" * (3 * BS - 100))       # blocks 0..2 full: stored right away
    assert fs.meta.get(schema.block_key(node.ino, 2)) is not None
    set_full(True)
    fs.write(fh, 3 * BS, b"M" * 10)
    with pytest.raises(NoSpace):
        fs.flush(fh)
    assert fs.getattr(node.ino).size == 100
    assert fs.meta.get(schema.block_key(node.ino, 1)) is None
    assert fs.meta.get(schema.block_key(node.ino, 2)) is None
    set_full(False)
    fs.write(fh, 200, b"n")                        # grows again past the old tail
    fs.release(fh)
    assert read_file(fs, node.ino) == b"k" * 100 + bytes(100) + b"n"
    fs.close()
    assert read_file(mount(), node.ino) == b"k" * 100 + bytes(100) + b"n"


def test_a_full_ring_met_while_relieving_memory_fails_the_file_that_lost_data(full):
    """Over the dirty limit a write stores other files' full blocks: when that fails, the
    other file lost data (its opens hear of it), not the file being written."""
    mount, store, set_full = full
    fs = mount(dirty_limit=BS)
    fa, a = fs.create(ROOT_INO, b"a", 0o644, os.O_RDWR)
    fb, b = fs.create(ROOT_INO, b"b", 0o644, os.O_RDWR)
    fs.write(fa, BS // 2, b"a" * (BS // 2))
    fs.write(fa, 0, b"a" * (BS // 2))  # block 0 of a is full, not stored yet
    set_full(True)
    fs.write(fb, 0, b"b" * 1000)       # over the limit: a's full block is stored, and fails
    assert fs.getattr(a.ino).size == 0
    set_full(False)
    fs.release(fb)
    with pytest.raises(NoSpace):
        fs.release(fa)
    assert read_file(fs, b.ino) == b"b" * 1000
    assert [r.ino for r in fs.lost_writes.records()] == [a.ino]


def test_a_writer_racing_the_reload_of_the_cut_end_block_keeps_its_data(full):
    """_abandon reloads the end block a partial flush stored longer than the kept size; a
    writer appending at the kept end meanwhile must keep its bytes (they used to be cut off
    while its close returned 0)."""
    import threading

    mount, store, set_full = full
    fs = mount()
    fh, node = fs.create(ROOT_INO, b"f", 0o644, os.O_RDWR)
    fs.write(fh, 0, b"a" * 100)
    fs.fsync(fh)                                 # kept: 100 bytes
    fs.write(fh, 100, b"L" * (BS - 100))         # block 0 full: stored long at once
    set_full(True)
    fs.write(fh, BS, b"M" * 10)
    raced = []
    real_load = fs._data._chunks.load  # the data path's internals, on purpose

    def racing_load(ref, raw_len):
        # the writer goes first, just as _abandon is about to reload the end block
        if threading.current_thread().name == "abandon" and not raced:
            raced.append(True)
            set_full(False)
            w = threading.Thread(target=fs.write, args=(writer, 100, b"Z" * 50))
            w.start()
            w.join(30)
            assert not w.is_alive()
        return real_load(ref, raw_len)

    writer = fs.open(node.ino, os.O_RDWR)
    fs._data._chunks.load = racing_load
    result = []
    t = threading.Thread(target=lambda: result.append(_fsync_error(fs, fh)), name="abandon")
    t.start()
    t.join(30)
    fs._data._chunks.load = real_load
    assert raced and isinstance(result[0], NoSpace)
    with pytest.raises(NoSpace):  # it was open when the "L"s were lost: it hears of it once
        fs.flush(writer)
    fs.flush(writer)                              # and its own data is stored
    want = b"a" * 100 + b"Z" * 50
    assert read_file(fs, node.ino) == want
    for h in (fh, writer):
        try:
            fs.release(h)
        except NoSpace:
            pass
    fs.close()
    assert read_file(mount(), node.ino) == want


def _fsync_error(fs, fh):
    try:
        fs.fsync(fh)
    except NoSpace as e:
        return e
    return None


def test_a_full_ring_never_keeps_the_volume_from_mounting(full):
    """An end block that could not be stored cut leaves an unflushed mark; the next mount
    must not fail on it while the RING is still full."""
    mount, store, set_full = full
    fs = mount()
    fh, node = fs.create(ROOT_INO, b"f", 0o644, os.O_RDWR)
    fs.write(fh, 0, b"a" * 100)
    fs.fsync(fh)
    fs.write(fh, 100, b"L" * (BS - 100))   # stored long
    set_full(True)
    fs.write(fh, BS, b"M")
    with pytest.raises(NoSpace):
        fs.fsync(fh)
    fs.release(fh)                          # only the cut copy is pending: no error
    fs.close()
    assert fs.meta is not None
    again = mount()                         # still full
    assert read_file(again, node.ino) == b"a" * 100
    fh = again.open(node.ino, os.O_RDWR)
    again.write(fh, 300, b"z")              # past the cut end: zeros, not the lost "L"s
    assert again.read(fh, 0, 400) == b"a" * 100 + bytes(200) + b"z"
    set_full(False)
    again.release(fh)
    again.close()
    assert read_file(mount(), node.ino) == b"a" * 100 + bytes(200) + b"z"


def test_a_truncate_that_fails_on_a_full_ring_is_no_lost_write(full):
    mount, store, set_full = full
    fs = mount()
    ino = _write_closed(fs, b"f", b"x" * 1000)
    before = fs.getattr(ino)
    set_full(True)
    with pytest.raises(NoSpace):
        fs.setattr(ino, size=500)             # its cut end block cannot be stored
    assert fs.getattr(ino).size == 1000 and not fs.lost_writes.records()
    assert read_file(fs, ino) == b"x" * 1000  # a reader's close is no error either
    assert fs.getattr(ino).ctime_ns == before.ctime_ns


def test_lost_writes_move_the_change_time(full):
    mount, store, set_full = full
    fs = mount()
    fh, node = fs.create(ROOT_INO, b"f", 0o644, os.O_RDWR)
    fs.write(fh, 0, b"a" * 10)
    fs.fsync(fh)
    fs.write(fh, 0, b"b" * 10)                # an overwrite: the size does not change
    written = fs.getattr(node.ino).ctime_ns
    set_full(True)
    with pytest.raises(NoSpace):
        fs.fsync(fh)
    assert fs.getattr(node.ino).ctime_ns > written  # NFS clients drop their cached "b"s
    set_full(False)
    fs.release(fh)
    assert read_file(fs, node.ino) == b"a" * 10


def _write_closed(fs, name, data):
    fh, node = fs.create(ROOT_INO, name, 0o644, os.O_RDWR)
    fs.write(fh, 0, data)
    fs.release(fh)
    return node.ino
