"""WORM rules in the SOFS layer: domains, commit by chmod and by autocommit, retention through
atime, and every refused change of a committed file, for root too, before and after a remount.
The Filesystem API is driven directly over the in-memory store (the env fixture); time is a
FakeClock, so autocommit and expiry are reached by advancing it."""

from __future__ import annotations

import os
import stat

import pytest

from chunkstore import errors as cerr
from chunkstore.clock import FakeClock
from sofs.errors import (
    CrossDevice,
    DataUnavailable,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NoSuchEntry,
    WormRefused,
)
from sofs.permissions import Ctx
from sofs.worm.policy import DAY, NS, DomainPolicy

POLICY = DomainPolicy.parse("compliance", default="10y", minimum="1d", maximum="30y",
                            autocommit="15m")
USER = Ctx(uid=1000, gid=1000, umask=0o022)


@pytest.fixture
def worm(env):
    mount, store = env
    clock = FakeClock()
    fs = mount(clock=clock)
    fs.worm_domain_create("/archive/studies", POLICY)
    return fs, clock, mount


def _file(fs, name=b"a.dcm", data=b"DICM" * 100, parent_path="/archive/studies"):
    parent = fs.resolve(parent_path)
    fh, node = fs.create(parent, name, 0o644, os.O_WRONLY)
    fs.write(fh, 0, data)
    fs.release(fh)
    return parent, node.ino


def _read(fs, ino):
    fh = fs.open(ino, os.O_RDONLY)
    try:
        return fs.read(fh, 0, 1 << 20)
    finally:
        fs.release(fh)


def test_a_domain_is_made_of_an_empty_or_new_directory_and_listed(worm, env):
    fs, _, _ = worm
    [d] = fs.worm_domains
    assert d.path == "/archive/studies" and d.policy == POLICY
    assert fs.worm_status(fs.resolve("/archive/studies")).state == "directory"
    assert fs.worm_status(fs.resolve("/archive")).state == "none"
    with pytest.raises(WormRefused):  # already a domain
        fs.worm_domain_create("/archive/studies", POLICY)
    _file(fs, parent_path="/archive")
    with pytest.raises(InvalidArgument, match="not empty"):
        fs.worm_domain_create("/archive", POLICY)


def test_an_uncommitted_file_is_an_ordinary_file(worm):
    fs, _, _ = worm
    parent, ino = _file(fs, b"tmp.part")
    fh = fs.open(ino, os.O_WRONLY | os.O_TRUNC)
    fs.write(fh, 0, b"new")
    fs.release(fh)
    fs.rename(parent, b"tmp.part", parent, b"final.dcm")
    assert fs.worm_status(ino).state == "uncommitted"
    fs.unlink(parent, b"final.dcm")


def test_chmod_a_w_commits_and_every_change_is_refused_even_for_root(worm):
    fs, clock, _ = worm
    parent, ino = _file(fs)
    fs.setattr(ino, mode=0o444)
    st = fs.worm_status(ino)
    assert st.state == "committed" and st.rule == "chmod"
    assert st.retain_until_ns == st.committed_ns + 10 * 365 * DAY  # the default
    node = fs.getattr(ino)
    assert node.atime_ns == st.retain_until_ns and not node.mode & 0o222
    refused = [
        lambda: fs.open(ino, os.O_WRONLY),
        lambda: fs.open(ino, os.O_RDONLY | os.O_TRUNC),
        lambda: fs.truncate(ino, 0),
        lambda: fs.setattr(ino, size=1),
        lambda: fs.setattr(ino, mode=0o644),
        lambda: fs.setattr(ino, uid=1000),
        lambda: fs.setattr(ino, gid=1000),
        lambda: fs.setattr(ino, mtime_ns=12345),
        lambda: fs.setattr(ino, atime_ns=st.retain_until_ns - NS),
        lambda: fs.setxattr(ino, b"user.x", b"1"),
        lambda: fs.removexattr(ino, b"user.x"),
        lambda: fs.unlink(parent, b"a.dcm"),
        lambda: fs.rename(parent, b"a.dcm", parent, b"b.dcm"),
        lambda: fs.rename(parent, b"other", parent, b"a.dcm"),
        lambda: fs.link(ino, fs.resolve("/archive"), b"escape"),
        lambda: fs.rmdir(fs.resolve("/archive"), b"studies"),
        lambda: fs.rename(fs.resolve("/archive"), b"studies", 1, b"moved"),
    ]
    _file(fs, b"other")
    for attempt in refused:
        with pytest.raises((WormRefused, DirectoryNotEmpty)):
            attempt()
    fs.setattr(ino, mode=0o400)  # fewer bits is no change of content
    assert _read(fs, ino) == b"DICM" * 100
    assert fs.getattr(ino).size == 400


