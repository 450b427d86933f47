"""The SOFS filesystem API driven directly (no FUSE), over an in-memory chunk store."""

import os
import stat

import pytest

from chunkstore.ring.memory import MemoryChunkStore
from sofs import schema
from sofs.errors import (
    DataUnavailable,
    DirectoryNotEmpty,
    EntryExists,
    InvalidArgument,
    IsADirectory,
    NameTooLong,
    NoSuchAttribute,
    NoSuchEntry,
    NotADirectory,
)
from sofs.fs import RENAME_EXCHANGE, RENAME_NOREPLACE, Ctx, Filesystem
from sofs.inode import ROOT_INO
from sofs.volume import create_volume

from .conftest import BS, read_file, write_file


@pytest.mark.parametrize("size", [0, 1, BS - 1, BS, BS + 1, 3 * BS + 17])
def test_write_read_round_trip_survives_reopen(env, size):
    mount, _ = env
    data = os.urandom(size)
    fs = mount()
    ino = write_file(fs, ROOT_INO, b"f", data)
    assert read_file(fs, ino) == data
    fs.close()
    fs = mount()
    assert fs.lookup(ROOT_INO, b"f").size == size
    assert read_file(fs, ino) == data


def test_overwrite_is_copy_on_write_and_gc_frees_old_chunks(env):
    mount, store = env
    fs = mount(gc_grace_s=0)
    data = bytearray(os.urandom(3 * BS))
    ino = write_file(fs, ROOT_INO, b"f", bytes(data))
    assert len(store) == 3
    fh = fs.open(ino, os.O_RDWR)
    fs.write(fh, BS + 10, b"x" * 100)
    fs.release(fh)
    data[BS + 10:BS + 110] = b"x" * 100
    assert read_file(fs, ino) == bytes(data)
    assert len(store) == 4  # the old middle block is unreferenced but not yet collected
    assert fs.collect_garbage() == 1
    assert len(store) == 3
    assert read_file(fs, ino) == bytes(data)


def test_identical_blocks_share_one_chunk_until_last_reference(env):
    mount, store = env
    fs = mount(gc_grace_s=0)
    block = os.urandom(BS)
    a = write_file(fs, ROOT_INO, b"a", block * 2)
    write_file(fs, ROOT_INO, b"b", block)
    assert len(store) == 1
    fs.unlink(ROOT_INO, b"b")
    fs.collect_garbage()
    assert len(store) == 1
    assert read_file(fs, a) == block * 2
    fs.unlink(ROOT_INO, b"a")
    assert fs.collect_garbage() == 1
    assert len(store) == 0


def test_zero_blocks_are_holes_and_sparse_reads_are_zero(env):
    mount, store = env
    fs = mount()
    fh, node = fs.create(ROOT_INO, b"sparse", 0o644, os.O_RDWR)
    fs.write(fh, 5 * BS + 3, b"end")
    fs.write(fh, 0, bytes(BS))
    fs.release(fh)
    assert len(store) == 1
    data = read_file(fs, node.ino)
    assert len(data) == 5 * BS + 6
    assert data[-3:] == b"end" and data[:-3] == bytes(5 * BS + 3)


def test_truncate_down_then_up_reads_zeros(env):
    mount, _ = env
    fs = mount()
    data = os.urandom(2 * BS + 500)
    ino = write_file(fs, ROOT_INO, b"f", data)
    fs.setattr(ino, size=BS + 100)
    assert read_file(fs, ino) == data[:BS + 100]
    fs.setattr(ino, size=3 * BS)
    assert read_file(fs, ino) == data[:BS + 100] + bytes(3 * BS - BS - 100)
    fs.close()
    fs = mount()
    assert read_file(fs, ino) == data[:BS + 100] + bytes(3 * BS - BS - 100)


def test_open_trunc_and_append(env):
    mount, _ = env
    fs = mount()
    ino = write_file(fs, ROOT_INO, b"f", b"hello world")
    fh = fs.open(ino, os.O_WRONLY | os.O_TRUNC)
    fs.write(fh, 0, b"abc")
    fs.release(fh)
    fh = fs.open(ino, os.O_WRONLY | os.O_APPEND)
    fs.write(fh, 0, b"def")
    fs.release(fh)
    assert read_file(fs, ino) == b"abcdef"


