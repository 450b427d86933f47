"""Reading the metadata: one scan per key prefix fills the checker's state
(:class:`~.state.CheckState`) and reports what is wrong with single records: the superblock,
the inodes (``I``), their side keys (``P``, ``L``, ``O``, ``W``, ``X``), the block maps (``B``)
and the directory entries (``D`` with their readdir twins ``E``, matched one directory at a
time). Whole-tree questions (names, cycles, link counts) are left to :mod:`.namespace`,
refcounts to :mod:`.refcounts`.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator

from chunkstore.placement.keys import KEY_SIZE, REF_SIZE, REF_VERSION

from .. import schema
from ..errors import FsError
from ..inode import ROOT_INO, Inode
from ..metadata import Batch
from .namespace import count_entry
from .report import BLOCK_BEYOND_EOF, COOKIE_WITHOUT_ENTRY, ENTRY_WITHOUT_COOKIE, SUPERBLOCK
from .state import (
    FIRST_COOKIE,
    MARK_O,
    MARK_T,
    MARK_W,
    MOVE_E,
    NEW_D,
    NEW_E,
    OK,
    STAGE_ENTRIES,
    STAGE_SUPER,
    TICK,
    CheckState,
    Entry,
    Fix,
    delete_fix,
    le,
    put_fix,
    shown,
    valid_name,
)

_Items = list[tuple[bytes, bytes]]


# ---------------------------------------------------------------------- superblock

def scan_superblock(st: CheckState) -> bool:
    """False if nothing else can be checked."""
    m = st.meta
    st.tick("superblock", 0, 1, force=True)
    fmt = m.get(schema.SUPER_FORMAT)
    if fmt is None:
        if not m.has_prefix(b"I"):
            st.problem(SUPERBLOCK, None, "no superblock and no inodes: an empty or never "
                       "mounted volume")
            return False
        st.problem(SUPERBLOCK, None, "format field missing: rewritten", STAGE_SUPER,
                   put_fix(schema.SUPER_FORMAT, schema.le_u64(schema.SCHEMA_VERSION)))
    elif le(fmt) != schema.SCHEMA_VERSION:
        st.problem(SUPERBLOCK, None, f"unknown metadata format {fmt.hex()} (this checker "
                   f"knows version {schema.SCHEMA_VERSION}): nothing else checked")
        return False
    st.sb_next_ino = le(m.get(schema.SUPER_NEXT_INO))
    st.sb_next_cookie = le(m.get(schema.SUPER_NEXT_COOKIE))
    st.sb_mounts = le(m.get(schema.SUPER_MOUNTS))
    st.tick("superblock", 1, 1, force=True)
    return True


# ---------------------------------------------------------------------- inodes

def scan_inodes(st: CheckState) -> None:
    st.tick("inodes", 0, 0, force=True)
    n = 0
    for n, (key, value) in enumerate(st.meta.scan(b"I"), 1):
        if n % TICK == 0:
            st.tick("inodes", n)
        if len(key) != 9:
            st.bad_key(key, "inode key")
            continue
        ino = int.from_bytes(key[1:], "big")
        if ino > st.max_ino:
            st.max_ino = ino
        try:
            node: Inode | None = Inode.unpack(ino, value)
        except FsError:
            node = None
        if node is None or (ino == ROOT_INO and not node.is_dir):
            st.ghost(ino).bad_record = True
            st.bad_key(key, "inode record" if node is None else "root inode (not a "
                       "directory)", ino)
            continue
        st.add_slot(ino, node.mode, node.nlink, node.size)
        if node.generation > st.max_generation:
            st.max_generation = node.generation
    st.slot.seal()
    st.tick("inodes", n, n, force=True)


# ---------------------------------------------------------------------- P, L, X, O, W keys

def scan_keys(st: CheckState) -> None:
    st.tick("keys", 0, 0, force=True)
    n = 0
    slot, modes = st.slot, st.modes
    for prefix in (b"P", b"L", b"O", b"W", b"X", b"T"):
        for key, value in st.meta.scan(prefix):
            n += 1
            if n % TICK == 0:
                st.tick("keys", n)
            if (len(key) <= 9) if prefix == b"X" else (len(key) != 9):
                st.bad_key(key, f"{prefix.decode()} key")
                continue
            ino = int.from_bytes(key[1:9], "big")
            s = slot.get(ino)
            if s is None:
                g = st.ghost(ino)
                if prefix == b"P":
                    g.parent = le(value)
                elif prefix == b"L":
                    g.link_len = len(value)
                elif prefix == b"X":
                    g.xattrs += 1
                g.keys.append((bytes(key), None, f"{prefix.decode()} key"))
                continue
            mode = modes[s]
            if prefix == b"P":
                parent = le(value)
                if not stat.S_ISDIR(mode):
                    st.stale(ino, key, "parent key of a non-directory")
                elif parent is None:
                    st.bad_key(key, "parent key value", ino)
                else:
                    st.dir_parent_key[ino] = parent
            elif prefix == b"L":
                if not stat.S_ISLNK(mode):
                    st.stale(ino, key, "symlink target of a non-symlink")
            elif prefix == b"O":
                st.marks[s] |= MARK_O
            elif prefix == b"T":
                if not stat.S_ISREG(mode):
                    st.stale(ino, key, "trash record of a non-regular file")
                else:
                    st.marks[s] |= MARK_T
            elif prefix == b"W":
                if not stat.S_ISREG(mode):
                    st.stale(ino, key, "unflushed mark of a non-regular file")
                else:
                    st.marks[s] |= MARK_W
    st.tick("keys", n, n, force=True)


# ---------------------------------------------------------------------- blocks

def scan_blocks(st: CheckState) -> None:
    st.tick("blocks", 0, 0, force=True)
    bs = st.bs
    slot, modes, sizes, marks = st.slot, st.modes, st.sizes, st.marks
    counts = st.counts
    good = st.good_codes
    last_ino = -1
    s = None
    is_reg = unflushed = False
    size = 0
    n = 0
    for n, (key, value) in enumerate(st.meta.scan(b"B"), 1):
        if n % TICK == 0:
            st.tick("blocks", n)
        if len(key) != 17 or len(value) != 4 + REF_SIZE or value[4] != REF_VERSION or (
                value[25:29] not in good and not st.ref_ok(value[4:])):
            st.bad_key(key, "block map entry")
            continue
        ck = value[5:5 + KEY_SIZE]
        counts[ck] = counts.get(ck, 0) + 1
        st.block_bytes += int.from_bytes(value[:4], "little")
        ino = int.from_bytes(key[1:9], "big")
        if ino != last_ino:
            last_ino = ino
            s = slot.get(ino)
            if s is not None:
                is_reg = stat.S_ISREG(modes[s])
                unflushed = bool(marks[s] & MARK_W)
                size = sizes[s]
        index = int.from_bytes(key[9:], "big")
        if s is None:
            g = st.ghost(ino)
            g.blocks += 1
            g.end = max(g.end, index * bs + int.from_bytes(value[:4], "little"))
            g.keys.append((bytes(key), bytes(value[4:]), "block"))
        elif not is_reg:
            st.stale(ino, key, f"block {index} of a non-regular file", value[4:])
        elif index * bs >= size and not unflushed:
            st.stale(ino, key, f"block {index} at or past the end of file ({size} bytes)",
                     value[4:], kind=BLOCK_BEYOND_EOF)
    st.nblocks = n
    st.tick("blocks", n, n, force=True)


# ---------------------------------------------------------------------- directory entries

def _grouped(st: CheckState, prefix: bytes) -> Iterator[tuple[bytes, _Items]]:
    """(parent u64 bytes, its items) for the D or E keys, one directory at a time."""
    group = b""
    items: _Items = []
    for key, value in st.meta.scan(prefix):
        if len(key) < 10 or (prefix == b"E" and len(key) != 17):
            st.bad_key(key, "directory entry key")
            continue
        pk = key[1:9]
        if pk != group:
            if items:
                yield group, items
            group, items = pk, []
        items.append((key, value))
    if items:
        yield group, items


def _directories(st: CheckState) -> Iterator[tuple[int, _Items, _Items]]:
    """The D and E items of each directory (merged walk of the two scans)."""
    dg, eg = _grouped(st, b"D"), _grouped(st, b"E")
    d, e = next(dg, None), next(eg, None)
    while d is not None or e is not None:
        if e is None or (d is not None and d[0] < e[0]):
            assert d is not None
            yield int.from_bytes(d[0], "big"), d[1], []
            d = next(dg, None)
        elif d is None or e[0] < d[0]:
            yield int.from_bytes(e[0], "big"), [], e[1]
            e = next(eg, None)
        else:
            yield int.from_bytes(d[0], "big"), d[1], e[1]
            d, e = next(dg, None), next(eg, None)


def scan_entries(st: CheckState) -> None:
    st.tick("entries", 0, 0, force=True)
    n = 0
    next_tick = TICK
    for parent, ditems, eitems in _directories(st):
        n += len(ditems)
        if n >= next_tick:
            st.tick("entries", n, force=True)
            next_tick = n + TICK
        entries = _match_twins(st, parent, ditems, eitems)
        ps = st.slot.get(parent)
        if ps is not None and st.is_dir(ps):
            for e in entries:
                count_entry(st, e, ps, final=False)
        else:
            st.homeless.setdefault(parent, []).extend(entries)
    st.tick("entries", n, n, force=True)
    st.next_ino = max(st.sb_next_ino or 0, st.max_ino + 1)
    st.next_cookie = max(st.sb_next_cookie or 0, st.max_cookie + 1, FIRST_COOKIE)


def _match_twins(st: CheckState, parent: int, ditems: _Items, eitems: _Items) -> list[Entry]:
    """The names of one directory; reports and plans fixes for D/E keys that disagree."""
    dmap: dict[bytes, tuple[int, int]] = {}
    max_cookie = st.max_cookie
    for key, value in ditems:
        if len(value) != 16:
            st.bad_key(key, "directory entry", parent)
            continue
        child, cookie = schema.parse_dentry_value(value)
        dmap[bytes(key[9:])] = (child, cookie)
        if cookie > max_cookie:
            max_cookie = cookie
    emap: dict[int, tuple[int, bytes]] = {}
    for key, value in eitems:
        if len(value) < 9:
            st.bad_key(key, "readdir entry", parent)
            continue
        cookie = schema.parse_readdir_key(key)
        emap[cookie] = schema.parse_readdir_value(value)
        if cookie > max_cookie:
            max_cookie = cookie
    st.max_cookie = max_cookie
    out = []
    for name, (child, cookie) in dmap.items():
        if cookie >= FIRST_COOKIE and emap.get(cookie) == (child, name):
            out.append(Entry(parent, name, child, cookie, OK))
            continue
        e = Entry(parent, name, child, cookie, NEW_E)
        out.append(e)
        st.problem(ENTRY_WITHOUT_COOKIE, child, f"entry {shown(name)} in directory {parent} "
                   "has no readdir twin: one is made", STAGE_ENTRIES, _twins_fix(st, e))
    made: set[bytes] = set()
    for cookie, (child, name) in emap.items():
        d = dmap.get(name)
        if cookie >= FIRST_COOKIE and d == (child, cookie):
            continue
        where = f"readdir entry {shown(name)} (cookie {cookie}) in directory {parent}"
        if d is not None or name in made or not valid_name(name):
            st.problem(COOKIE_WITHOUT_ENTRY, child, f"{where} duplicates or lacks a name "
                       "entry: removed", STAGE_ENTRIES,
                       delete_fix(schema.readdir_key(parent, cookie)))
            continue
        made.add(name)
        e = Entry(parent, name, child, cookie, NEW_D if cookie >= FIRST_COOKIE else MOVE_E)
        out.append(e)
        st.problem(COOKIE_WITHOUT_ENTRY, child, f"{where} has no name entry: one is made",
                   STAGE_ENTRIES, _twins_fix(st, e))
    return out


def _twins_fix(st: CheckState, e: Entry) -> Fix:
    """The fix that makes an entry's missing twin (unless the namespace plan removes the whole
    entry; a new cookie is the one the plan allocated)."""
    def fix(b: Batch) -> None:
        if (e.parent, e.name) in st.removed:
            return  # the whole entry goes
        if e.fix == NEW_D:
            b.put(schema.dentry_key(e.parent, e.name), schema.dentry_value(e.child, e.cookie))
            return
        if e.fix == MOVE_E:
            b.delete(schema.readdir_key(e.parent, e.cookie))
        cookie = st.new_cookie[(e.parent, e.name)]
        b.put(schema.dentry_key(e.parent, e.name), schema.dentry_value(e.child, cookie))
        b.put(schema.readdir_key(e.parent, cookie), schema.readdir_value(e.child, e.name))
    return fix
