"""The health verdict's pure logic: levels, the ring's reasons, the worst level winning, and
the chunk line that never says "fully protected" while a disk is missing."""

from __future__ import annotations

import pytest

from chunkstore.healing.sweep import HealthReport
from chunkstore.healing.verdict import (
    Level,
    Reason,
    chunk_line,
    chunk_reasons,
    combine,
    disk_reasons,
    fill_reason,
    tolerance,
)
from chunkstore.protection.policy import parse_policy


def _h(protected=0, degraded=0, unrecoverable=0, unavailable=()):
    return HealthReport(chunks=protected + degraded + unrecoverable, protected=protected,
                        degraded=degraded, unrecoverable=unrecoverable, pieces=0,
                        disks_total=6, disks_unavailable=tuple(unavailable))


def test_levels_are_the_exit_statuses_and_labels():
    assert [int(x) for x in (Level.OK, Level.WARN, Level.ERR)] == [0, 1, 2]
    assert [x.label for x in Level] == ["HEALTH_OK", "HEALTH_WARN", "HEALTH_ERR"]


def test_nothing_wrong_is_ok():
    v = combine([None, None])
    assert v.level == Level.OK and v.line() == "HEALTH_OK"


def test_the_worst_level_wins_and_errors_come_first():
    v = combine([Reason(Level.WARN, "a"), None, Reason(Level.ERR, "b"), Reason(Level.WARN, "c")])
    assert v.level == Level.ERR
    assert v.line() == "HEALTH_ERR: b; a; c"
    assert combine([Reason(Level.WARN, "w")]).line() == "HEALTH_WARN: w"


def test_tolerance_is_the_least_among_the_policies():
    assert tolerance([]) is None
    assert tolerance([parse_policy("ec4+2"), parse_policy("cos2")]) == 2
    assert tolerance([parse_policy("ec8+3"), parse_policy("cos1")]) == 1


def test_each_missing_disk_warns_and_too_many_is_an_error():
    one = disk_reasons({"d3": "missing (/srv/d3)"}, tolerated=2)
    assert one == [Reason(Level.WARN, "disk d3 missing (/srv/d3)")]
    two = disk_reasons({"d3": "missing (/srv/d3)", "d1": "not initialised (/srv/d1)"}, 2)
    assert [r.level for r in two] == [Level.WARN, Level.WARN]
    assert two[0].text.startswith("disk d1 ")  # by disk id
    three = combine(disk_reasons({"d0": "missing", "d1": "missing", "d2": "unreadable"}, 2))
    assert three.level == Level.ERR
    assert three.line().startswith("HEALTH_ERR: 3 disks unavailable, more than the volumes' "
                                   "policies tolerate (2)")
    assert combine(disk_reasons({"d0": "x", "d1": "x", "d2": "x"}, None)).level == Level.WARN
    assert disk_reasons({}, 2) == []


def test_chunk_reasons():
    assert chunk_reasons(_h(protected=5)) == []
    assert chunk_reasons(_h(degraded=130)) == [Reason(Level.WARN, "130 chunks degraded")]
    v = combine(chunk_reasons(_h(degraded=130, unrecoverable=3)))
    assert v.line() == "HEALTH_ERR: 3 chunks unrecoverable; 130 chunks degraded"


@pytest.mark.parametrize("used, level", [(0.5, None), (0.899, None), (0.90, Level.WARN),
                                         (0.969, Level.WARN), (0.97, Level.ERR), (1.0, Level.ERR)])
def test_fill_thresholds(used, level):
    r = fill_reason(["d0"], used)
    assert (r.level if r else None) == level


def test_fill_reason_names_the_disks_sharing_a_file_system():
    r = fill_reason(["d0", "d1"], 0.93)
    assert r == Reason(Level.WARN, "disks d0, d1 93% full")


def test_chunk_line_when_every_disk_is_there():
    assert chunk_line(_h(protected=5, degraded=1)) == \
        "chunks: 6 (5 fully protected, 1 degraded, 0 unrecoverable)"


def test_chunk_line_never_says_fully_protected_while_a_disk_is_missing():
    # F15: the mount process's open indexes still count d3's pieces
    stale = chunk_line(_h(protected=267), missing=["d3"])
    assert "fully protected" not in stale
    assert stale == ("chunks: 267 (protection unknown while disk d3 is missing: "
                     "run sofsctl repair)")
    # a count that saw d3 as unavailable: its degraded figures stand
    seen = chunk_line(_h(protected=137, degraded=130, unavailable=["d3"]), missing=["d3"])
    assert "fully protected" not in seen
    assert seen.startswith("chunks: 267 (130 degraded, 0 unrecoverable; 137 with every piece")
    # a disk the ring cannot use although its directory is there
    assert "fully protected" not in chunk_line(_h(protected=4, unavailable=["d2"]))
    two = chunk_line(_h(protected=4), missing=["d3", "d1"])
    assert "while disks d1, d3 are missing" in two


def test_disks_the_chunk_count_saw_as_unavailable_leave_the_verdict_to_the_chunk_counts():
    """A networked ring with two nodes down and their data rebuilt elsewhere: a warning."""
    four = {"n2.d0": "unavailable", "n2.d1": "unavailable", "n5.d0": "unavailable", "n5.d1": "unavailable"}
    assert combine(disk_reasons(four, 2, counted_without=True)).level == Level.WARN
    assert combine(disk_reasons(four, 2)).level == Level.ERR

