"""Volume write leases on a real etcd member: one holder at a time, a token that grows with
every holder, a holder that stops counting itself one before etcd can give the volume away."""

from __future__ import annotations

import shutil
import time

import pytest

from chunkstore.authority.volumelease import VolumeLease, owner_key
from chunkstore.clock import FakeClock
from chunkstore.errors import VolumeLeased

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("etcd") is None,
                                 reason="etcd not installed (scripts/install)")]

CID, VOL = "c1", "0f0e0d0c-0000-4000-8000-000000000001"


def test_one_holder_a_growing_token_and_a_takeover_after_the_lease_ran_out(one):
    _, etcd = one
    a_clock = FakeClock()
    a = VolumeLease(etcd, CID, VOL, "host-a", ttl_s=2, clock=a_clock)
    t1 = a.acquire()
    assert t1 > 0 and a.valid()
    b = VolumeLease(etcd, CID, VOL, "host-b", ttl_s=2)
    with pytest.raises(VolumeLeased, match="held by host-a"):
        b.acquire()
    a_clock.advance(1)
    assert a.renew() and a.valid()

    # a pauses: it renews no more, and on its own clock stops counting itself the holder
    a_clock.advance(1.5)
    assert not a.valid()
    deadline = time.monotonic() + 15
    while True:  # etcd ends the lease once its TTL has passed
        try:
            t2 = b.acquire()
            break
        except VolumeLeased:
            assert time.monotonic() < deadline, "the lease never ran out"
            time.sleep(0.2)
    assert t2 > t1
    assert a.renew() is False  # for good: the volume is someone else's now
    kv, _ = etcd.get(owner_key(CID, VOL))
    assert kv.value == b"host-b"

    # b unmounts cleanly: the next holder takes it at once, with a higher token still
    b.release()
    c = VolumeLease(etcd, CID, VOL, "host-c", ttl_s=2)
    assert c.acquire() > t2
    c.release()
