"""A WORM domain's policy: durations as admins write them, the checks at creation, and the
retention arithmetic (clamping, extension only, autocommit)."""

from __future__ import annotations

import pytest

from sofs.errors import InvalidArgument
from sofs.worm.policy import DAY, MINUTE, NS, DomainPolicy, format_duration, parse_duration

YEAR = 365 * DAY


@pytest.mark.parametrize("text,ns", [("20y", 20 * YEAR), ("6mo", 180 * DAY), ("30d", 30 * DAY),
                                     ("12h", 12 * 3600 * NS), ("15m", 15 * MINUTE),
                                     ("90s", 90 * NS), (" 7d ", 7 * DAY)])
def test_durations_as_admins_write_them(text, ns):
    assert parse_duration(text) == ns
    assert parse_duration(format_duration(ns)) == ns


@pytest.mark.parametrize("text", ["", "20", "y", "20 years", "-1d", "1.5y", "2w", "1001y"])
def test_a_bad_duration_says_how_to_write_one(text):
    with pytest.raises(InvalidArgument, match="duration"):
        parse_duration(text)


def test_the_defaults_of_domain_create():
    p = DomainPolicy.parse("compliance")
    assert (p.default_ns, p.minimum_ns, p.maximum_ns, p.autocommit_ns) == (
        20 * YEAR, DAY, 70 * YEAR, 15 * MINUTE)


@pytest.mark.parametrize("kw,why", [
    ({"mode": "strict"}, "compliance or enterprise"),
    ({"autocommit": "0s"}, "shorter than 5 minutes"),
    ({"autocommit": "4m"}, "shorter than 5 minutes"),
    ({"minimum": "30y"}, "minimum <= default <= maximum"),
    ({"default": "80y"}, "minimum <= default <= maximum"),
])
def test_a_policy_that_cannot_hold_is_refused_at_creation(kw, why):
    args = {"mode": "enterprise", **kw}
    with pytest.raises(InvalidArgument, match=why):
        DomainPolicy.parse(**args)


def test_retention_is_what_the_atime_asks_clamped_or_the_default():
    p = DomainPolicy.parse("compliance", default="10y", minimum="1y", maximum="30y")
    commit = 1_800_000_000 * NS
    assert p.retain_until(commit, 0) == commit + 10 * YEAR  # atime not set after commit
    assert p.retain_until(commit, commit) == commit + 10 * YEAR
    assert p.retain_until(commit, commit + DAY) == commit + YEAR  # raised to the minimum
    assert p.retain_until(commit, commit + 15 * YEAR) == commit + 15 * YEAR
    assert p.retain_until(commit, commit + 99 * YEAR) == commit + 30 * YEAR  # the maximum


def test_after_commit_retention_only_grows_and_never_past_the_maximum():
    p = DomainPolicy.parse("compliance", default="10y", minimum="1y", maximum="30y")
    commit = 1_800_000_000 * NS
    current = p.retain_until(commit, 0)
    assert p.extended(commit, current, current - DAY) == current  # shortening: no change
    assert p.extended(commit, current, current + YEAR) == current + YEAR
    assert p.extended(commit, current, commit + 50 * YEAR) == commit + 30 * YEAR


def test_autocommit_after_the_period_without_a_change():
    p = DomainPolicy.parse("enterprise", autocommit="15m")
    assert not p.autocommit_due(0, 15 * MINUTE - 1)
    assert p.autocommit_due(0, 15 * MINUTE)
