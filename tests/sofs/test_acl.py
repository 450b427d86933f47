"""POSIX ACLs in the SOFS layer: the xattr codec, mode sync, chmod and inheritance."""

from __future__ import annotations

import stat

import pytest

from sofs import acl
from sofs.acl import GROUP, GROUP_OBJ, MASK, OTHER, USER, USER_OBJ, Entry
from sofs.errors import InvalidArgument, NoSuchAttribute
from sofs.fs import Ctx
from sofs.inode import ROOT_INO


def make(*entries: tuple[int, int] | tuple[int, int, int]) -> bytes:
    return acl.encode([Entry(*e) for e in entries])


EXTENDED = make((USER_OBJ, 7), (USER, 5, 1000), (GROUP_OBJ, 5), (GROUP, 7, 50), (MASK, 7),
                (OTHER, 0))


def test_codec_round_trips_and_sorts():
    entries = acl.decode(EXTENDED)
    assert [e.tag for e in entries] == [USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER]
    assert acl.encode(list(reversed(entries))) == EXTENDED
    assert acl.mode_bits(entries) == 0o770  # group bits come from the mask


@pytest.mark.parametrize("value", [
    b"", b"\x02\x00\x00", b"\x01\x00\x00\x00",  # short, bad version
    EXTENDED + b"\x00",  # ragged
    make((USER_OBJ, 7), (OTHER, 0)),  # no group entry
    make((USER_OBJ, 7), (USER, 7, 1), (GROUP_OBJ, 5), (OTHER, 0)),  # named entry, no mask
    make((USER_OBJ, 7), (USER, 7, 1), (USER, 5, 1), (GROUP_OBJ, 5), (MASK, 7), (OTHER, 0)),
    make((USER_OBJ, 8), (GROUP_OBJ, 5), (OTHER, 0)),  # perm beyond rwx
    acl.encode([]) + b"\x40\x00\x07\x00\xff\xff\xff\xff",  # unknown tag
])
def test_malformed_acls_are_refused(value):
    with pytest.raises(InvalidArgument):
        acl.decode(value)


def test_setting_access_acl_syncs_mode_and_minimal_acl_is_not_stored(env):
    mount, _ = env
    fs = mount()
    node = fs.mkdir(ROOT_INO, b"d", 0o1755)
    fs.setxattr(node.ino, acl.ACCESS, EXTENDED)
    got = fs.getattr(node.ino)
    assert stat.S_IMODE(got.mode) == 0o1770  # sticky bit kept, rwx from the ACL
    assert acl.decode(fs.getxattr(node.ino, acl.ACCESS)) == acl.decode(EXTENDED)
    fs.setxattr(node.ino, acl.ACCESS, make((USER_OBJ, 6), (GROUP_OBJ, 4), (OTHER, 4)))
    assert stat.S_IMODE(fs.getattr(node.ino).mode) == 0o1644
    assert acl.ACCESS not in fs.listxattr(node.ino)
    with pytest.raises(InvalidArgument):
        fs.setxattr(node.ino, acl.ACCESS, b"\x02\x00\x00\x00\x01")


def test_chmod_rewrites_owner_mask_and_other(env):
    mount, _ = env
    fs = mount()
    node = fs.mkdir(ROOT_INO, b"d", 0o755)
    fs.setxattr(node.ino, acl.ACCESS, EXTENDED)
    fs.setattr(node.ino, mode=0o640)
    entries = {(e.tag, e.id): e.perm for e in acl.decode(fs.getxattr(node.ino, acl.ACCESS))}
    assert entries[(USER_OBJ, acl.UNDEFINED_ID)] == 6
    assert entries[(MASK, acl.UNDEFINED_ID)] == 4
    assert entries[(GROUP_OBJ, acl.UNDEFINED_ID)] == 5  # untouched: the mask stands for it
    assert entries[(USER, 1000)] == 5 and entries[(GROUP, 50)] == 7
    assert entries[(OTHER, acl.UNDEFINED_ID)] == 0


def test_default_acl_is_inherited_and_replaces_the_umask(env):
    mount, _ = env
    fs = mount()
    d = fs.mkdir(ROOT_INO, b"d", 0o755)
    default = make((USER_OBJ, 7), (USER, 7, 1000), (GROUP_OBJ, 7), (MASK, 7), (OTHER, 5))
    fs.setxattr(d.ino, acl.DEFAULT, default)
    ctx = Ctx(uid=0, gid=0, umask=0o077)
    _, f = fs.create(d.ino, b"f", 0o666, 0, ctx)
    assert stat.S_IMODE(f.mode) == 0o664  # umask ignored; mask and other from the ACL
    fa = {(e.tag, e.id): e.perm for e in acl.decode(fs.getxattr(f.ino, acl.ACCESS))}
    assert fa[(USER, 1000)] == 7 and fa[(MASK, acl.UNDEFINED_ID)] == 6
    with pytest.raises(NoSuchAttribute):
        fs.getxattr(f.ino, acl.DEFAULT)  # files get no default ACL
    sub = fs.mkdir(d.ino, b"sub", 0o750, ctx)
    assert stat.S_IMODE(sub.mode) == 0o750
    assert fs.getxattr(sub.ino, acl.DEFAULT) == default  # directories pass it on
    plain = fs.mkdir(ROOT_INO, b"plain", 0o777, ctx)
    assert stat.S_IMODE(plain.mode) == 0o700  # no default ACL: the umask applies
    fs.setxattr(d.ino, acl.DEFAULT, acl.encode([]))  # an empty default ACL removes it
    assert acl.DEFAULT not in fs.listxattr(d.ino)
    with pytest.raises(InvalidArgument):
        fs.setxattr(f.ino, acl.DEFAULT, default)