def test_unlinked_open_file_stays_readable_until_release(env):
    mount, store = env
    fs = mount(gc_grace_s=0)
    data = os.urandom(BS * 2)
    ino = write_file(fs, ROOT_INO, b"f", data)
    fh = fs.open(ino, os.O_RDWR)
    fs.unlink(ROOT_INO, b"f")
    with pytest.raises(NoSuchEntry):
        fs.lookup(ROOT_INO, b"f")
    assert fs.read(fh, 0, 2 * BS) == data
    fs.write(fh, 0, b"still writable")
    assert fs.read(fh, 0, 14) == b"still writable"
    assert fs.meta.get(schema.orphan_key(ino)) is not None
    fs.release(fh)
    with pytest.raises(NoSuchEntry):
        fs.getattr(ino)
    fs.collect_garbage()
    assert len(store) == 0


def test_orphans_left_by_a_crash_are_freed_at_next_open(env):
    mount, store = env
    fs = mount(gc_grace_s=0)
    ino = write_file(fs, ROOT_INO, b"f", os.urandom(BS))
    fs.open(ino, os.O_RDONLY)
    fs.unlink(ROOT_INO, b"f")
    fs.meta.close()  # simulate a crash: no release, no close
    fs._pool.shutdown()
    fs2 = Filesystem.open_volume(fs.meta.path.parent.parent.parent, "v", store, gc_grace_s=0)
    try:
        with pytest.raises(NoSuchEntry):
            fs2.getattr(ino)
        assert fs2.collect_garbage() == 1
    finally:
        fs2.close()


def test_directories_link_counts_and_errors(env):
    mount, _ = env
    fs = mount()
    d = fs.mkdir(ROOT_INO, b"d", 0o755)
    assert fs.getattr(ROOT_INO).nlink == 3
    fs.mkdir(d.ino, b"sub", 0o755)
    assert fs.getattr(d.ino).nlink == 3
    with pytest.raises(EntryExists):
        fs.mkdir(ROOT_INO, b"d", 0o755)
    with pytest.raises(DirectoryNotEmpty):
        fs.rmdir(ROOT_INO, b"d")
    with pytest.raises(NotADirectory):
        write_file(fs, ROOT_INO, b"file", b"x")
        fs.rmdir(ROOT_INO, b"file")
    with pytest.raises(IsADirectory):
        fs.unlink(ROOT_INO, b"d")
    with pytest.raises(NameTooLong):
        fs.mkdir(ROOT_INO, b"n" * 256, 0o755)
    fs.mkdir(ROOT_INO, b"n" * 255, 0o755)
    assert fs.lookup(d.ino, b"..").ino == ROOT_INO
    assert fs.lookup(d.ino, b".").ino == d.ino
    fs.rmdir(d.ino, b"sub")
    fs.rmdir(ROOT_INO, b"d")
    assert fs.getattr(ROOT_INO).nlink == 3  # root + the 255-byte-name dir


def test_rename_semantics(env):
    mount, _ = env
    fs = mount()
    a = fs.mkdir(ROOT_INO, b"a", 0o755)
    b = fs.mkdir(ROOT_INO, b"b", 0o755)
    f = write_file(fs, a.ino, b"f", b"one")
    g = write_file(fs, b.ino, b"g", b"two")
    fs.rename(a.ino, b"f", b.ino, b"g")  # atomic replace
    assert fs.lookup(b.ino, b"g").ino == f
    with pytest.raises(NoSuchEntry):
        fs.getattr(g)
    with pytest.raises(InvalidArgument):
        fs.rename(ROOT_INO, b"a", a.ino, b"inside")
    fs.mkdir(b.ino, b"full", 0o755)
    write_file(fs, fs.lookup(b.ino, b"full").ino, b"x", b"")
    with pytest.raises(DirectoryNotEmpty):
        fs.rename(ROOT_INO, b"a", b.ino, b"full")
    fs.mkdir(b.ino, b"empty", 0o755)
    fs.rename(ROOT_INO, b"a", b.ino, b"empty")
    assert fs.getattr(ROOT_INO).nlink == 3
    assert fs.getattr(b.ino).nlink == 4
    assert fs.lookup(a.ino, b"..").ino == b.ino
    write_file(fs, ROOT_INO, b"x", b"1")
    write_file(fs, ROOT_INO, b"y", b"2")
    with pytest.raises(EntryExists):
        fs.rename(ROOT_INO, b"x", ROOT_INO, b"y", RENAME_NOREPLACE)
    fs.rename(ROOT_INO, b"x", ROOT_INO, b"y", RENAME_EXCHANGE)
    assert read_file(fs, fs.lookup(ROOT_INO, b"x").ino) == b"2"
    assert read_file(fs, fs.lookup(ROOT_INO, b"y").ino) == b"1"


