"""sofs.usage: a volume's figures from its metadata (files, logical, data, stored after dedup
and compression, raw with protection, reclaimable)."""

from __future__ import annotations

import os

from sofs.chunkusers import file_blocks
from sofs.inode import ROOT_INO
from sofs.usage import volume_usage

from .conftest import BS


def _file(fs, name: bytes, data: bytes) -> int:
    fh, node = fs.create(ROOT_INO, name, 0o644, os.O_WRONLY)
    fs.write(fh, 0, data)
    fs.release(fh)
    return node.ino


def test_usage_counts_dedup_compression_protection_and_reclaimable(env):
    mount, _ = env
    fs = mount()
    random_block = os.urandom(BS)
    a = _file(fs, b"a", random_block)              # one incompressible block
    _file(fs, b"b", random_block)                  # the same block: deduplicated
    _file(fs, b"zeros", bytes(3 * BS))             # all-zero blocks: holes, nothing stored
    text = _file(fs, b"text", b"report " * (BS // 7))  # compressible
    fs.mkdir(ROOT_INO, b"dir", 0o755)
    fs.symlink(ROOT_INO, b"link", b"a")
    fs.flush_all()
    u = volume_usage(fs.meta)
    assert (u.files, u.directories, u.other) == (4, 2, 1)  # root and dir; the symlink
    text_len = len(b"report " * (BS // 7))
    assert u.logical_bytes == 2 * BS + 3 * BS + text_len
    assert u.data_bytes == 2 * BS + text_len           # the holes hold no data
    assert u.chunks == 2
    assert u.dedup_ratio is not None and 1.9 < u.dedup_ratio < 2.0  # the random block twice
    assert u.compression_ratio is not None and u.compression_ratio > 1.0
    # each distinct chunk with its own policy's overhead (ec4+2: 1.5, cos2: 3 copies)
    refs = {b.ref.key: b.ref for ino in (a, text) for b in file_blocks(fs.meta, ino)}
    assert u.stored_bytes == sum(r.size for r in refs.values())
    assert u.raw_bytes == int(sum(r.size * r.policy.policy().overhead for r in refs.values()))
    assert {r.policy.policy().spec() for r in refs.values()} == {"cos2", "ec4+2"}
    assert u.reclaimable_bytes == 0
    fs.unlink(ROOT_INO, b"text")
    fs.flush_all()
    after = volume_usage(fs.meta)
    assert after.chunks == 1 and after.reclaimable_chunks == 1 and after.reclaimable_bytes > 0
    assert after.files == 3