def test_a_handle_open_for_writing_before_the_commit_cannot_write_after_it(worm):
    fs, _, _ = worm
    _, ino = _file(fs)
    fh = fs.open(ino, os.O_WRONLY)
    fs.setattr(ino, mode=0o444)
    with pytest.raises(WormRefused):
        fs.write(fh, 0, b"X")
    with pytest.raises(WormRefused):
        fs.write_nowait(fh, 0, b"X")
    fs.release(fh)
    assert _read(fs, ino) == b"DICM" * 100


def test_retention_is_asked_through_atime_clamped_and_only_extended(worm):
    fs, clock, _ = worm
    _, ino = _file(fs)
    now = int(clock.time() * NS)
    fs.setattr(ino, atime_ns=now + 100 * 365 * DAY)  # more than the maximum: clamped
    fs.setattr(ino, mode=0o444)
    st = fs.worm_status(ino)
    assert st.retain_until_ns == st.committed_ns + 30 * 365 * DAY
    _, ino2 = _file(fs, b"b.dcm")
    fs.setattr(ino2, atime_ns=now + 3600 * NS)  # less than the minimum: a day
    fs.setattr(ino2, mode=0o444)
    st2 = fs.worm_status(ino2)
    assert st2.retain_until_ns == st2.committed_ns + DAY
    fs.setattr(ino2, atime_ns=st2.retain_until_ns + 5 * DAY)
    assert fs.worm_status(ino2).retain_until_ns == st2.retain_until_ns + 5 * DAY
    assert fs.getattr(ino2).atime_ns == st2.retain_until_ns + 5 * DAY
    with pytest.raises(WormRefused, match="shortening"):
        fs.setattr(ino2, atime_ns=st2.retain_until_ns)


def test_after_expiry_a_file_may_be_deleted_but_never_changed(worm):
    fs, clock, _ = worm
    parent, ino = _file(fs)
    fs.setattr(ino, atime_ns=int(clock.time() * NS) + 2 * DAY)
    fs.setattr(ino, mode=0o444)
    clock.advance(2 * 86400 + 60)
    assert fs.worm_status(ino).state == "expired"
    with pytest.raises(WormRefused):
        fs.open(ino, os.O_WRONLY)
    with pytest.raises(WormRefused):
        fs.rename(parent, b"a.dcm", parent, b"b.dcm")
    fs.unlink(parent, b"a.dcm")
    with pytest.raises(NoSuchEntry):
        fs.getattr(ino)


def test_setting_the_host_clock_forward_expires_nothing_early(worm):
    fs, clock, _ = worm
    parent, ino = _file(fs)
    fs.setattr(ino, atime_ns=int(clock.time() * NS) + 2 * DAY)
    fs.setattr(ino, mode=0o444)
    clock.step_wall(30 * 86400)  # the system clock jumps a month: the compliance clock does not
    clock.advance(60)
    assert fs.worm_status(ino).state == "committed"
    with pytest.raises(WormRefused):
        fs.unlink(parent, b"a.dcm")


