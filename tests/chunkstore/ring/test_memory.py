import pytest

from chunkstore.api import Capacity, ChunkStore
from chunkstore.errors import ChunkCorrupt, ChunkNotFound, DiskFull
from chunkstore.placement.keys import ChunkRef, chunk_key
from chunkstore.protection.policy import Protection
from chunkstore.ring.memory import MemoryChunkStore


@pytest.fixture
def prot():
    return Protection.parse("cos2", "ec4+2")


def test_put_get_delete(prot):
    with MemoryChunkStore() as s:
        assert isinstance(s, ChunkStore)
        small = s.put(b"hello", prot)
        large = s.put(b"x" * 70_000, prot)
        assert small.key == chunk_key(b"hello") and small.size == 5
        assert small.policy == prot.small.code
        assert large.policy == prot.large.code
        assert s.get(small) == b"hello"
        assert s.get(large) == b"x" * 70_000
        assert s.put(b"hello", prot) == small
        assert len(s) == 2
        s.delete(small)
        s.delete(small)
        with pytest.raises(ChunkNotFound):
            s.get(small)
        cap = s.capacity()
        assert isinstance(cap, Capacity) and cap.used_bytes == 70_000


def test_faults(prot):
    s = MemoryChunkStore(total_bytes=10)
    ref = s.put(b"abc", prot)
    s.corrupt(ref)
    with pytest.raises(ChunkCorrupt):
        s.get(ref)
    with pytest.raises(DiskFull):
        s.put(b"y" * 20, prot)
    s.lose(ref)
    assert not s.contains(ref)


def test_empty_payload(prot):
    s = MemoryChunkStore()
    ref = s.put(b"", prot)
    assert s.get(ref) == b""
    assert ChunkRef.from_bytes(ref.to_bytes()) == ref
