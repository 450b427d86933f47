"""The metadata key schema: the canonical reference for every key and value sofs keeps in rocksdict.

One rocksdict database per volume (``VOLUME_DIR/meta``), raw byte keys. Integers in keys are
big-endian so that keys sort numerically; integers in values are little-endian. Every filesystem
operation writes its keys in one WriteBatch, so the database never shows half an operation.

========  =====================================  ==================================================
prefix    key                                    value
========  =====================================  ==================================================
``S``     ``S`` + name (ascii)                   superblock field (see ``SUPER_*``); ``S format``
                                                 holds the schema version (u32)
``I``     ``I`` + ino u64                        inode record, :mod:`sofs.inode` (61 bytes)
``D``     ``D`` + parent u64 + name              child ino u64 + cookie u64: name lookup
``E``     ``E`` + parent u64 + cookie u64        child ino u64 + name: readdir order; the cookie is
                                                 the stable readdir offset, never reused
``B``     ``B`` + ino u64 + block index u64      raw length u32 + ChunkRef bytes (file -> chunk map)
``X``     ``X`` + ino u64 + xattr name           xattr value
``L``     ``L`` + ino u64                        symlink target
``P``     ``P`` + directory ino u64              parent directory ino u64 (LE): answers ``..`` for
                                                 any directory, as NFS export needs
``R``     ``R`` + chunk key (20 B)               refcount u64 + ChunkRef bytes (kept while 0, until
                                                 the garbage collector deletes the chunk)
``G``     ``G`` + due time ns u64 + chunk key    empty: the chunk's refcount fell to 0; GC deletes it
                                                 from the RING after the grace period if still 0
``O``     ``O`` + ino u64                        empty: inode unlinked while open (an orphan); freed
                                                 on last release, or at the next mount after a crash
``W``     ``W`` + ino u64                        empty: blocks were stored beyond the inode's
                                                 persisted size (a write not yet closed/fsynced);
                                                 cut off at the next mount after a crash
``N``     ``N`` + domain index u32               a WORM domain (JSON, :mod:`sofs.worm.records`)
``Z``     ``Z`` + ino u64                        a committed WORM file's commit record (JSON)
``Y``     ``Y`` + ino u64                        empty: a WORM domain's file not committed yet
``H``     ``H`` + ino u64 + hold name            a legal hold on a WORM file (JSON)
``T``     ``T`` + ino u64                        a file in the trash: where it was, when it went
                                                 (JSON, :mod:`sofs.trash`); the inode has no name
========  =====================================  ==================================================

An inode's ``flags`` say whether it is in a WORM domain and committed (:mod:`sofs.worm.records`).
"""

import struct

SCHEMA_VERSION = 1

SUPER_FORMAT = b"Sformat"
SUPER_NEXT_INO = b"Snext_ino"          # u64: every inode number below it has been handed out
SUPER_NEXT_COOKIE = b"Snext_cookie"    # u64: every readdir cookie below it has been handed out
SUPER_MOUNTS = b"Smounts"              # u64: mount count, used as the generation of new inodes
SUPER_BLOCK_BYTES = b"Sblock_bytes"    # u64: the raw lengths of every mapped block, summed (what
                                       # the volume holds before compression: statfs "used")

_U64 = struct.Struct(">Q")
_U64x2 = struct.Struct(">QQ")
_LE_U64x2 = struct.Struct("<QQ")
_LE_U64 = struct.Struct("<Q")
_LE_U32 = struct.Struct("<I")


def u64(n: int) -> bytes:
    return _U64.pack(n)


def inode_key(ino: int) -> bytes:
    return b"I" + _U64.pack(ino)


def dentry_key(parent: int, name: bytes) -> bytes:
    return b"D" + _U64.pack(parent) + name


def dentry_prefix(parent: int) -> bytes:
    return b"D" + _U64.pack(parent)


def dentry_value(ino: int, cookie: int) -> bytes:
    return _LE_U64x2.pack(ino, cookie)


def parse_dentry_value(value: bytes) -> tuple[int, int]:
    return _LE_U64x2.unpack(value)


def readdir_key(parent: int, cookie: int) -> bytes:
    return b"E" + _U64x2.pack(parent, cookie)


def readdir_prefix(parent: int) -> bytes:
    return b"E" + _U64.pack(parent)


def readdir_value(ino: int, name: bytes) -> bytes:
    return _LE_U64.pack(ino) + name


def parse_readdir_key(key: bytes) -> int:
    """The cookie of an ``E`` key."""
    return _U64.unpack_from(key, 9)[0]


def parse_readdir_value(value: bytes) -> tuple[int, bytes]:
    return _LE_U64.unpack_from(value)[0], bytes(value[8:])


def block_key(ino: int, index: int) -> bytes:
    return b"B" + _U64x2.pack(ino, index)


def block_prefix(ino: int) -> bytes:
    return b"B" + _U64.pack(ino)


def parse_block_key(key: bytes) -> int:
    """The block index of a ``B`` key."""
    return _U64.unpack_from(key, 9)[0]


def block_value(raw_length: int, ref_bytes: bytes) -> bytes:
    return _LE_U32.pack(raw_length) + ref_bytes


def parse_block_value(value: bytes) -> tuple[int, bytes]:
    return _LE_U32.unpack_from(value)[0], bytes(value[4:])


def xattr_key(ino: int, name: bytes) -> bytes:
    return b"X" + _U64.pack(ino) + name


def xattr_prefix(ino: int) -> bytes:
    return b"X" + _U64.pack(ino)


def symlink_key(ino: int) -> bytes:
    return b"L" + _U64.pack(ino)


def parent_key(ino: int) -> bytes:
    return b"P" + _U64.pack(ino)


def refcount_key(chunk_key: bytes) -> bytes:
    return b"R" + chunk_key


def refcount_value(count: int, ref_bytes: bytes) -> bytes:
    return _LE_U64.pack(count) + ref_bytes


def parse_refcount_value(value: bytes) -> tuple[int, bytes]:
    return _LE_U64.unpack_from(value)[0], bytes(value[8:])


def gc_key(due_ns: int, chunk_key: bytes) -> bytes:
    return b"G" + _U64.pack(due_ns) + chunk_key


def parse_gc_key(key: bytes) -> tuple[int, bytes]:
    return _U64.unpack_from(key, 1)[0], bytes(key[9:])


def orphan_key(ino: int) -> bytes:
    return b"O" + _U64.pack(ino)


def trash_key(ino: int) -> bytes:
    return b"T" + _U64.pack(ino)


def unflushed_key(ino: int) -> bytes:
    return b"W" + _U64.pack(ino)


def parse_ino_key(key: bytes) -> int:
    """The inode number of an ``I``/``O``/``L``/``W`` key."""
    return _U64.unpack_from(key, 1)[0]


def le_u64(n: int) -> bytes:
    return _LE_U64.pack(n)


def parse_le_u64(value: bytes) -> int:
    return _LE_U64.unpack_from(value)[0]
