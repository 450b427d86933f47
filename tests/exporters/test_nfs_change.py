"""NFS coherence: every WRITE and every SETATTR changes the NFSv4 change attribute.

NFS clients keep a file's data and attributes cached for as long as its change attribute
(FATTR4_CHANGE) stays the same: two changes that leave it unchanged leave other clients with
stale caches. NFS-Ganesha's FSAL VFS derives it from the file's ``stat`` on the FUSE mount:
the later of mtime and ctime, in nanoseconds (``posix2fsal_attributes``), so what counts is
the ctime the kernel reports for the file.

The export is made with the real ``sofsctl export nfs`` (NFSv4.1 on 127.0.0.1), the client is
tests/exporters/nfs42.py speaking NFSv4.1 (GETATTR of FATTR4_CHANGE, WRITE, SETATTR of the
mode). Each check does two changes back to back, with no pause, and reads the change attribute
after each; it is repeated ROUNDS times so that two changes landing in the same tick of a
coarse clock cannot go unnoticed by chance.

What happens today (kernel 6.18, HZ=250): the mount asks for FUSE writeback caching
(``fuse_mount.operations.SofsOperations.enable_writeback_cache``). With it, the kernel keeps
mtime and ctime of regular files itself and ignores the ones sofs returns
(``fuse_get_cache_mask``), and it stamps writes and chmods with ``current_time()``, the coarse
clock, one tick = 4 ms (``clock_getres(CLOCK_REALTIME_COARSE)``). Two changes within one tick
get the same ctime, hence the same change attribute: the change attribute moves in steps of
exactly 4,000,000 ns, and most back-to-back pairs leave it unchanged. Directories, whose times
the kernel takes from sofs (nanoseconds from ``time.time_ns``), are not affected. Without
writeback caching the same tests pass (the kernel then reports sofs's own ctime): that one-line
change in fuse_mount/operations.py is the fix, and is not made here; until it is, both tests
are expected to fail (strict: once it is fixed they pass, and the marker must go).
"""

from __future__ import annotations

import os

import pytest

from tests.fuse_mount.conftest import needs_fuse

from .nfs42 import UNSTABLE4, Nfs42Client

pytestmark = [pytest.mark.integration, needs_fuse]

ROUNDS = 25
UID = GID = 1000  # the NFS client's AUTH_SYS identity (root would be squashed)


def _file(env, name: str) -> str:
    path = env.mnt / name
    path.write_bytes(b"0" * 64)
    os.chown(path, UID, GID)
    path.chmod(0o644)
    return f"vol/{name}"  # from the pseudo root


def _unchanged(pairs: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    return [p for p in pairs if p[0] == p[1] or p[1] == p[2]]


def test_two_writes_back_to_back_each_change_the_change_attribute(env):
    env.export_nfs()
    name = _file(env, "written")
    pairs = []
    with Nfs42Client(env.nfs_port, uid=UID, gid=GID, minor=1) as c:
        for i in range(ROUNDS):
            before = c.change(name)
            c.write(name, 0, b"a%03d" % i, stable=UNSTABLE4)
            first = c.change(name)
            c.write(name, 4, b"b%03d" % i, stable=UNSTABLE4)
            pairs.append((before, first, c.change(name)))
        assert c.read(name, 0, 8) == b"a%03db%03d" % (ROUNDS - 1, ROUNDS - 1)
    stale = _unchanged(pairs)
    assert not stale, (f"{len(stale)} of {ROUNDS} write pairs left the change attribute "
                       f"unchanged (before, after the 1st, after the 2nd): {stale[:5]}")


def test_two_chmods_back_to_back_each_change_the_change_attribute(env):
    env.export_nfs()
    name = _file(env, "chmodded")
    pairs = []
    with Nfs42Client(env.nfs_port, uid=UID, gid=GID, minor=1) as c:
        for _ in range(ROUNDS):
            before = c.change(name)
            c.chmod(name, 0o600)
            first = c.change(name)
            c.chmod(name, 0o640)
            pairs.append((before, first, c.change(name)))
    assert (env.mnt / "chmodded").stat().st_mode & 0o777 == 0o640
    stale = _unchanged(pairs)
    assert not stale, (f"{len(stale)} of {ROUNDS} chmod pairs left the change attribute "
                       f"unchanged (before, after the 1st, after the 2nd): {stale[:5]}")
