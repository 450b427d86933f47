"""The container format: headers round trip, corruption is detected, scans stop at a torn tail."""

import os

import pytest

from chunkstore.disk import container as ctr
from chunkstore.errors import ChecksumMismatch, FormatError
from chunkstore.placement.keys import chunk_key
from chunkstore.protection.policy import REPLICA_INDEX, ReplicationPolicy

CODE = ReplicationPolicy(3).code


def _record(payload: bytes, frag=REPLICA_INDEX):
    key = chunk_key(payload)
    hdr, checksum = ctr.encode_record(key, frag, CODE, len(payload), payload)
    return key, hdr, checksum


def test_file_header_round_trip():
    h = ctr.encode_file_header(7)
    assert len(h) == ctr.FILE_HEADER_SIZE == 32
    assert h[:2] == b"\x00\x01"  # version at offset 0
    assert ctr.parse_file_header(h) == 7
    for off in range(32):
        bad = bytearray(h)
        bad[off] ^= 0x40
        with pytest.raises(FormatError):
            ctr.parse_file_header(bytes(bad))


def test_record_round_trip():
    key, hdr, checksum = _record(b"hello world")
    assert len(hdr) == ctr.RECORD_HEADER_SIZE == 64
    h = ctr.parse_record_header(hdr)
    assert (h.rtype, h.key, h.frag_idx, h.policy_code, h.chunk_size, h.data_len) == (
        ctr.TYPE_PUT, key, REPLICA_INDEX, CODE, 11, 11)
    assert h.checksum == checksum == ctr.data_checksum(b"hello world")
    ctr.verify_data(h, b"hello world")
    with pytest.raises(ChecksumMismatch):
        ctr.verify_data(h, b"hello worle")
    with pytest.raises(FormatError):
        ctr.verify_data(h, b"hello")
    t = ctr.parse_record_header(ctr.encode_tombstone(key, 3, CODE))
    assert t.rtype == ctr.TYPE_TOMBSTONE and t.data_len == 0


@pytest.mark.parametrize("field", [ctr.OFF_MAGIC, ctr.OFF_VERSION, ctr.OFF_TYPE, ctr.OFF_FRAG, ctr.OFF_KEY,
                                   ctr.OFF_POLICY, ctr.OFF_CHUNK_SIZE, ctr.OFF_DATA_LEN, ctr.OFF_CHECKSUM,
                                   ctr.OFF_HEADER_CRC, 56, 7])
def test_header_corruption_detected(field):
    _, hdr, _ = _record(b"abc")
    bad = bytearray(hdr)
    bad[field] ^= 0x01
    with pytest.raises(FormatError):
        ctr.parse_record_header(bytes(bad))


def _write_container(path, payloads):
    offsets = []
    with open(path, "wb") as f:
        f.write(ctr.encode_file_header(1))
        for p in payloads:
            offsets.append(f.tell())
            _, hdr, _ = _record(p)
            f.write(hdr + p)
    return offsets


def _scan(path, start=ctr.FILE_HEADER_SIZE):
    fd = os.open(path, os.O_RDONLY)
    try:
        sc = ctr.scan(fd, start)
        recs = list(sc)
        return recs, sc
    finally:
        os.close(fd)


def test_scan_and_torn_tail(tmp_path):
    path = tmp_path / "00000001.ctr"
    payloads = [os.urandom(n) for n in (0, 1, 100, 5000)]
    offsets = _write_container(path, payloads)
    recs, sc = _scan(path)
    assert [r.offset for r in recs] == offsets
    assert sc.valid_end == sc.file_end == os.path.getsize(path)
    # torn tail: cut the last record in the middle of its data
    os.truncate(path, ctr.data_offset(offsets[-1]) + 10)
    recs, sc = _scan(path)
    assert [r.offset for r in recs] == offsets[:-1]
    assert sc.valid_end == offsets[-1] < sc.file_end
    # torn header
    os.truncate(path, offsets[-1] + 20)
    recs, sc = _scan(path)
    assert sc.valid_end == offsets[-1]
    # scan from an offset
    recs, _ = _scan(path, offsets[2])
    assert [r.offset for r in recs] == [offsets[2]]


def test_scan_skips_damaged_record(tmp_path):
    path = tmp_path / "00000001.ctr"
    payloads = [b"a" * 100, b"b" * 100, b"c" * 100]
    offsets = _write_container(path, payloads)
    ctr.flip_byte(path, ctr.data_offset(offsets[1]) + 5)
    recs, sc = _scan(path)
    assert [r.offset for r in recs] == [offsets[0], offsets[2]]
    assert sc.skipped == offsets[2] - offsets[1]
    ctr.flip_byte(path, ctr.checksum_offset(offsets[0]))
    recs, _ = _scan(path)
    assert [r.offset for r in recs] == [offsets[2]]


def test_container_names():
    assert ctr.container_name(12) == "00000012.ctr"
    assert ctr.parse_container_name("00000012.ctr") == 12
    assert ctr.parse_container_name("x.ctr") is None
