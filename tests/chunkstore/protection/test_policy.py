import itertools
import os
import threading

import pytest

from chunkstore.errors import FormatError, PolicyError
from chunkstore.protection.policy import (
    REPLICA_INDEX,
    ECPolicy,
    PolicyCode,
    Protection,
    ReplicationPolicy,
    available_backends,
    parse_policy,
)


def test_parse_and_spec():
    for spec in ["cos0", "cos2", "cos5", "ec4+2", "ec2+1", "ec10+6"]:
        assert parse_policy(spec).spec() == spec
    assert parse_policy("cos2").copies == 3
    p = parse_policy("ec4+2")
    assert (p.k, p.m, p.backend) == (4, 2, available_backends()[0])


@pytest.mark.parametrize("bad", ["", "cos6", "cos-1", "ec1+1", "ec4+0", "ec10+7", "ec4+2:nope", "rep3", "ec4+2x"])
def test_parse_rejects(bad):
    with pytest.raises(PolicyError):
        parse_policy(bad)


def test_constructors_validate():
    with pytest.raises(PolicyError):
        ReplicationPolicy(0)
    with pytest.raises(PolicyError):
        ReplicationPolicy(7)
    with pytest.raises(PolicyError):
        ECPolicy(1, 2)
    with pytest.raises(PolicyError):
        ECPolicy(15, 2)


def test_quorum():
    assert ReplicationPolicy(1).write_quorum == 1
    assert ReplicationPolicy(2).write_quorum == 2
    assert ReplicationPolicy(3).write_quorum == 2
    assert ReplicationPolicy(4).write_quorum == 3
    assert ECPolicy(4, 2).write_quorum == 5
    assert ECPolicy(2, 1).write_quorum == 3
    assert ECPolicy(8, 4).write_quorum == 9


def test_codes_round_trip():
    for spec in ["cos0", "cos2", "ec4+2", "ec6+3"]:
        p = parse_policy(spec)
        code = PolicyCode.from_bytes(p.code.to_bytes())
        assert code == p.code and code.policy() == p
        assert code.width == p.width
    with pytest.raises(FormatError):
        PolicyCode(9, 1, 1, 1)
    with pytest.raises(FormatError):
        PolicyCode(2, 4, 2, 9)


def test_backends_differ_in_code():
    backends = available_backends()
    if len(backends) < 2:
        pytest.skip("only one pyeclib backend works on this machine")
    a, b = ECPolicy(4, 2, backends[0]), ECPolicy(4, 2, backends[1])
    assert a.code != b.code and a != b
    assert parse_policy(b.spec()) == b


@pytest.mark.parametrize("k,m", [(4, 2), (2, 1), (6, 3)])
@pytest.mark.parametrize("size", [0, 1, 1000, 70_001])
def test_ec_decode_with_any_m_missing(k, m, size):
    pol = ECPolicy(k, m)
    payload = os.urandom(size)
    frags = pol.encode(payload)
    assert len(frags) == k + m
    for missing in itertools.combinations(range(k + m), m):
        have = {i: f for i, f in enumerate(frags) if i not in missing}
        assert pol.decode(have) == payload
    with pytest.raises(PolicyError):
        pol.decode({i: frags[i] for i in range(k - 1)})
    rebuilt = pol.reconstruct({i: frags[i] for i in range(m, k + m)}, list(range(m)))
    assert all(rebuilt[i] == frags[i] for i in range(m))


def test_replication_encode():
    p = ReplicationPolicy(3)
    assert p.encode(b"ab") == [b"ab"] * 3
    assert p.piece_index(1) == REPLICA_INDEX


def test_protection_for_size():
    prot = Protection.parse("cos2", "ec4+2")
    assert prot.for_size(0) is prot.small
    assert prot.for_size(60 * 1024 - 1) is prot.small
    assert prot.for_size(60 * 1024) is prot.large
    with pytest.raises(PolicyError):
        Protection.parse("ec4+2", "ec4+2")


def test_each_thread_encodes_with_its_own_driver():
    """RingStore's writer threads share one Protection (and its ``large`` ECPolicy); pyeclib
    drivers are not shared across threads."""
    prot = Protection.parse("cos2", "ec4+2")
    payload = os.urandom(200_000)
    both_encoded = threading.Barrier(2)
    drivers: dict[str, object] = {}
    fragments: dict[str, list[bytes]] = {}

    def writer(name: str) -> None:
        policy = prot.for_size(len(payload))
        fragments[name] = policy.encode(payload)
        drivers[name] = policy.driver()
        both_encoded.wait(10)  # both threads alive at once
        assert policy.driver() is drivers[name]  # one driver per thread, kept

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert drivers["a"] is not drivers["b"]
    assert drivers["a"] is not prot.large.driver()  # nor the main thread's
    assert fragments["a"] == fragments["b"] == prot.large.encode(payload)


def test_policy_codes_give_one_shared_policy_object():
    code = parse_policy("ec4+2").code
    seen = []
    t = threading.Thread(target=lambda: seen.append(code.policy()))
    t.start()
    t.join(10)
    assert seen == [code.policy()] and seen[0] is code.policy()
