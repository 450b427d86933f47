"""sofs.chunkusers: which inodes and paths use a chunk, a file's block map, path resolution,
and the read-only view of metadata another process has open."""

from __future__ import annotations

import os

import pytest

from sofs.chunkusers import chunk_uses, file_blocks, inode_of, paths_of, reading_volume, resolve
from sofs.errors import NoSuchEntry, VolumeError
from sofs.inode import ROOT_INO
from sofs.metadata import MetaStore

from .conftest import BS


def _file(fs, parent: int, name: bytes, data: bytes) -> int:
    fh, node = fs.create(parent, name, 0o644, os.O_WRONLY)
    fs.write(fh, 0, data)
    fs.release(fh)
    return node.ino


def test_chunk_users_and_paths_through_links_renames_and_shared_chunks(env):
    mount, _ = env
    fs = mount()
    studies = fs.mkdir(ROOT_INO, b"studies", 0o755).ino
    y2019 = fs.mkdir(studies, b"2019", 0o755).ino
    same = os.urandom(BS)
    a = _file(fs, y2019, b"a.dcm", same + os.urandom(100))
    b = _file(fs, ROOT_INO, b"b.dcm", same)          # block 0 shares a's chunk
    fs.link(b, y2019, b"b-again.dcm")
    fs.rename(ROOT_INO, b"studies", ROOT_INO, b"archive")
    fs.flush_all()
    meta = fs.meta
    blocks_a = file_blocks(meta, a)
    assert [blk.index for blk in blocks_a] == [0, 1] and blocks_a[1].length == 100
    shared = blocks_a[0].ref.key
    assert file_blocks(meta, b)[0].ref.key == shared
    uses = chunk_uses(meta, [shared, blocks_a[1].ref.key, b"\0" * 20])
    assert set(uses) == {shared, blocks_a[1].ref.key}  # a key never used is left out
    assert uses[shared].refcount == 2 and sorted(uses[shared].blocks) == [(a, 0), (b, 0)]
    assert uses[shared].ref == blocks_a[0].ref
    assert paths_of(meta, {a, b, ROOT_INO}) == {
        a: ["/archive/2019/a.dcm"], b: ["/archive/2019/b-again.dcm", "/b.dcm"],
        ROOT_INO: ["/"]}
    assert resolve(meta, "/archive/2019/a.dcm") == a and resolve(meta, "/") == ROOT_INO
    assert inode_of(meta, a).size == BS + 100
    with pytest.raises(NoSuchEntry):
        resolve(meta, "/studies/2019/a.dcm")
    # unlinked while open: the inode has no path any more, its blocks still name the chunk
    fh = fs.open(a, os.O_RDONLY)
    fs.unlink(y2019, b"a.dcm")
    fs.flush_all()
    assert paths_of(meta, {a}) == {a: []}
    assert (a, 0) in chunk_uses(meta, [shared])[shared].blocks
    fs.release(fh)


def test_reading_a_volume_a_mount_process_holds_opens_a_view(env, tmp_path):
    mount, _ = env
    fs = mount()
    ino = _file(fs, ROOT_INO, b"f", b"x" * 10)
    fs.flush_all()
    with reading_volume(tmp_path, "v") as view:  # the volume is open here: a view
        assert view.read_only and resolve(view, "/f") == ino
        with pytest.raises(Exception, match="read-only"):
            b = view.batch()
            b.put(b"Zkey", b"v")
            view.commit(b)
    fs.close()
    with reading_volume(tmp_path, "v") as meta:  # nobody holds it: opened directly
        assert not meta.read_only and resolve(meta, "/f") == ino
    with pytest.raises(VolumeError, match="no metadata"):
        with reading_volume(tmp_path, "never-created"):
            pass


def test_a_view_sees_what_was_committed_before_it_opened(tmp_path):
    primary = MetaStore(tmp_path / "db")
    b = primary.batch()
    b.put(b"a", b"1")
    primary.commit(b)
    view = MetaStore.open_view(tmp_path / "db", tmp_path / "view")
    try:
        assert view.get(b"a") == b"1"
    finally:
        view.close()
        primary.close()