def test_hard_links_and_symlinks(env):
    mount, _ = env
    fs = mount()
    ino = write_file(fs, ROOT_INO, b"f", b"data")
    fs.link(ino, ROOT_INO, b"g")
    assert fs.getattr(ino).nlink == 2
    fs.unlink(ROOT_INO, b"f")
    assert read_file(fs, fs.lookup(ROOT_INO, b"g").ino) == b"data"
    s = fs.symlink(ROOT_INO, b"s", b"../target")
    assert stat.S_ISLNK(s.mode) and s.size == 9
    assert fs.readlink(s.ino) == b"../target"


def test_readdir_offsets_stay_stable_while_entries_change(env):
    mount, _ = env
    fs = mount()
    for i in range(50):
        write_file(fs, ROOT_INO, b"f%02d" % i, b"")
    first = fs.readdir(ROOT_INO, 0, limit=22)
    resume = first[-1][2]
    fs.unlink(ROOT_INO, b"f10")  # already listed
    fs.unlink(ROOT_INO, b"f40")  # not yet listed
    write_file(fs, ROOT_INO, b"new", b"")
    rest = list(fs.readdir(ROOT_INO, resume))
    names = [n for n, _, _ in first] + [n for n, _, _ in rest]
    assert names[:2] == [b".", b".."]
    expected = {b"f%02d" % i for i in range(50)} - {b"f40"} | {b"new"}
    assert set(names[2:]) == expected and len(names) - 2 == len(expected)


def test_xattrs(env):
    mount, _ = env
    fs = mount()
    ino = write_file(fs, ROOT_INO, b"f", b"")
    fs.setxattr(ino, b"user.DOSATTRIB", b"\x01\x02")
    assert fs.getxattr(ino, b"user.DOSATTRIB") == b"\x01\x02"
    assert fs.listxattr(ino) == [b"user.DOSATTRIB"]
    with pytest.raises(EntryExists):
        fs.setxattr(ino, b"user.DOSATTRIB", b"", 1)
    with pytest.raises(NoSuchAttribute):
        fs.setxattr(ino, b"user.other", b"", 2)
    fs.removexattr(ino, b"user.DOSATTRIB")
    with pytest.raises(NoSuchAttribute):
        fs.getxattr(ino, b"user.DOSATTRIB")


def test_lost_chunk_gives_data_unavailable_not_wrong_bytes(env):
    mount, store = env
    fs = mount(cache_bytes=0)
    ino = write_file(fs, ROOT_INO, b"f", os.urandom(BS))
    key, = list(store.keys())
    value = fs.meta.get(schema.block_key(ino, 0))
    from chunkstore.placement.keys import ChunkRef
    ref = ChunkRef.from_bytes(schema.parse_block_value(value)[1])
    assert ref.key == key
    store.corrupt(ref)
    with pytest.raises(DataUnavailable):
        read_file(fs, ino)


def test_sgid_directory_and_umask(env):
    mount, _ = env
    fs = mount()
    d = fs.mkdir(ROOT_INO, b"d", 0o2775, Ctx(uid=0, gid=50))
    node = fs.mkdir(d.ino, b"sub", 0o777, Ctx(uid=1000, gid=1000, umask=0o022))
    assert node.gid == 50 and node.mode & 0o7777 == 0o2755
    fh, f = fs.create(d.ino, b"f", 0o666, os.O_WRONLY, Ctx(uid=1000, gid=1000, umask=0o027))
    fs.release(fh)
    assert f.gid == 50 and f.mode & 0o777 == 0o640 and f.uid == 1000


