"""Fixtures for driving the SOFS Filesystem API directly over an in-memory chunk store."""

from __future__ import annotations

import os

import pytest

from chunkstore.ring.memory import MemoryChunkStore
from sofs.fs import Filesystem
from sofs.volume import create_volume

BS = 64 * 1024  # small blocks: multi-block files stay small


class HookStore(MemoryChunkStore):
    """MemoryChunkStore with optional hooks run before get/put/delete (fault injection)."""

    def __init__(self) -> None:
        super().__init__()
        self.before_get = None
        self.before_put = None
        self.before_delete = None

    def get(self, ref):
        if self.before_get:
            self.before_get(ref)
        return super().get(ref)

    def put(self, payload, protection):
        if self.before_put:
            self.before_put(payload)
        return super().put(payload, protection)

    def delete(self, ref):
        if self.before_delete:
            self.before_delete(ref)
        return super().delete(ref)


@pytest.fixture
def env(tmp_path):
    """(mount(**kw) -> Filesystem of volume "v", the shared store); all closed at the end."""
    create_volume(tmp_path, "v", block_size=BS, trash_s=0)  # tests/sofs/test_trash.py: trash
    store = HookStore()
    fss = []

    def mount(**kw):
        fs = Filesystem.open_volume(tmp_path, "v", store, **kw)
        fss.append(fs)
        return fs

    yield mount, store
    store.before_get = store.before_put = store.before_delete = None
    for fs in fss:
        try:
            fs.close()
        except Exception:
            pass


def write_file(fs, parent, name, data, flags=os.O_WRONLY):
    """Create ``name`` in ``parent`` with ``data``, closed (flushed); returns its inode."""
    fh, node = fs.create(parent, name, 0o644, flags)
    if data:
        fs.write(fh, 0, data)
    fs.flush(fh)
    fs.release(fh)
    return node.ino


def read_file(fs, ino):
    """The whole content of ``ino`` through an open/read/release."""
    fh = fs.open(ino, os.O_RDONLY)
    try:
        return fs.read(fh, 0, fs.getattr(ino).size + 10)
    finally:
        fs.release(fh)
