"""sofs.worm.dosattrib: the READONLY bit of Samba's ``user.DOSATTRIB`` xattr.

The version 5 blobs were captured from Samba 4.17 (smbd of ``sofsctl export smb``, store dos
attributes = yes) on a sofs FUSE mount: smbprotocol set FileBasicInformation.FileAttributes
and the test read the xattr back (tests/exporters/test_worm_matrix.py does the same live).
Older versions (1 to 4, and the bare hex string of Samba 3) are built from the layout of
Samba's librpc/idl/xattr.idl, which this Samba no longer writes.
"""

from __future__ import annotations

import struct

import pytest

from sofs.worm.dosattrib import dos_attributes, readonly_flag

NAME = "user.DOSATTRIB"
# captured: (FileAttributes set by the SMB client, the user.DOSATTRIB Samba 4.17 wrote)
CAPTURED = [
    (0x21, "00000500050000001100000021000000fb17688f1183dd01"),  # READONLY | ARCHIVE
    (0x20, "00000500050000001100000020000000a76b6a8f1183dd01"),  # ARCHIVE
    (0x22, "00000500050000001100000022000000a76b6a8f1183dd01"),  # HIDDEN | ARCHIVE
    (0x23, "00000500050000001100000023000000a76b6a8f1183dd01"),  # READONLY|HIDDEN|ARCHIVE
    (0x00, "00000500050000001100000000000000a76b6a8f1183dd01"),  # NORMAL (stored as 0)
    (0x01, "00000500050000001100000001000000a76b6a8f1183dd01"),  # READONLY
]


@pytest.mark.parametrize("attrib,blob", CAPTURED, ids=[hex(a) for a, _ in CAPTURED])
def test_captured_samba_blobs(attrib, blob):
    value = bytes.fromhex(blob)
    assert dos_attributes(value) == attrib
    assert readonly_flag(NAME, value) is bool(attrib & 0x1)


def _ndr(attrib_hex: bytes, version: int, info: bytes) -> bytes:
    """A blob laid out as Samba's NDR push does (see the module under test)."""
    out = bytearray(attrib_hex + b"\0")
    out += b"\0" * (-len(out) % 2) + struct.pack("<H", version)
    out += b"\0" * (-len(out) % 4) + struct.pack("<H", version)
    out += b"\0" * (-len(out) % 4)
    return bytes(out + info)


NT = struct.pack("<Q", 0x01DD83118F6817FB)


@pytest.mark.parametrize("version,info", [
    (1, struct.pack("<IIQQ", 0x21, 0, 5, 4096) + NT + NT),
    (2, struct.pack("<IIIQQ", 0, 0x21, 0, 5, 4096) + NT + NT + NT + b"name\0"),
    (3, struct.pack("<IIIQQ", 0x1, 0x21, 0, 5, 4096) + NT + NT),
    (4, struct.pack("<II", 0x11, 0x21) + NT + NT),
    (5, struct.pack("<II", 0x11, 0x21) + NT),
])
@pytest.mark.parametrize("attrib_hex", [b"", b"0x21", b"0x2"])  # different paddings
def test_every_version_and_padding(version, info, attrib_hex):
    assert readonly_flag(NAME, _ndr(attrib_hex, version, info)) is True
    cleared = bytearray(_ndr(attrib_hex, version, info))
    at = len(cleared) - len(info) + (0 if version == 1 else 4)
    cleared[at] = 0x20
    assert readonly_flag(NAME, bytes(cleared)) is False


def test_compat_hex_string_of_samba3():
    assert readonly_flag(NAME, b"0x21\0") is True
    assert readonly_flag(NAME, b"0x20\0") is False
    assert readonly_flag(NAME, b"zz\0") is None
    assert readonly_flag(NAME, b"\0") is None


def test_attributes_not_valid_are_no_readonly():
    # version 5 with valid_flags lacking XATTR_DOSINFO_ATTRIB: Samba ignores attrib
    assert readonly_flag(NAME, _ndr(b"", 5, struct.pack("<II", 0x10, 0x21) + NT)) is False


def test_other_names_are_none():
    value = bytes.fromhex(CAPTURED[0][1])
    for name in ("user.DosAttrib", "user.dosattrib", "security.NTACL", "user.note", ""):
        assert readonly_flag(name, value) is None


@pytest.mark.parametrize("value", [
    b"", b"\x00", b"\x00\x00", b"\x00\x00\x05\x00", b"\x00\x00\x05\x00\x05\x00\x00\x00",
    b"\x00\x00\x05\x00\x05\x00\x00\x00\x11\x00\x00\x00\x21\x00",  # attrib cut short
    b"\x00\x00\x05\x00\x04\x00\x00\x00\x11\x00\x00\x00\x21\x00\x00\x00",  # level != version
    b"\x00\x00\x06\x00\x06\x00\x00\x00\x11\x00\x00\x00\x21\x00\x00\x00",  # unknown version
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x11\x00\x00\x00\x21\x00\x00\x00",  # version 0
    b"0x21",  # no terminator
    b"\xff" * 40,
])
def test_malformed_blobs_are_none(value):
    assert readonly_flag(NAME, value) is None


def test_never_raises_on_random_bytes():
    import random
    rng = random.Random(12)
    good = bytes.fromhex(CAPTURED[0][1])
    for _ in range(5000):
        n = rng.randrange(0, 40)
        blob = bytes(rng.randrange(256) for _ in range(n))
        assert readonly_flag(NAME, blob) in (True, False, None)
        mutated = bytearray(good)
        mutated[rng.randrange(len(good))] = rng.randrange(256)
        assert readonly_flag(NAME, bytes(mutated[:rng.randrange(len(good) + 1)])) in (
            True, False, None)
