import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkstore.errors import FormatError
from chunkstore.placement.keys import REF_SIZE, ChunkRef, chunk_key
from chunkstore.protection.policy import KIND_EC, KIND_REPLICATION, PolicyCode


def test_chunk_key():
    assert chunk_key(b"abc") == blake3.blake3(b"abc").digest(20)
    assert len(chunk_key(b"")) == 20


def test_ref_round_trip_and_size():
    ref = ChunkRef(chunk_key(b"a"), 1, PolicyCode(KIND_REPLICATION, 3, 0, 0))
    data = ref.to_bytes()
    assert len(data) == REF_SIZE <= 30
    assert data[0] == 1
    assert ChunkRef.from_bytes(data) == ref
    assert ref.hex == ref.key.hex()
    assert ref.verify(b"a") and not ref.verify(b"b")


@pytest.mark.parametrize("bad", [b"", b"\x01" * 28, b"\x01" * 30, b"\x02" + b"\x00" * 28])
def test_ref_rejects(bad):
    with pytest.raises(FormatError):
        ChunkRef.from_bytes(bad)


codes = st.one_of(
    st.builds(PolicyCode, st.just(KIND_REPLICATION), st.integers(1, 6), st.just(0), st.just(0)),
    st.integers(2, 15).flatmap(
        lambda k: st.builds(PolicyCode, st.just(KIND_EC), st.just(k), st.integers(1, 16 - k), st.integers(1, 3))
    ),
)


@given(codes, st.binary(min_size=20, max_size=20), st.integers(0, 2**32 - 1))
def test_ref_round_trip_property(code, key, size):
    assert PolicyCode.from_bytes(code.to_bytes()) == code
    ref = ChunkRef(key, size, code)
    assert ChunkRef.from_bytes(ref.to_bytes()) == ref


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=40), st.binary(min_size=REF_SIZE, max_size=REF_SIZE).map(lambda b: b"\x01" + b[1:])))
def test_ref_from_random_bytes(data):
    try:
        ref = ChunkRef.from_bytes(data)
    except FormatError:
        return
    assert isinstance(ref, ChunkRef)
    assert ref.to_bytes() == data


@settings(max_examples=300)
@given(st.binary(min_size=0, max_size=6))
def test_policy_code_from_random_bytes(data):
    try:
        code = PolicyCode.from_bytes(data)
    except FormatError:
        return
    assert code.to_bytes() == data
