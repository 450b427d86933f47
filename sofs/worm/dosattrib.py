"""Samba's DOS attributes xattr, read just far enough to tell whether it says READONLY.

With ``store dos attributes = yes`` (exporters/samba.py) Samba keeps a file's DOS attributes in
the xattr ``user.DOSATTRIB`` of the shared tree and, when an SMB client sets or clears the
read-only attribute (``attrib +r``, SET_INFO FileBasicInformation), it writes only that xattr:
it never chmods the file (``map readonly = no``). For a WORM domain the read-only attribute is
the SMB way to commit a file, as ``chmod a-w`` is the POSIX one, so the WORM rules look at the
value of every ``setxattr("user.DOSATTRIB")`` with :func:`readonly_flag`.

The value is an NDR blob (Samba's librpc/idl/xattr.idl, ``xattr_DOSATTRIB``, pulled by
librpc/ndr/ndr_xattr.c), little-endian, aligned from the start of the blob::

    attrib_hex   ASCII, NUL-terminated (Samba 4.17 writes "" for version 5;
                 old versions wrote "0x20")
    version      uint16, 2-aligned (absent: version 0xFFFF, attrib_hex alone says it)
    level        uint16, 4-aligned: the union's discriminant, equal to version
    info         4-aligned struct of that version:
        1:  attrib, ea_size, size, alloc_size, create_time, change_time
        2:  flags, attrib, ea_size, size, alloc_size, create/change/write_time, name
        3:  valid_flags, attrib, ea_size, size, alloc_size, create_time, change_time
        4:  valid_flags, attrib, itime, create_time
        5:  valid_flags, attrib, create_time

Versions 3 to 5 say the attributes only if ``valid_flags`` has XATTR_DOSINFO_ATTRIB (0x1);
otherwise Samba ignores ``attrib`` and so does this module (no READONLY). Standard library only,
no I/O; malformed bytes never raise.
"""

from __future__ import annotations

import struct

XATTR_NAME = "user.DOSATTRIB"
FILE_ATTRIBUTE_READONLY = 0x1
XATTR_DOSINFO_ATTRIB = 0x1
_COMPAT = 0xFFFF
# version -> (offset of attrib in the info struct, whether a valid_flags word comes first)
_ATTRIB_AT = {1: (0, False), 2: (4, False), 3: (4, True), 4: (4, True), 5: (4, True)}


def _align(offset: int, n: int) -> int:
    return (offset + n - 1) // n * n


def dos_attributes(value: bytes) -> int | None:
    """The FILE_ATTRIBUTE_* bits a ``user.DOSATTRIB`` value stores; 0 when it stores none
    (``valid_flags`` without XATTR_DOSINFO_ATTRIB); None when the blob cannot be parsed."""
    try:
        end = value.index(b"\0")
    except ValueError:
        return None  # attrib_hex has no terminator: Samba's NDR pull fails too
    attrib_hex = value[:end]
    offset = end + 1
    if offset >= len(value):
        # no version: the compat form, the hex string alone ("0x20")
        text = attrib_hex.decode("ascii", "replace").strip()
        if not text:
            return None
        try:
            return int(text, 16)
        except ValueError:
            return None
    offset = _align(offset, 2)
    if offset + 2 > len(value):
        return None
    (version,) = struct.unpack_from("<H", value, offset)
    if version not in _ATTRIB_AT:
        return None
    offset = _align(offset + 2, 4)
    if offset + 2 > len(value):
        return None
    (level,) = struct.unpack_from("<H", value, offset)
    if level != version:
        return None
    info = _align(offset + 2, 4)
    attrib_at, has_valid = _ATTRIB_AT[version]
    if info + attrib_at + 4 > len(value):
        return None
    (attrib,) = struct.unpack_from("<I", value, info + attrib_at)
    if has_valid:
        (valid,) = struct.unpack_from("<I", value, info)
        if not valid & XATTR_DOSINFO_ATTRIB:
            return 0
    return int(attrib)


def readonly_flag(name: str, value: bytes) -> bool | None:
    """Whether setting the xattr NAME to VALUE sets the DOS READONLY attribute: True or False
    for ``user.DOSATTRIB`` (False also when the blob says no attributes), None for any other
    name or a blob this cannot parse (the caller then treats it as an ordinary xattr)."""
    if name != XATTR_NAME:
        return None
    try:
        attrib = dos_attributes(bytes(value))
    except (TypeError, ValueError, struct.error):
        return None
    if attrib is None:
        return None
    return bool(attrib & FILE_ATTRIBUTE_READONLY)
