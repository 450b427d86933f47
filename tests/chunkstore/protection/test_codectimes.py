"""The erasure-coding totals behind the sofs_ec_* metrics (chunkstore/protection/codectimes.py)."""

import os

import pytest

from chunkstore.errors import PolicyError
from chunkstore.protection.codectimes import EC_TIMES, CodecTimes
from chunkstore.protection.policy import ECPolicy


def test_every_encode_and_decode_is_counted_with_its_bytes():
    pol = ECPolicy(4, 2)
    before = EC_TIMES.totals()
    payload = os.urandom(1 << 20)
    frags = pol.encode(payload)
    some = {i: frags[i] for i in (0, 2, 4, 5)}  # degraded: parity needed
    assert pol.decode(some) == payload
    after = EC_TIMES.totals()
    enc, dec = after["encode"], after["decode"]
    assert enc.calls == before["encode"].calls + 1
    assert enc.payload_bytes == before["encode"].payload_bytes + len(payload)
    assert dec.calls == before["decode"].calls + 1
    assert dec.payload_bytes == before["decode"].payload_bytes + sum(map(len, some.values()))
    assert enc.seconds > before["encode"].seconds and dec.seconds > before["decode"].seconds


def test_a_failed_call_is_counted_too():
    times = CodecTimes()
    with pytest.raises(PolicyError):
        with times.timed("decode", 10):
            raise PolicyError("damaged fragments")
    assert times.totals()["decode"].calls == 1 and times.totals()["encode"].calls == 0