def test_autocommit_after_the_period_without_change(worm):
    fs, clock, _ = worm
    parent, ino = _file(fs)
    clock.advance(14 * 60)
    assert fs.worm_status(ino).state == "uncommitted"
    fh = fs.open(ino, os.O_WRONLY)
    fs.write(fh, 400, b"more")  # a change restarts the period
    fs.release(fh)
    clock.advance(14 * 60)
    assert fs.getattr(ino).mode & 0o222
    clock.advance(2 * 60)
    node = fs.getattr(ino)  # stat tells the truth: committed, no write bit
    assert not node.mode & 0o222
    assert fs.worm_status(ino).rule == "autocommit"
    with pytest.raises(WormRefused):
        fs.unlink(parent, b"a.dcm")


def test_the_scanner_commits_files_nobody_touches(worm):
    fs, clock, _ = worm
    inos = [_file(fs, f"f{i}".encode())[1] for i in range(5)]
    assert fs.worm_scan() == []
    clock.advance(16 * 60)
    assert sorted(fs.worm_scan()) == sorted(inos)
    assert fs.worm_scan() == []
    assert all(fs.worm_status(i).state == "committed" for i in inos)


def test_commits_and_domains_survive_a_remount(worm):
    fs, clock, mount = worm
    parent, ino = _file(fs)
    fs.setattr(ino, mode=0o444)
    until = fs.worm_status(ino).retain_until_ns
    fs.close()
    fs2 = mount(clock=clock)
    assert [d.path for d in fs2.worm_domains] == ["/archive/studies"]
    assert fs2.worm_status(ino).retain_until_ns == until
    with pytest.raises(WormRefused):
        fs2.unlink(fs2.resolve("/archive/studies"), b"a.dcm")
    with pytest.raises(WormRefused):
        fs2.open(ino, os.O_RDWR)
    new = fs2.mkdir(fs2.resolve("/archive/studies"), b"2026", 0o755)
    _, ino2 = _file(fs2, parent_path="/archive/studies/2026")
    assert fs2.worm_status(new.ino).state == "directory"
    assert fs2.worm_status(ino2).state == "uncommitted"


def test_moving_across_the_boundary(worm):
    fs, _, _ = worm
    dom = fs.resolve("/archive/studies")
    outside = fs.resolve("/archive")
    _, ino = _file(fs, b"in.tmp", parent_path="/archive")
    fs.rename(outside, b"in.tmp", dom, b"in.dcm")  # a file moved in joins the domain
    assert fs.worm_status(ino).state == "uncommitted"
    fs.rename(dom, b"in.dcm", outside, b"out.dcm")  # uncommitted: it may leave again
    assert fs.worm_status(ino).state == "none"
    full = fs.mkdir(outside, b"full", 0o755)
    _file(fs, b"x", parent_path="/archive/full")
    with pytest.raises(CrossDevice):  # mv then copies file by file into the domain
        fs.rename(outside, b"full", dom, b"full")
    sub = fs.mkdir(dom, b"sub", 0o755)
    _file(fs, b"y", parent_path="/archive/studies/sub")
    with pytest.raises(WormRefused):
        fs.rename(dom, b"sub", dom, b"renamed")
    with pytest.raises(WormRefused):
        fs.rename(dom, b"sub", outside, b"sub")
    empty = fs.mkdir(outside, b"empty", 0o755)
    fs.rename(outside, b"empty", dom, b"empty")
    assert fs.worm_status(empty.ino).state == "directory"
    _, twice = _file(fs, b"two", parent_path="/archive")
    fs.link(twice, outside, b"two-again")
    with pytest.raises(CrossDevice):
        fs.rename(outside, b"two", dom, b"two")
    with pytest.raises(WormRefused):
        fs.link(twice, dom, b"three")
    assert full.ino and sub.ino


def test_a_user_with_write_permission_gets_the_same_refusals(worm):
    fs, _, _ = worm
    dom = fs.resolve("/archive/studies")
    fs.setattr(dom, mode=0o777)
    fh, node = fs.create(dom, b"u.dcm", 0o644, os.O_WRONLY, ctx=USER)
    fs.write(fh, 0, b"user data")
    fs.release(fh)
    fs.setattr(node.ino, mode=0o444, ctx=USER)
    with pytest.raises(WormRefused):
        fs.unlink(dom, b"u.dcm", ctx=USER)
    with pytest.raises(WormRefused):
        fs.setattr(node.ino, mode=0o644, ctx=USER)
    assert stat.S_IMODE(fs.getattr(node.ino).mode) == 0o444


