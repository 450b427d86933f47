"""The cluster map in a real etcd (chunkstore.authority.mapstore): seeded once, changed only by
compare-and-swap, followed by watch; two admins racing never fork it."""

from __future__ import annotations

import shutil
import threading

import pytest

from chunkstore.authority import mapstore
from chunkstore.errors import EtcdUnavailable, MapConflict, MapError
from chunkstore.placement.clustermap import ClusterMap

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("etcd") is None,
                                 reason="etcd not installed (scripts/install)")]

CID = "c1"


def _base() -> ClusterMap:
    return ClusterMap.create(CID).add_node("n1", "10.0.0.1:7700")


def test_seed_once_and_refuse_an_older_copy(one):
    _, etcd = one
    assert mapstore.read(etcd, CID) is None
    first = mapstore.seed(etcd, _base())
    assert first.cmap == _base() and first.revision > 0
    assert mapstore.seed(etcd, _base()) == first  # seeding again keeps what is there
    mapstore.change(etcd, CID, lambda m: m.add_node("n2", "10.0.0.2:7700"))
    with pytest.raises(MapError, match="older"):
        mapstore.seed(etcd, _base().add_node("n2", "10.0.0.2:7700").add_node(
            "n3", "10.0.0.3:7700"))  # a newer copy than etcd's is not trusted blindly
    assert mapstore.read(etcd, CID).cmap.epoch == _base().epoch + 1


def test_two_admins_racing_one_wins_the_other_is_told_to_retry(one):
    _, etcd = one
    mapstore.seed(etcd, _base())
    start = mapstore.read(etcd, CID).cmap.epoch
    both_read = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def admin(name: str, fn) -> None:
        def slow(m: ClusterMap) -> ClusterMap:
            both_read.wait(10)  # both made their change from the same epoch
            return fn(m)
        try:
            outcomes[name] = mapstore.change(etcd, CID, slow)
        except MapConflict as e:
            outcomes[name] = e

    threads = [threading.Thread(target=admin, args=("drain", lambda m: m.set_node_state(
                   "n1", "draining"))),
               threading.Thread(target=admin, args=("add", lambda m: m.add_node(
                   "n2", "10.0.0.2:7700")))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    won = [n for n, o in outcomes.items() if isinstance(o, mapstore.StoredMap)]
    lost = [n for n, o in outcomes.items() if isinstance(o, MapConflict)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert "retry" in str(outcomes[lost[0]])
    stored = mapstore.read(etcd, CID)
    assert stored.cmap.epoch == start + 1  # one change, not two forks of epoch start+1
    assert stored == outcomes[won[0]]
    # the loser's retry, on the new map, goes through
    retried = mapstore.change(etcd, CID, lambda m: m.add_node("n2", "10.0.0.2:7700")
                              if lost[0] == "add" else m.set_node_state("n1", "draining"))
    assert retried.cmap.epoch == start + 2
    assert {n.id for n in retried.cmap.nodes} == {"n1", "n2"}


def test_a_refused_or_malformed_change_changes_nothing(one):
    _, etcd = one
    before = mapstore.seed(etcd, _base())

    def refuse(old, new):
        raise MapError("would leave too few disks")

    with pytest.raises(MapError, match="too few"):
        mapstore.change(etcd, CID, lambda m: m.add_node("n2", "10.0.0.2:7700"), refuse)
    with pytest.raises(MapError, match="must make a later epoch"):
        mapstore.change(etcd, CID, lambda m: m)
    with pytest.raises(MapError, match="must make a later epoch"):
        mapstore.change(etcd, CID, lambda m: ClusterMap.create("other").add_node("n2", "a:1"))
    assert mapstore.read(etcd, CID) == before
    # a change of several steps is swapped in at once
    two = mapstore.change(etcd, CID, lambda m: m.add_node("n2", "a:1").add_node("n3", "b:1"))
    assert two.cmap.epoch == before.cmap.epoch + 2 and mapstore.read(etcd, CID) == two


def test_a_damaged_map_in_etcd_is_an_error_not_a_guess(one):
    _, etcd = one
    etcd.put(mapstore.map_key(CID), b"{not json")
    with pytest.raises(MapError, match="damaged"):
        mapstore.read(etcd, CID)
    etcd.put(mapstore.map_key(CID), ClusterMap.create("other").to_json().encode())
    with pytest.raises(MapError, match="of cluster other"):
        mapstore.read(etcd, CID)


def test_followers_see_every_epoch_in_order(one):
    _, etcd = one
    seeded = mapstore.seed(etcd, _base())
    for i in (2, 3):
        mapstore.change(etcd, CID, lambda m, i=i: m.add_node(f"n{i}", f"10.0.0.{i}:7700"))
    stop = threading.Event()
    seen = []
    for stored in mapstore.follow(etcd, CID, seeded.revision, stop):
        seen.append(stored.cmap.epoch)
        if len(seen) == 2:
            break  # closes the watch
    assert seen == [seeded.cmap.epoch + 1, seeded.cmap.epoch + 2]


class _LostAnswer:
    """A client whose compare-and-swap is committed but whose answer is lost (the member that
    made it died before answering), as etcd's failover can make it look."""

    def __init__(self, etcd, error):
        self._etcd, self._error = etcd, error

    def put_if(self, *args, **kw):
        self._etcd.put_if(*args, **kw)
        if self._error:
            raise EtcdUnavailable("the member died before answering")
        return False, 0  # what the retry on another member would say

    def __getattr__(self, name):
        return getattr(self._etcd, name)


@pytest.mark.parametrize("error", [True, False])
def test_a_change_whose_answer_was_lost_counts_once(one, error):
    _, etcd = one
    before = mapstore.seed(etcd, _base())
    made = mapstore.change(_LostAnswer(etcd, error), CID,
                           lambda m: m.add_node("n2", "10.0.0.2:7700"))
    assert made.cmap.epoch == before.cmap.epoch + 1
    assert mapstore.read(etcd, CID) == made