def test_statfs_reports_usable_capacity(env):
    mount, _ = env
    fs = mount()
    st = fs.statfs()
    assert st.blocks > 0 and st.name_max == 255


def test_statfs_used_is_the_volumes_own_blocks_not_the_hosts(env):
    """df on a mount showed the host filesystem's usage (116G used for a volume holding 322
    MiB): used is now what the volume's stored blocks hold, kept by a counter that follows
    every change of the block map (writes, overwrites, truncates, holes, deletes)."""
    mount, store = env
    fs = mount()
    free = fs.statfs().blocks_free
    assert fs.statfs().blocks == free  # nothing stored: nothing used
    a = write_file(fs, ROOT_INO, b"a", os.urandom(3 * BS + 100))
    b = write_file(fs, ROOT_INO, b"b", os.urandom(BS))
    fh = fs.open(a, os.O_RDWR)
    fs.write(fh, 10 * BS, b"x" * 10)      # a hole, then a short block
    fs.write(fh, 0, bytes(BS))            # block 0 becomes zeros: not stored
    fs.release(fh)
    fs.setattr(b, size=BS // 2)
    st = fs.statfs()
    expected = 2 * BS + 100 + 10 + BS // 2
    assert (st.blocks - st.blocks_free) * st.block_size == -(-expected // 4096) * 4096
    assert fs._data._map.count_block_bytes() == expected  # the counter agrees with a scan
    fs.unlink(ROOT_INO, b"a")
    fs.unlink(ROOT_INO, b"b")
    st = fs.statfs()
    assert st.blocks == st.blocks_free


def test_a_volume_from_before_the_block_counter_gets_it_at_mount(env):
    mount, _ = env
    fs = mount()
    write_file(fs, ROOT_INO, b"a", os.urandom(BS + 7))
    b = fs.meta.batch()
    b.delete(schema.SUPER_BLOCK_BYTES)
    fs.meta.commit(b)
    fs.close()
    fs = mount()
    assert fs._data.block_bytes() == BS + 7


def test_volumes_never_share_chunks(tmp_path):
    """Identical blocks in two volumes are two chunks: one volume's GC cannot hurt the other."""
    store = MemoryChunkStore()
    create_volume(tmp_path, "a", block_size=BS, trash_s=0)
    create_volume(tmp_path, "b", block_size=BS, trash_s=0)
    fa = Filesystem.open_volume(tmp_path, "a", store, gc_grace_s=0)
    fb = Filesystem.open_volume(tmp_path, "b", store, gc_grace_s=0)
    try:
        data = os.urandom(BS)
        write_file(fa, ROOT_INO, b"f", data)
        ino_b = write_file(fb, ROOT_INO, b"f", data)
        assert len(store) == 2
        fa.unlink(ROOT_INO, b"f")
        assert fa.collect_garbage() == 1
        assert read_file(fb, ino_b) == data
    finally:
        fa.close()
        fb.close()


def test_needs_flush_sees_an_unpersisted_size_after_a_full_block_was_stored(env):
    # FUSE's flush (close) and release skip their thread hop when needs_flush is False: it
    # must stay True until the file's size is committed, not only while blocks are dirty
    mount, store = env
    fs = mount()
    fh, node = fs.create(ROOT_INO, b"f", 0o644, os.O_WRONLY)
    assert not fs.needs_flush(node.ino)
    fs.write(fh, 0, os.urandom(BS))  # a full block: stored at once, the size left for close
    assert len(store) >= 1
    assert fs.needs_flush(node.ino)
    fs.write(fh, BS, b"tail")  # a partial block: dirty
    assert fs.needs_flush(node.ino)
    fs.flush(fh)
    assert not fs.needs_flush(node.ino)
    fs.release(fh)
    fh = fs.open(node.ino, os.O_RDONLY)  # a read-only open and close leaves nothing to do
    assert fs.read(fh, 0, 4) and not fs.needs_flush(node.ino)
    fs.release(fh)
    fs.close()
    fs = mount()
    assert fs.lookup(ROOT_INO, b"f").size == BS + 4