def test_a_volume_without_domains_keeps_no_worm_state(env):
    mount, _ = env
    fs = mount()
    fh, node = fs.create(1, b"plain", 0o644, os.O_WRONLY)
    fs.write(fh, 0, b"x")
    fs.release(fh)
    fs.setattr(node.ino, mode=0o444)
    fs.setattr(node.ino, mode=0o644)
    assert fs.getattr(node.ino).flags == 0 and fs.worm_status(node.ino).state == "none"
    fs.unlink(1, b"plain")


def test_a_legal_hold_keeps_a_file_past_its_retention_and_holds_stack(worm):
    fs, clock, _ = worm
    parent, ino = _file(fs)
    fs.setattr(ino, atime_ns=int(clock.time() * NS) + 2 * DAY)
    fs.setattr(ino, mode=0o444)
    assert fs.worm_hold(ino, "case-1", add=True) == 1
    assert fs.worm_hold(ino, "case-1", add=True) == 0  # already held
    fs.worm_hold(ino, "case-2", add=True)
    clock.advance(3 * 86400)
    st = fs.worm_status(ino)
    assert st.state == "expired" and st.holds == ("case-1", "case-2")
    fs.worm_hold(ino, "case-1", add=False)
    with pytest.raises(WormRefused, match="legal hold .case-2"):
        fs.unlink(parent, b"a.dcm")
    fs.worm_hold(ino, "case-2", add=False)
    fs.unlink(parent, b"a.dcm")


def test_a_recursive_hold_freezes_uncommitted_files_too(worm):
    fs, clock, mount = worm
    dom = fs.resolve("/archive/studies")
    sub = fs.mkdir(dom, b"patient-7", 0o755)
    inos = [_file(fs, f"s{i}".encode(), parent_path="/archive/studies/patient-7")[1]
            for i in range(3)]
    with pytest.raises(IsADirectory):
        fs.worm_hold(sub.ino, "case", add=True)
    assert fs.worm_hold(dom, "case", add=True, recursive=True) == 3
    assert [p for p, _ in fs.worm_held(dom)] == [f"/patient-7/s{i}" for i in range(3)]
    with pytest.raises(WormRefused):
        fs.open(inos[0], os.O_WRONLY | os.O_TRUNC)
    with pytest.raises(WormRefused):
        fs.rename(sub.ino, b"s1", sub.ino, b"x")
    with pytest.raises(WormRefused):
        fs.unlink(sub.ino, b"s2")
    fs.close()
    fs2 = mount(clock=clock)
    with pytest.raises(WormRefused):
        fs2.unlink(sub.ino, b"s2")
    assert fs2.worm_hold(dom, "case", add=False, recursive=True) == 3
    fs2.unlink(sub.ino, b"s2")
    _file(fs2, b"loose", parent_path="/archive")
    with pytest.raises(InvalidArgument, match="not in a WORM domain"):
        fs2.worm_hold(fs2.resolve("/archive"), "case", add=True, recursive=True)


def test_without_the_compliance_clock_stat_works_and_changes_fail(worm, monkeypatch):
    fs, clock, mount = worm
    parent, ino = _file(fs)
    fs.close()
    clock.advance(16 * 60)  # past the autocommit period, while unmounted
    fs2 = mount(clock=clock)
    def unreachable(*a, **kw):
        raise cerr.ChunkStoreError("the RING cannot be reached")
    monkeypatch.setattr(fs2.store, "get_root", unreachable)
    assert fs2.getattr(ino).mode & 0o222  # not committed yet, and stat still answers
    with pytest.raises(DataUnavailable):
        fs2.open(ino, os.O_WRONLY)  # the change is not let through unjudged
    with pytest.raises(DataUnavailable):
        fs2.setattr(ino, mode=0o444)
    assert fs2.getattr(ino).mode & 0o222  # the refused chmod changed nothing in memory
    monkeypatch.undo()
    assert not fs2.getattr(ino).mode & 0o222  # committed at the next touch
