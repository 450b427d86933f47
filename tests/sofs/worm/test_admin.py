"""WORM administration in the SOFS layer (sofs.worm.admin): the privileged delete of an
enterprise domain and its append-only log of WORM records, its refusal in a compliance domain
and under a legal hold, and what a volume still retains (what keeps it from being deleted)."""

from __future__ import annotations

import json
import os

import pytest

from chunkstore.clock import FakeClock
from sofs.errors import DirectoryNotEmpty, InvalidArgument, NoSuchEntry, WormRefused
from sofs.worm.policy import DAY, NS, DomainPolicy

from ..conftest import read_file, write_file

ENTERPRISE = DomainPolicy.parse("enterprise", default="10y", minimum="1d", maximum="30y",
                                autocommit="15m")
COMPLIANCE = DomainPolicy.parse("compliance", default="10y", minimum="1d", maximum="30y",
                                autocommit="15m")


@pytest.fixture
def fs(env):
    mount, _ = env
    clock = FakeClock(wall_start=1_800_000_000.0)
    fs = mount(clock=clock)
    fs.worm_domain_create("/ent", ENTERPRISE)
    fs.worm_domain_create("/comp", COMPLIANCE)
    fs.clock = clock
    return fs


def _committed(fs, where: str, name: bytes = b"s.dcm") -> int:
    ino = write_file(fs, fs.resolve(where), name, b"DICM" * 1000)
    fs.setattr(ino, mode=0o444)
    assert fs.worm_status(ino).state == "committed"
    return ino


def test_a_privileged_delete_removes_a_retained_file_and_records_it_as_a_worm_file(fs, env):
    ino = _committed(fs, "/ent")
    with pytest.raises(WormRefused):  # the ordinary delete is refused
        fs.unlink(fs.resolve("/ent"), b"s.dcm")
    with pytest.raises(InvalidArgument, match="reason"):
        fs.worm_privileged_delete("/ent/s.dcm", "  ", "alice (uid 0)", "pacs1")
    rec = fs.worm_privileged_delete("/ent/s.dcm", "wrong patient, ticket 4711",
                                    "alice (uid 0)", "pacs1")
    with pytest.raises(NoSuchEntry):
        fs.lookup(fs.resolve("/ent"), b"s.dcm")
    assert rec.ino == ino and rec.size == 4000 and rec.committed_ns is not None
    logdir = fs.resolve("/ent/.worm-log")
    [(name, logged, _)] = fs.readdir(logdir)[2:]
    assert rec.record == f"/ent/.worm-log/{name.decode()}"
    entry = json.loads(read_file(fs, logged.ino))
    assert entry["who"] == "alice (uid 0)" and entry["host"] == "pacs1"
    assert entry["reason"] == "wrong patient, ticket 4711" and entry["path"] == "/ent/s.dcm"
    assert entry["retain_until_ns"] == rec.retain_until_ns
    # the record itself is WORM, kept for the domain's maximum, and its directory stays
    status = fs.worm_status(logged.ino)
    assert status.state == "committed"
    assert status.retain_until_ns == status.committed_ns + 30 * 365 * DAY
    for change in (lambda: fs.unlink(logdir, name), lambda: fs.open(logged.ino, os.O_WRONLY),
                   lambda: fs.rename(logdir, name, logdir, b"x")):
        with pytest.raises(WormRefused):
            change()
    with pytest.raises((WormRefused, DirectoryNotEmpty)):
        fs.rmdir(fs.resolve("/ent"), b".worm-log")
    # the mount's metadata survives a reopen with the record and without the file
    mount, _ = env
    fs.close()
    again = mount(clock=fs.clock)
    assert [n for n, _, _ in again.readdir(again.resolve("/ent/.worm-log"))][2:] == [name]


def test_no_privileged_delete_in_a_compliance_domain_under_a_hold_or_outside_a_domain(fs):
    _committed(fs, "/comp")
    with pytest.raises(WormRefused, match="compliance"):
        fs.worm_privileged_delete("/comp/s.dcm", "because", "root", "h")
    held = _committed(fs, "/ent", b"held.dcm")
    fs.worm_hold(held, "case-1", add=True)
    with pytest.raises(WormRefused, match="hold"):
        fs.worm_privileged_delete("/ent/held.dcm", "because", "root", "h")
    write_file(fs, 1, b"plain", b"x")
    with pytest.raises(InvalidArgument, match="not a file of a WORM domain"):
        fs.worm_privileged_delete("/plain", "because", "root", "h")
    with pytest.raises(NoSuchEntry):
        fs.worm_privileged_delete("/ent/none.dcm", "because", "root", "h")
    # nothing was recorded for a refused delete
    with pytest.raises(NoSuchEntry):
        fs.resolve("/ent/.worm-log")
    assert fs.worm_status(held).state == "committed"


def test_what_a_volume_retains(fs):
    assert not fs.worm_retained().anything
    ino = write_file(fs, fs.resolve("/comp"), b"s.dcm", b"x")
    fs.setattr(ino, atime_ns=int(fs.clock.time() * NS) + 3 * DAY)
    fs.setattr(ino, mode=0o444)
    r = fs.worm_retained()
    assert (r.files, r.held) == (1, 0)
    assert r.last_until_ns == fs.worm_status(ino).retain_until_ns
    fs.clock.advance(4 * 86400)  # expired: retained no more
    assert not fs.worm_retained().anything
    fs.worm_hold(ino, "case-2", add=True)  # held: retained again
    assert (fs.worm_retained().files, fs.worm_retained().held) == (0, 1)
    fs.worm_hold(ino, "case-2", add=False)
    # a file due for autocommit is committed first, then counted
    write_file(fs, fs.resolve("/comp"), b"late.dcm", b"x")
    fs.clock.advance(16 * 60)
    assert fs.worm_retained().files == 1


def test_the_scan_names_every_file_committed_since_the_last_one(fs):
    """The mount makes the kernel forget the cached attributes of what the scan returns."""
    fs.worm_scan()
    by_chmod = _committed(fs, "/comp")
    late = write_file(fs, fs.resolve("/comp"), b"late.dcm", b"x")
    fs.clock.advance(16 * 60)
    by_show = write_file(fs, fs.resolve("/ent"), b"shown.dcm", b"y")
    fs.clock.advance(16 * 60)
    assert fs.worm_status(by_show).state == "committed"  # worm show found it due
    assert fs.worm_scan() == sorted([by_chmod, late, by_show])
    assert fs.worm_scan() == []


def test_an_autocommit_that_cannot_be_stored_changes_nothing_in_memory(fs):
    from sofs.errors import VolumeFenced
    from sofs.worm.records import COMMITTED
    ino = write_file(fs, fs.resolve("/comp"), b"due.dcm", b"x")
    fs.clock.advance(16 * 60)
    fs.meta.fence("a test: the metadata refuses commits")
    with pytest.raises(VolumeFenced):
        fs.getattr(ino)
    node = fs._inodes.cached(ino)
    assert not node.flags & COMMITTED and node.mode & 0o200
    fs.meta.unfence()
    assert fs.worm_status(ino).state == "committed" and fs.worm_scan() == [ino]
