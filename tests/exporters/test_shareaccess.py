"""``export smb`` says which users it created and whether they can write (exporters.shareaccess).

The judgement (:func:`exporters.shareaccess.permitted`) against the kernel's rules on plain
records; then on a real sofs FUSE mount, whose root has a POSIX ACL set through the mount; then
the whole path with the real CLI, supervisor and smbd and a pysmb client: without ``--owner``
the warning names the user and a write is refused (NT_STATUS_ACCESS_DENIED), with ``--owner``
the write lands, owned by the user, and no warning; the first export reports the user created,
the second reports it existing.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator

import pytest
from smb.smb_structs import OperationFailure

from exporters import shareaccess
from exporters.errors import ExportError
from exporters.shareaccess import DirFacts, R, W, X, permitted
from sofs import acl
from tests.fuse_mount.conftest import needs_fuse

from .clients import pysmb_conn, pysmb_read
from .exportenv import ExportEnv, User, mounted_env, sofsctl

OWNER_TEST_USER = User("sofstest-own", 61951, "Own3r-Pass:1")
WX = W | X


def d(mode: int, uid: int = 0, gid: int = 0, entries=None) -> DirFacts:
    return DirFacts("/srv/x", 0o040000 | mode, uid, gid,
                    None if entries is None else tuple(entries))


def e(tag: int, perm: int, ident: int = acl.UNDEFINED_ID) -> acl.Entry:
    return acl.Entry(tag, perm, ident)


# --- the judgement, as the kernel's ------------------------------------------------------------

def test_mode_bits_owner_then_group_then_other():
    g = frozenset({500})
    assert not permitted(d(0o755), 2901, g, WX)          # root:root 0755: F39
    assert permitted(d(0o755), 2901, g, R | X)
    assert permitted(d(0o755, uid=2901), 2901, g, WX)     # the owner
    assert not permitted(d(0o577, uid=2901), 2901, g, WX)  # owner bits only, never other's
    assert permitted(d(0o775, gid=500), 2901, g, WX)      # a group of the user's
    assert not permitted(d(0o757, gid=500), 2901, g, WX)  # group bits, never other's
    assert permitted(d(0o777), 2901, g, WX)
    assert not permitted(d(0o776), 2901, g, WX)           # write without search
    assert permitted(d(0o700), 0, g, WX)                  # root


def test_acl_named_user_and_groups_masked():
    base = [e(acl.USER_OBJ, 7), e(acl.GROUP_OBJ, 5), e(acl.OTHER, 5)]
    g = frozenset({2901})
    named = d(0o775, entries=[*base, e(acl.USER, 7, 2901), e(acl.MASK, 7)])
    assert permitted(named, 2901, g, WX)
    masked = d(0o755, entries=[*base, e(acl.USER, 7, 2901), e(acl.MASK, 5)])
    assert not permitted(masked, 2901, g, WX)             # the mask limits named entries
    group = d(0o775, entries=[*base, e(acl.GROUP, 7, 2901), e(acl.MASK, 7)])
    assert permitted(group, 2901, g, WX)
    assert not permitted(group, 2902, frozenset({2902}), WX)   # other: r-x
    # a matching group entry that does not grant denies, even if other would
    stingy = d(0o757, gid=2901, entries=[e(acl.USER_OBJ, 7), e(acl.GROUP_OBJ, 5),
                                          e(acl.MASK, 5), e(acl.OTHER, 7)])
    assert not permitted(stingy, 2903, frozenset({2901}), WX)
    assert permitted(stingy, 2903, frozenset({2903}), WX)
    # a named user entry is used before any group entry
    deny_user = d(0o775, entries=[*base, e(acl.USER, 5, 2901), e(acl.GROUP, 7, 2901),
                                  e(acl.MASK, 7)])
    assert not permitted(deny_user, 2901, g, WX)
    # the owner is judged by the owner bits, whatever the ACL says
    assert permitted(d(0o755, uid=2901, entries=[*base, e(acl.USER, 0, 2901),
                                                 e(acl.MASK, 0)]), 2901, g, WX)


def test_judge_names_the_directory_that_stops_the_user():
    chain = [d(0o755), d(0o700, uid=0), d(0o777)]
    got = shareaccess.judge("uxrad", 2901, frozenset({2901}), chain)
    assert not got.can_write and "cannot even reach" in got.reason
    got = shareaccess.judge("uxrad", 2901, frozenset({2901}), [d(0o755), d(0o755)])
    assert not got.can_write
    assert got.reason == "/srv/x is root:root 0755"
    assert "chown uxrad /srv/x" in got.fix and "setfacl -m u:uxrad:rwx /srv/x" in got.fix
    assert got.warning().startswith("uxrad cannot write to the share root: /srv/x is root:root")
    assert shareaccess.judge("uxrad", 2901, frozenset(), [d(0o755), d(0o755, uid=2901)]).can_write


def test_owner_option_is_checked_before_anything_is_done():
    with pytest.raises(ExportError, match="no such user"):
        shareaccess.parse_owner("sofstest-nosuchowner")
    with pytest.raises(ExportError, match="invalid --owner"):
        shareaccess.parse_owner("Bad Name")
    with pytest.raises(ExportError, match="root's already"):
        shareaccess.parse_owner("root")
    with pytest.raises(ExportError, match="no such group"):
        shareaccess.parse_owner("nobody:sofstest-nosuchgroup")
    assert shareaccess.parse_owner("sofstest-new", ["sofstest-new"]) == shareaccess.OwnerSpec(
        "sofstest-new")
    assert shareaccess.parse_owner("nobody:0") == shareaccess.OwnerSpec("nobody", "0")


# --- on a real mount and through real smbd -----------------------------------------------------

@pytest.fixture
def own_env() -> Iterator[ExportEnv]:
    """A mounted volume whose root is as a new volume's (root:root 0755), SMB user
    OWNER_TEST_USER (created by the export, removed by the cleanup)."""
    with mounted_env([OWNER_TEST_USER], prefix="sofs-owner-") as e:
        e.mnt.chmod(0o755)
        yield e


@pytest.mark.integration
@needs_fuse
def test_write_access_reads_the_root_acl_through_the_mount(own_env):
    user = OWNER_TEST_USER
    users = [(user.name, user.uid, user.uid)]
    assert not shareaccess.write_access(own_env.mnt, users)[0].can_write
    value = acl.encode([e(acl.USER_OBJ, 7), e(acl.USER, 7, user.uid), e(acl.GROUP_OBJ, 5),
                        e(acl.MASK, 7), e(acl.OTHER, 5)])
    os.setxattr(own_env.mnt, acl.ACCESS.decode(), value)
    facts = shareaccess.dir_facts(own_env.mnt)
    assert facts.acl is not None and facts.describe().endswith("0775 with an ACL")
    assert shareaccess.write_access(own_env.mnt, users)[0].can_write
    os.setxattr(own_env.mnt, acl.ACCESS.decode(), acl.encode([
        e(acl.USER_OBJ, 7), e(acl.USER, 7, user.uid), e(acl.GROUP_OBJ, 5), e(acl.MASK, 5),
        e(acl.OTHER, 5)]))
    assert not shareaccess.write_access(own_env.mnt, users)[0].can_write


def _store(env: ExportEnv, name: str) -> None:
    with pysmb_conn(env.smb_port, OWNER_TEST_USER) as conn:
        conn.storeFile("vol", name, io.BytesIO(b"hello from " + name.encode()))


@pytest.mark.integration
@needs_fuse
def test_export_smb_reports_users_warns_and_owner_makes_the_share_writable(own_env):
    env, user = own_env, OWNER_TEST_USER
    probe_line = re.compile(r"^(created user|user) sofs-probe (exists )?\(uid \d+", re.M)

    # 1. the root is root:root 0755: the user is created, and told it cannot write
    res = env.export_smb()
    assert f"created user {user.name} (uid {user.uid}, new group {user.name} gid {user.uid})" \
        in res.stdout, res.stdout
    assert probe_line.search(res.stdout), res.stdout
    assert (f"warning: {user.name} cannot write to the share root: "
            f"{os.path.realpath(env.mnt)} is root:root 0755") in res.stderr, res.stderr
    assert f"chown {user.name} " in res.stderr
    with pytest.raises(OperationFailure):
        _store(env, "refused.txt")
    assert not (env.mnt / "refused.txt").exists()

    # 2. again with --owner: the user exists, the root is its, writes land, no warning
    sofsctl(env.data, "export", "stop", "vol", "--kind", "smb")
    res = env.export_smb("--owner", user.name)
    assert f"user {user.name} exists (uid {user.uid}, group {user.name})" in res.stdout
    assert "user sofs-probe exists (uid " in res.stdout
    assert (f"owner of the share root {os.path.realpath(env.mnt)}: {user.name}:{user.name} "
            "(was root:root)") in res.stdout, res.stdout
    assert "warning" not in res.stderr, res.stderr
    st = env.mnt.stat()
    assert (st.st_uid, st.st_gid) == (user.uid, user.uid)
    _store(env, "written.txt")
    written = env.mnt / "written.txt"
    assert written.read_bytes() == b"hello from written.txt"
    assert written.stat().st_uid == user.uid
    with pysmb_conn(env.smb_port, user) as conn:
        assert pysmb_read(conn, "written.txt") == b"hello from written.txt"

    # 3. an owner that does not exist and is not a --user: refused before anything is done
    sofsctl(env.data, "export", "stop", "vol", "--kind", "smb")
    bad = sofsctl(env.data, "export", "smb", "vol", "--user", user.name, "--password-file",
                  str(env.pwfile), "--bind", "127.0.0.1", "--port", str(env.smb_port),
                  "--owner", "sofstest-nosuchowner", check=False)
    assert bad.returncode == 1 and "--owner sofstest-nosuchowner: no such user" in bad.stderr
