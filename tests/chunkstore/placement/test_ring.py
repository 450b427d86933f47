import collections
import random

import pytest

from chunkstore.errors import FormatError, NotEnoughDisks
from chunkstore.placement.ring import Ring, RingBuilder, RingData


def _ring(disks=6, hosts=None, sites=None, vnodes=6):
    b = RingBuilder(vnodes)
    for i in range(disks):
        host = f"h{i % hosts}" if hosts else "local"
        site = f"s{i % sites}" if sites else "site0"
        b.add_device(f"d{i}", host=host, site=site)
    return Ring(b.build())


def test_deterministic_and_serializable(tmp_path):
    r1, r2 = _ring(), _ring()
    assert r1.data == r2.data
    rnd = random.Random(3)
    keys = [rnd.randbytes(20) for _ in range(200)]
    assert [r1.owners(k, 3) for k in keys] == [r2.owners(k, 3) for k in keys]
    r1.data.save(tmp_path / "ring.json")
    r3 = Ring(RingData.load(tmp_path / "ring.json"))
    assert r3.data == r1.data
    assert [r3.owners(k, 6) for k in keys] == [r1.owners(k, 6) for k in keys]
    with pytest.raises(FormatError):
        RingData.from_json('{"format_version": 2}')
    with pytest.raises(FormatError):
        RingData.from_json("not json")


def test_distinct_and_prefix():
    r = _ring()
    rnd = random.Random(4)
    for _ in range(500):
        k = rnd.randbytes(20)
        six = r.owners(k, 6)
        assert len(set(six)) == 6
        assert r.owners(k, 3) == six[:3]
    with pytest.raises(NotEnoughDisks):
        r.owners(b"\0" * 20, 7)


def test_spread_even():
    r = _ring()
    rnd = random.Random(5)
    for n in (1, 3):
        counts = collections.Counter()
        for _ in range(10_000):
            counts.update(r.owners(rnd.randbytes(20), n))
        mean = 10_000 * n / 6
        assert len(counts) == 6
        assert all(0.6 * mean < c < 1.4 * mean for c in counts.values()), counts


def test_distinct_hosts_and_sites():
    r = _ring(disks=12, hosts=6, sites=2)
    rnd = random.Random(6)
    for _ in range(300):
        k = rnd.randbytes(20)
        owners = r.owners(k, 6)
        hosts = {r.device(d).host for d in owners}
        assert len(hosts) == 6
        sites = collections.Counter(r.device(d).site for d in owners)
        assert sorted(sites.values()) == [3, 3]
    # fewer hosts than owners: spread evenly over hosts
    r = _ring(disks=6, hosts=3)
    for _ in range(100):
        hosts = collections.Counter(r.device(d).host for d in r.owners(rnd.randbytes(20), 6))
        assert sorted(hosts.values()) == [2, 2, 2]


def test_adding_a_disk_moves_little():
    b = RingBuilder()
    for i in range(6):
        b.add_device(f"d{i}", host="local")
    before = Ring(b.build())
    b.add_device("d6", host="local")
    after = Ring(b.build())
    assert after.epoch == before.epoch + 1
    rnd = random.Random(7)
    keys = [rnd.randbytes(20) for _ in range(2000)]
    moved = sum(before.owners(k, 1) != after.owners(k, 1) for k in keys)
    assert moved < len(keys) * 0.35
    # tokens of existing devices did not move
    rebuilt = RingBuilder.from_ring_data(after.data)
    assert rebuilt.build().vnode2dev == after.data.vnode2dev
