"""The filesystem checker: a volume built through the real Filesystem API checks clean; each kind
of metadata corruption is reported, repaired, and leaves a clean volume whose files are intact."""

import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chunkstore.placement.keys import ChunkRef
from chunkstore.ring.memory import MemoryChunkStore
from sofs import fsck, schema
from sofs.errors import FsError
from sofs.fs import Filesystem
from sofs.inode import ROOT_INO, Inode
from sofs.metadata import MetaStore
from sofs.volume import create_volume, load_volume, volume_dir

BS = 64 * 1024


def _data(n, seed):
    return bytes((i * 7 + seed) % 251 + 1 for i in range(n))


class Vol:
    """A populated volume, closed: files, a hard link, a symlink, nested directories, xattrs,
    a sparse file, a shared chunk, and a file unlinked while open (its O mark survives)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        create_volume(root, "v", block_size=BS, trash_s=0)
        self.store = MemoryChunkStore()
        self.files: dict[tuple[bytes, ...], bytes] = {}
        fs = self.mount()
        d = fs.mkdir(ROOT_INO, b"dir", 0o755).ino
        sub = fs.mkdir(d, b"sub", 0o755).ino
        fs.mkdir(sub, b"deep", 0o755)
        self.write(fs, ROOT_INO, (b"a",), os.urandom(3 * BS + 3392))
        self.write(fs, sub, (b"dir", b"sub", b"b"), _data(100, 1))
        self.write(fs, d, (b"dir", b"dup"), _data(100, 1))  # same chunk as b
        self.write(fs, ROOT_INO, (b"empty",), b"")
        a = fs.lookup(ROOT_INO, b"a").ino
        fs.link(a, d, b"link_a")
        self.files[(b"dir", b"link_a")] = self.files[(b"a",)]
        fs.symlink(d, b"s", b"../a")
        fs.setxattr(a, b"user.tag", b"ct")
        fh, node = fs.create(ROOT_INO, b"sparse", 0o644, os.O_WRONLY)
        fs.write(fh, 5 * BS + 7, b"tail")
        fs.release(fh)
        self.files[(b"sparse",)] = bytes(5 * BS + 7) + b"tail"
        fh, node = fs.create(ROOT_INO, b"gone", 0o644, os.O_RDWR)
        fs.write(fh, 0, b"x" * 5000)
        fs.flush(fh)
        fs.unlink(ROOT_INO, b"gone")
        self.orphan = node.ino
        fs.close()  # the handle stays open: the O mark is what a crash would leave

    def mount(self, **kw) -> Filesystem:
        return Filesystem.open_volume(self.root, "v", self.store, **kw)

    def write(self, fs, parent, path, data):
        fh, _ = fs.create(parent, path[-1], 0o644, os.O_WRONLY)
        if data:
            fs.write(fh, 0, data)
        fs.release(fh)
        self.files[path] = data

    def meta(self) -> MetaStore:
        return MetaStore(volume_dir(self.root, "v") / "meta")

    def check(self, repair=False, store=True, **kw) -> fsck.FsckReport:
        m = self.meta()
        try:
            return fsck.check(m, self.store if store else None, block_size=BS, repair=repair,
                              **kw)
        finally:
            m.close()

    def edit(self, fn) -> None:
        """Corrupt the metadata directly: ``fn(meta, batch)`` stages writes in one batch."""
        m = self.meta()
        try:
            b = m.batch()
            fn(m, b)
            m.commit(b, sync=True)
        finally:
            m.close()

    def verify(self, missing=()) -> Filesystem:
        """Mount, and check every surviving file byte for byte; returns the (open) fs."""
        fs = self.mount()
        try:
            for path, data in self.files.items():
                if path in missing:
                    continue
                ino = resolve(fs, path)
                fh = fs.open(ino, os.O_RDONLY)
                try:
                    assert fs.getattr(ino).size == len(data), path
                    assert fs.read(fh, 0, len(data) + 10) == data, path
                finally:
                    fs.release(fh)
            if (b"dir", b"link_a") not in missing:
                assert fs.readlink(resolve(fs, (b"dir", b"s"))) == b"../a"
        except BaseException:
            fs.close()
            raise
        return fs


def resolve(fs, path):
    ino = ROOT_INO
    for name in path:
        ino = fs.lookup(ino, name).ino
    return ino


def ino_of(vol, path):
    m = vol.meta()
    try:
        ino = ROOT_INO
        for name in path:
            ino = schema.parse_dentry_value(m.get(schema.dentry_key(ino, name)))[0]
        return ino
    finally:
        m.close()


def blocks_of(meta, ino):
    return [(k, v) for k, v in meta.scan(schema.block_prefix(ino))]


def kinds(report):
    return {p.kind for p in report.problems}


@pytest.fixture
def vol(tmp_path):
    return Vol(tmp_path)


def repair_round(vol, kind, *, missing=(), store=True):
    """The corruption is reported as ``kind``; repair fixes it; a second check is clean; the
    volume mounts with its files intact. Returns the repairing report."""
    found = vol.check(store=store)
    assert kind in kinds(found), found.problems
    assert not found.clean
    fixed = vol.check(repair=True, store=store)
    assert {p.kind for p in fixed.problems} == kinds(found)
    assert all(p.repaired for p in fixed.problems
               if p.kind == kind and p.ino not in fixed.open_orphans)
    assert fixed.repaired > 0
    again = vol.check(store=store)
    assert again.clean, again.problems
    vol.verify(missing).close()
    after = vol.check(store=store)
    assert after.clean and not after.problems, after.problems  # the mount freed the orphan
    return fixed


# ------------------------------------------------------------------------ a healthy volume


def test_fresh_volume_is_clean(vol):
    phases = []
    report = vol.check(progress=lambda phase, done, total: phases.append(phase))
    assert report.clean
    assert [p.kind for p in report.problems] == ["orphan-inode"]  # unlinked while open
    assert report.open_orphans == (vol.orphan,)
    assert not report.problems[0].repaired
    # root, dir, sub, deep, a, b, dup, empty, s, sparse, gone
    assert (report.inodes, report.directories, report.files, report.symlinks) == (11, 4, 6, 1)
    assert report.bytes == sum(len(d) for p, d in vol.files.items() if p != (b"dir", b"link_a")) \
        + 5000
    assert report.blocks == 4 + 1 + 1 + 1 + 1  # a, b, dup, sparse tail, gone
    assert report.chunks == 7  # b and dup share one chunk
    assert {"superblock", "inodes", "blocks", "refcounts", "entries", "namespace"} <= set(phases)
    # a repair run changes nothing: the orphan is the next mount's to free
    assert vol.check(repair=True).repaired == 0
    fs = vol.verify()
    fs.close()
    assert not vol.check().problems


def test_crash_with_blocks_past_the_persisted_size_is_clean(tmp_path):
    """Blocks stored before the size is persisted carry a W mark: not beyond-EOF damage."""
    create_volume(tmp_path, "v", block_size=BS, trash_s=0)
    store = MemoryChunkStore()
    fs = Filesystem.open_volume(tmp_path, "v", store)
    fh, node = fs.create(ROOT_INO, b"f", 0o644, os.O_WRONLY)
    fs.write(fh, 0, os.urandom(2 * BS + 10))  # two full blocks are stored, the size is not
    meta = fs.meta
    fs._pool.shutdown()
    meta.close()  # a crash: nothing else is flushed
    m = MetaStore(volume_dir(tmp_path, "v") / "meta")
    try:
        assert m.get(schema.unflushed_key(node.ino)) is not None
        assert len(blocks_of(m, node.ino)) == 2
        report = fsck.check(m, store, block_size=BS)
    finally:
        m.close()
    assert report.clean and not report.problems, report.problems


# ------------------------------------------------------------------------ entries


def test_missing_readdir_twin(vol):
    sub = ino_of(vol, (b"dir", b"sub"))

    def drop_e(m, b):
        ino, cookie = schema.parse_dentry_value(m.get(schema.dentry_key(sub, b"b")))
        b.delete(schema.readdir_key(sub, cookie))

    vol.edit(drop_e)
    fixed = repair_round(vol, "entry-without-cookie")
    assert fixed.count("entry-without-cookie") == 1
    fs = vol.mount()
    try:
        assert {n for n, _, _ in fs.readdir(sub)} == {b".", b"..", b"b", b"deep"}
    finally:
        fs.close()
    m = vol.meta()
    try:
        cookie = schema.parse_dentry_value(m.get(schema.dentry_key(sub, b"b")))[1]
        assert cookie < schema.parse_le_u64(m.get(schema.SUPER_NEXT_COOKIE))
    finally:
        m.close()


def test_missing_name_entry(vol):
    d = ino_of(vol, (b"dir",))
    vol.edit(lambda m, b: b.delete(schema.dentry_key(d, b"link_a")))
    repair_round(vol, "cookie-without-entry")


def test_entry_without_both_twins_leaves_an_orphan_in_lost_found(vol):
    d = ino_of(vol, (b"dir",))
    dup = ino_of(vol, (b"dir", b"dup"))

    def drop(m, b):
        cookie = schema.parse_dentry_value(m.get(schema.dentry_key(d, b"dup")))[1]
        b.delete(schema.dentry_key(d, b"dup"))
        b.delete(schema.readdir_key(d, cookie))

    vol.edit(drop)
    data = vol.files.pop((b"dir", b"dup"))
    fixed = repair_round(vol, "orphan-inode")
    assert [p.ino for p in fixed.problems if p.kind == "orphan-inode"
            and p.repaired] == [dup]
    fs = vol.mount()
    try:
        lf = fs.lookup(ROOT_INO, b"lost+found")
        assert stat.S_IMODE(lf.mode) == 0o700 and lf.nlink == 2
        assert fs.lookup(ROOT_INO, b"..").ino == ROOT_INO
        node = fs.lookup(lf.ino, b"#%d" % dup)
        assert node.nlink == 1
        fh = fs.open(node.ino, os.O_RDONLY)
        assert fs.read(fh, 0, 1000) == data
        fs.release(fh)
    finally:
        fs.close()


def test_orphan_directory_goes_to_lost_found_with_its_subtree(vol):
    sub = ino_of(vol, (b"dir", b"sub"))
    d = ino_of(vol, (b"dir",))

    def drop(m, b):
        cookie = schema.parse_dentry_value(m.get(schema.dentry_key(d, b"sub")))[1]
        b.delete(schema.dentry_key(d, b"sub"))
        b.delete(schema.readdir_key(d, cookie))

    vol.edit(drop)
    fixed = repair_round(vol, "orphan-inode", missing={(b"dir", b"sub", b"b")})
    assert "wrong-nlink" in kinds(fixed)  # dir still counted sub
    fs = vol.mount()
    try:
        lf = fs.lookup(ROOT_INO, b"lost+found")
        assert lf.nlink == 3
        moved = fs.lookup(lf.ino, b"#%d" % sub)
        assert fs.lookup(moved.ino, b"..").ino == lf.ino
        assert fs.getattr(d).nlink == 2
        fh = fs.open(fs.lookup(moved.ino, b"b").ino, os.O_RDONLY)
        assert fs.read(fh, 0, 200) == vol.files[(b"dir", b"sub", b"b")]
        fs.release(fh)
    finally:
        fs.close()


def test_dangling_entry(vol):
    empty = ino_of(vol, (b"empty",))
    vol.edit(lambda m, b: b.delete(schema.inode_key(empty)))
    fixed = repair_round(vol, "dangling-entry", missing={(b"empty",)})
    assert kinds(fixed) == {"dangling-entry", "orphan-inode"}
    fs = vol.mount()
    try:
        with pytest.raises(FsError):
            fs.lookup(ROOT_INO, b"empty")
    finally:
        fs.close()


def test_lost_inode_record_is_rebuilt_from_its_blocks(vol):
    a = ino_of(vol, (b"a",))
    vol.edit(lambda m, b: b.delete(schema.inode_key(a)))
    fixed = repair_round(vol, "missing-inode")
    assert [p.ino for p in fixed.problems if p.kind == "missing-inode"] == [a]
    fs = vol.mount()
    try:
        node = fs.getattr(a)
        assert node.is_reg and node.nlink == 2 and node.size == len(vol.files[(b"a",)])
        assert fs.getxattr(a, b"user.tag") == b"ct"
    finally:
        fs.close()


def test_unreadable_records(vol):
    b_ino = ino_of(vol, (b"dir", b"sub", b"b"))
    d = ino_of(vol, (b"dir",))

    def garble(m, b):
        b.put(schema.inode_key(b_ino), b"\x07garbage")
        b.put(schema.dentry_key(d, b"link_a"), b"short")

    vol.edit(garble)
    fixed = repair_round(vol, "bad-record")
    assert {"bad-record", "missing-inode", "cookie-without-entry"} <= kinds(fixed)


def test_root_named_by_an_entry_and_directory_hard_link(vol):
    d = ino_of(vol, (b"dir",))
    sub = ino_of(vol, (b"dir", b"sub"))

    def links(m, b):
        for parent, name, child, cookie in ((d, b"up", ROOT_INO, 9001),
                                            (ROOT_INO, b"sub2", sub, 9002)):
            b.put(schema.dentry_key(parent, name), schema.dentry_value(child, cookie))
            b.put(schema.readdir_key(parent, cookie), schema.readdir_value(child, name))

    vol.edit(links)
    fixed = repair_round(vol, "directory-hard-link")
    assert fixed.count("directory-hard-link") == 2


def test_directory_cycle_is_cut_into_lost_found(vol):
    d = ino_of(vol, (b"dir",))
    sub = ino_of(vol, (b"dir", b"sub"))

    def cycle(m, b):  # move dir into its own child sub, by hand
        cookie = schema.parse_dentry_value(m.get(schema.dentry_key(ROOT_INO, b"dir")))[1]
        b.delete(schema.dentry_key(ROOT_INO, b"dir"))
        b.delete(schema.readdir_key(ROOT_INO, cookie))
        b.put(schema.dentry_key(sub, b"dir"), schema.dentry_value(d, cookie))
        b.put(schema.readdir_key(sub, cookie), schema.readdir_value(d, b"dir"))
        b.put(schema.parent_key(d), schema.le_u64(sub))
        for ino, delta in ((ROOT_INO, -1), (sub, 1)):
            node = Inode.unpack(ino, m.get(schema.inode_key(ino)))
            node.nlink += delta
            b.put(schema.inode_key(ino), node.pack())

    vol.edit(cycle)
    found = vol.check()
    assert [p.ino for p in found.problems if p.kind == "orphan-inode"
            and p.ino != vol.orphan] == [d]
    repair_round(vol, "orphan-inode", missing=set(vol.files))
    fs = vol.mount()
    try:
        lf = fs.lookup(ROOT_INO, b"lost+found").ino
        moved = fs.lookup(lf, b"#%d" % d).ino
        assert moved == d and fs.lookup(d, b"sub").ino == sub
        assert fs.getattr(sub).nlink == 3  # deep only: dir left it
    finally:
        fs.close()


def test_wrong_parent_key(vol):
    sub = ino_of(vol, (b"dir", b"sub"))
    vol.edit(lambda m, b: b.put(schema.parent_key(sub), schema.le_u64(ROOT_INO)))
    repair_round(vol, "wrong-parent")
    d = ino_of(vol, (b"dir",))
    m = vol.meta()
    try:
        assert schema.parse_le_u64(m.get(schema.parent_key(sub))) == d
    finally:
        m.close()


# ------------------------------------------------------------------------ link counts


@pytest.mark.parametrize("path,nlink", [((b"a",), 7), ((b"dir",), 2), ((), 9)])
def test_wrong_nlink(vol, path, nlink):
    ino = ino_of(vol, path)
    m = vol.meta()
    node = Inode.unpack(ino, m.get(schema.inode_key(ino)))
    m.close()
    want = node.nlink
    node.nlink = nlink
    vol.edit(lambda m, b: b.put(schema.inode_key(ino), node.pack()))
    repair_round(vol, "wrong-nlink")
    fs = vol.mount()
    try:
        assert fs.getattr(ino).nlink == want
    finally:
        fs.close()


# ------------------------------------------------------------------------ stale keys, blocks


def test_stale_keys_of_a_missing_inode(vol):
    a = ino_of(vol, (b"a",))
    m = vol.meta()
    block_key, block_value = blocks_of(m, a)[0]
    ck = ChunkRef.from_bytes(schema.parse_block_value(block_value)[1]).key
    count = schema.parse_refcount_value(m.get(schema.refcount_key(ck)))[0]
    m.close()
    ghost = 999_999

    def stale(m, b):
        b.put(schema.block_key(ghost, 0), block_value)  # as if a free forgot it
        b.put(schema.refcount_key(ck), schema.refcount_value(count + 1, block_value[4:]))
        b.put(schema.xattr_key(ghost, b"user.x"), b"1")
        b.put(schema.symlink_key(ghost), b"t")
        b.put(schema.orphan_key(ghost), b"")
        b.put(schema.unflushed_key(ghost), b"")

    vol.edit(stale)
    fixed = repair_round(vol, "stale-key")
    assert fixed.count("stale-key") == 5
    m = vol.meta()
    try:
        assert not m.has_prefix(schema.block_prefix(ghost))
        assert schema.parse_refcount_value(m.get(schema.refcount_key(ck)))[0] == count
    finally:
        m.close()


def test_orphan_mark_on_a_named_inode(vol):
    a = ino_of(vol, (b"a",))
    vol.edit(lambda m, b: b.put(schema.orphan_key(a), b""))
    repair_round(vol, "stale-key")


def test_block_beyond_eof_is_unmapped_and_collected(vol):
    b_ino = ino_of(vol, (b"dir", b"sub", b"b"))
    payload_ref = vol.store.put(b"junk", load_volume(vol.root, "v").protection())

    def beyond(m, b):
        b.put(schema.block_key(b_ino, 3), schema.block_value(4, payload_ref.to_bytes()))
        b.put(schema.refcount_key(payload_ref.key),
              schema.refcount_value(1, payload_ref.to_bytes()))

    vol.edit(beyond)
    repair_round(vol, "block-beyond-eof")
    fs = vol.mount()
    try:
        assert fs.collect_garbage() == 1
    finally:
        fs.close()
    assert not vol.store.contains(payload_ref)


def test_a_wrong_block_bytes_counter_is_recounted(vol):
    """The counter statfs reports as used (sofs.blockmap) against the block map."""
    m = vol.meta()
    try:
        right = schema.parse_le_u64(m.get(schema.SUPER_BLOCK_BYTES))
    finally:
        m.close()
    assert right > 0
    vol.edit(lambda m, b: b.put(schema.SUPER_BLOCK_BYTES, schema.le_u64(right + 12345)))
    fixed = repair_round(vol, "superblock")
    assert any("block bytes counter" in p.detail for p in fixed.problems)
    m = vol.meta()
    try:  # (the mount in repair_round freed the open orphan's blocks since)
        counted = sum(schema.parse_block_value(v)[0] for _, v in m.scan(b"B"))
        assert schema.parse_le_u64(m.get(schema.SUPER_BLOCK_BYTES)) == counted
    finally:
        m.close()


# ------------------------------------------------------------------------ refcounts, chunks


def _first_chunk(vol, path):
    ino = ino_of(vol, path)
    m = vol.meta()
    try:
        value = blocks_of(m, ino)[0][1]
        ref = ChunkRef.from_bytes(schema.parse_block_value(value)[1])
        return ref, schema.parse_refcount_value(m.get(schema.refcount_key(ref.key)))[0]
    finally:
        m.close()


def test_refcount_bumped(vol):
    ref, count = _first_chunk(vol, (b"dir", b"dup"))
    assert count == 2
    vol.edit(lambda m, b: b.put(schema.refcount_key(ref.key),
                                schema.refcount_value(5, ref.to_bytes())))
    repair_round(vol, "refcount-mismatch")
    assert _first_chunk(vol, (b"dir", b"dup"))[1] == 2


def test_refcount_missing(vol):
    ref, _ = _first_chunk(vol, (b"a",))
    vol.edit(lambda m, b: b.delete(schema.refcount_key(ref.key)))
    repair_round(vol, "refcount-missing")
    assert _first_chunk(vol, (b"a",))[1] == 1


def test_zero_refcount_not_queued(vol):
    fs = vol.mount()
    a = resolve(fs, (b"a",))
    old, _ = _first_chunk_fs(fs, a)
    fh = fs.open(a, os.O_RDWR)
    fs.write(fh, 0, b"overwritten")  # block 0 gets a new chunk: the old one falls to 0
    fs.release(fh)
    fs.close()
    data = bytearray(vol.files[(b"a",)])
    data[:11] = b"overwritten"
    vol.files[(b"a",)] = vol.files[(b"dir", b"link_a")] = bytes(data)

    def unqueue(m, b):
        assert schema.parse_refcount_value(m.get(schema.refcount_key(old.key)))[0] == 0
        for key, _ in m.scan(b"G"):
            b.delete(key)

    vol.edit(unqueue)
    repair_round(vol, "zero-refcount-not-queued")
    fs = vol.mount()
    try:
        assert fs.collect_garbage() >= 1
    finally:
        fs.close()
    assert not vol.store.contains(old)


def _first_chunk_fs(fs, ino):
    value = next(iter(fs.meta.scan(schema.block_prefix(ino))))[1]
    return ChunkRef.from_bytes(schema.parse_block_value(value)[1]), value


def test_missing_chunk_is_reported_never_dropped(vol):
    ref, _ = _first_chunk(vol, (b"sparse",))
    vol.store.lose(ref)
    sparse = ino_of(vol, (b"sparse",))
    found = vol.check()
    assert [p.kind for p in found.problems if p.kind != "orphan-inode"] == ["missing-chunk"]
    assert ref.hex in found.problems[-1].detail or any(ref.hex in p.detail
                                                       for p in found.problems)
    fixed = vol.check(repair=True)
    assert not any(p.repaired for p in fixed.problems)
    again = vol.check()
    assert not again.clean and again.count("missing-chunk") == 1
    assert vol.check(store=False).clean  # metadata alone is consistent
    m = vol.meta()
    try:
        assert len(blocks_of(m, sparse)) == 1  # the map is kept
    finally:
        m.close()


def test_superblock_counters_raised(vol):
    vol.edit(lambda m, b: b.put(schema.SUPER_NEXT_COOKIE, schema.le_u64(3)))
    vol.edit(lambda m, b: b.put(schema.SUPER_NEXT_INO, schema.le_u64(2)))
    fixed = repair_round(vol, "superblock")
    assert fixed.count("superblock") == 2


def test_unknown_format_stops_the_check(vol):
    vol.edit(lambda m, b: b.put(schema.SUPER_FORMAT, schema.le_u64(99)))
    report = vol.check(repair=True)
    assert [p.kind for p in report.problems] == ["superblock"] and report.repaired == 0


# ------------------------------------------------------------------------ LocalRing


def test_local_ring_missing_chunk_and_unreferenced_chunks(tmp_path):
    from chunkstore.ring.local import LocalRing
    from chunkstore.ring.localcluster import init_local_cluster

    init_local_cluster(tmp_path / "cluster", disks=6, vnodes=6)
    create_volume(tmp_path, "v", block_size=BS, trash_s=0)
    with LocalRing.open(tmp_path / "cluster") as ring:
        fs = Filesystem.open_volume(tmp_path, "v", ring)
        fh, node = fs.create(ROOT_INO, b"big", 0o644, os.O_WRONLY)
        fs.write(fh, 0, os.urandom(BS))       # erasure coded (4+2)
        fs.release(fh)
        fh, small = fs.create(ROOT_INO, b"small", 0o644, os.O_WRONLY)
        fs.write(fh, 0, os.urandom(100))      # replicated
        fs.release(fh)
        leaked = ring.put(b"stored, never referenced", fs.protection)
        fs.close()
        m = MetaStore(volume_dir(tmp_path, "v") / "meta")
        try:
            assert fsck.check(m, ring, block_size=BS).clean
            assert fsck.unreferenced_chunks(ring, [m]) == [leaked]
            big_ref = ChunkRef.from_bytes(schema.parse_block_value(
                blocks_of(m, node.ino)[0][1])[1])
            small_ref = ChunkRef.from_bytes(schema.parse_block_value(
                blocks_of(m, small.ino)[0][1])[1])
            # EC 4+2 survives two lost fragments, not three
            pieces = [(d, p.frag_idx) for d in ring.available_disks()
                      for p in ring.disk(d).pieces() if p.key == big_ref.key]
            for d, idx in pieces[:2]:
                ring.disk(d).delete(big_ref.key, idx)
            assert fsck.check(m, ring, block_size=BS).clean
            ring.disk(pieces[2][0]).delete(big_ref.key, pieces[2][1])
            for d in ring.available_disks():
                ring.disk(d).delete(small_ref.key, 0xFF)
            report = fsck.check(m, ring, block_size=BS, repair=True)
            missing = [p.detail for p in report.problems if p.kind == "missing-chunk"]
            assert len(missing) == 2 and report.repaired == 0
            assert any(big_ref.hex in d and "3 of the 4" in d for d in missing)
        finally:
            m.close()


# ------------------------------------------------------------------------ random histories

_NAMES = [b"a", b"b", b"c"]
_OPS = st.lists(st.tuples(st.sampled_from(["create", "write", "truncate", "rename", "link",
                                           "unlink", "mkdir", "rmdir", "open_unlink"]),
                          st.integers(0, 30), st.integers(0, 30), st.integers(0, 3 * BS),
                          st.integers(0, BS + 300)),
                max_size=25)


def _apply(fs, op, dirs, files, handles):
    kind, i, j, off, n = op
    d, name = dirs[i % len(dirs)], _NAMES[j % len(_NAMES)]
    if kind in ("create", "mkdir"):
        if kind == "mkdir":
            dirs.append(fs.mkdir(d, name, 0o755).ino)
        else:
            fh, node = fs.create(d, name, 0o644, os.O_WRONLY)
            fs.release(fh)
            files.append(node.ino)
    elif kind == "write" and files:
        fh = fs.open(files[i % len(files)], os.O_WRONLY)
        try:
            fs.write(fh, off, bytes([j + 1]) * n)
        finally:
            fs.release(fh)
    elif kind == "truncate" and files:
        fs.truncate(files[i % len(files)], off)
    elif kind == "rename":
        fs.rename(d, name, dirs[j % len(dirs)], _NAMES[(i + off) % len(_NAMES)])
    elif kind == "link" and files:
        fs.link(files[j % len(files)], d, name)
    elif kind == "unlink":
        fs.unlink(d, name)
    elif kind == "rmdir":
        fs.rmdir(d, name)
    elif kind == "open_unlink":
        ino = fs.lookup(d, name).ino
        handles.append(fs.open(ino, os.O_RDWR))
        fs.write(handles[-1], off, b"z" * (n % 5000))
        fs.unlink(d, name)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_OPS)
def test_random_histories_check_clean(ops):
    with tempfile.TemporaryDirectory() as tmp:
        create_volume(Path(tmp), "v", block_size=BS, trash_s=0)
        fs = Filesystem.open_volume(Path(tmp), "v", MemoryChunkStore())
        dirs, files, handles = [ROOT_INO], [], []
        try:
            for op in ops:
                try:
                    _apply(fs, op, dirs, files, handles)
                except FsError:
                    pass  # refused operations (exists, not empty, ...) change nothing
        finally:
            fs.close()  # open handles stay open: their O marks are what a crash leaves
        m = MetaStore(volume_dir(Path(tmp), "v") / "meta")
        try:
            report = fsck.check(m, fs.store, block_size=BS)
        finally:
            m.close()
        assert report.clean, report.problems


def _scramble(m, b, rnd):
    """A few random corruptions: deleted keys, flipped bytes, garbage values, keys copied to
    a neighbouring inode number, wrong link counts."""
    keys = [k for k, _ in m.scan(b"")]
    for _ in range(rnd.randint(1, 12)):
        key = rnd.choice(keys)
        value = m.get(key)
        roll = rnd.random()
        if roll < 0.35 or value is None:
            b.delete(key)
        elif roll < 0.55 and value:
            flipped = bytearray(value)
            flipped[rnd.randrange(len(flipped))] ^= 1 << rnd.randrange(8)
            b.put(key, bytes(flipped))
        elif roll < 0.65:
            b.put(key, rnd.randbytes(rnd.randint(0, 40)))
        elif roll < 0.85:
            ino = int.from_bytes(key[1:9], "big") + rnd.choice([1, 2, 1000])
            b.put(key[:1] + ino.to_bytes(8, "big") + key[9:], value)
        elif key[:1] == b"I" and len(value) == 61:
            node = Inode.unpack(0, value)
            node.nlink = rnd.randint(0, 4)
            b.put(key, node.pack())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_random_corruption_is_repaired_and_mounts(rnd):
    with tempfile.TemporaryDirectory() as tmp:
        vol = Vol(Path(tmp))
        vol.edit(lambda m, b: _scramble(m, b, rnd))
        first = vol.check(repair=True)
        if any("unknown metadata format" in p.detail for p in first.problems):
            return  # a garbled format field stops the checker, by design
        again = vol.check()  # a flipped chunk key names a chunk that is not there: kept, reported
        assert {p.kind for p in again.problems if p.ino not in again.open_orphans} <= \
            {"missing-chunk"}, again.problems
        fs = vol.mount()
        try:
            todo = [ROOT_INO]
            while todo:  # every name resolves, every directory lists
                for name, node, _ in fs.readdir(todo.pop()):
                    if node.is_dir and name not in (b".", b".."):
                        todo.append(node.ino)
        finally:
            fs.close()
        after = vol.check()
        assert {p.kind for p in after.problems} <= {"missing-chunk"}, after.problems


def test_a_repair_dates_what_it_queues_by_the_given_clock(vol):
    """The zero-refcount chunk a repair queues is due at the clock's now (so a mount on the
    same clock collects it at once), and the package keeps the leak finder and the records."""
    from chunkstore.clock import FakeClock

    assert fsck.unreferenced_chunks and fsck.Problem and fsck.check_volume
    fs = vol.mount()
    a = resolve(fs, (b"a",))
    fh = fs.open(a, os.O_RDWR)
    fs.write(fh, 0, b"overwritten")
    fs.release(fh)
    fs.close()
    vol.edit(lambda m, b: [b.delete(k) for k, _ in list(m.scan(b"G"))])
    clock = FakeClock()
    report = vol.check(repair=True, clock=clock)
    queued = report.count(fsck.ZERO_REFCOUNT_NOT_QUEUED)
    assert queued >= 1
    m = vol.meta()
    try:
        dues = {schema.parse_gc_key(k)[0] for k, _ in m.scan(b"G")}
    finally:
        m.close()
    assert dues == {int(clock.time() * 1e9)}
    fs = vol.mount(clock=clock, gc_grace_s=0)
    try:
        assert fs.collect_garbage() == queued
    finally:
        fs.close()
