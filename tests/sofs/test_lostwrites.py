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
