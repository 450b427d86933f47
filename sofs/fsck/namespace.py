"""The namespace plan: what is wrong with the tree as a whole and what repair would do about
it, decided on the state the scans gathered (:mod:`.scan`), before anything is written.

Names are counted per inode; entries naming an inode without a record are resolved once all
records are known (rebuilt from the keys the inode left, or dangling); each directory keeps one
name (the one its ``P`` key names), cycles cut off from the root are broken, nameless inodes go
to ``/lost+found``, link counts are set to what the tree will be after the repair, and the
superblock counters are raised past every number in use or handed out by the plan. Every
decision is a :class:`~.state.Found` with its fix; :mod:`.repair` applies them.
"""

from __future__ import annotations

import stat

from .. import schema
from ..inode import ROOT_INO, Inode
from ..metadata import Batch
from .report import (
    DANGLING_ENTRY,
    DIRECTORY_HARD_LINK,
    MISSING_INODE,
    ORPHAN_INODE,
    STALE_KEY,
    SUPERBLOCK,
    WRONG_NLINK,
    WRONG_PARENT,
)
from .state import (
    LOST_FOUND,
    MARK_NEW,
    MARK_O,
    MARK_T,
    MOVE_E,
    NEW_D,
    NEW_E,
    OK,
    STAGE_ENTRIES,
    STAGE_INODES,
    STAGE_LINKS,
    STAGE_NLINK,
    STAGE_SUPER,
    CheckState,
    Entry,
    Fix,
    Ghost,
    delete_fix,
    put_fix,
    shown,
)

# ---------------------------------------------------------------------- names

def count_entry(st: CheckState, e: Entry, ps: int, final: bool) -> None:
    """Count a name in a valid directory (``ps``); a name of an inode without a record
    waits for :func:`plan_namespace` (``final=False``) or goes (``final=True``)."""
    s = st.slot.get(e.child)
    if s is None:
        if final:
            remove_entry(st, e, DANGLING_ENTRY, f"entry {shown(e.name)} in directory "
                         f"{e.parent} names inode {e.child}, which does not exist")
        else:
            st.deferred.append(e)
        return
    st.names[s] += 1
    if e.fix in (NEW_E, MOVE_E):
        st.new_cookie[(e.parent, e.name)] = 0  # allocated once all cookies are known
    if stat.S_ISDIR(st.modes[s]):
        st.subdirs[ps] += 1
        had = st.dir_names.get(e.child)
        if had is None:
            st.dir_names[e.child] = e
        elif isinstance(had, list):
            had.append(e)
        else:
            st.dir_names[e.child] = [had, e]


def remove_entry(st: CheckState, e: Entry, kind: str, detail: str,
                 counted: bool = False) -> None:
    """Plan removing both keys of an entry; ``counted``: it was counted as a name."""
    st.removed.add((e.parent, e.name))
    if counted:
        s = st.slot[e.child]
        st.adjust(s, names=-1)
        if st.is_dir(s):
            st.adjust(st.slot[e.parent], subdirs=-1)

    def fix(b: Batch) -> None:
        if e.fix in (OK, NEW_E):
            b.delete(schema.dentry_key(e.parent, e.name))
        if e.fix in (OK, NEW_D, MOVE_E):
            b.delete(schema.readdir_key(e.parent, e.cookie))

    st.problem(kind, e.child, detail + ": removed", STAGE_ENTRIES, fix)


# ---------------------------------------------------------------------- the plan

def plan_namespace(st: CheckState) -> None:
    st.tick("namespace", 0, 0, force=True)
    _plan_rebuilds(st)
    for parent, entries in st.homeless.items():
        ps = st.slot.get(parent)
        if ps is not None and st.is_dir(ps):
            for e in entries:
                count_entry(st, e, ps, final=True)
            continue
        why = "does not exist" if ps is None else "is not a directory"
        for e in entries:
            remove_entry(st, e, DANGLING_ENTRY, f"entry {shown(e.name)} in inode {parent}, "
                         f"which {why}")
    for e in st.deferred:
        count_entry(st, e, st.slot[e.parent], final=True)
    st.deferred = []
    st.homeless = {}
    for (parent, name) in [k for k, v in st.new_cookie.items() if not v]:
        if (parent, name) not in st.removed:
            st.new_cookie[(parent, name)] = st.alloc_cookie()
    orphans, moved = _plan_directories(st)
    orphans += _plan_files(st)
    if orphans or moved:
        _plan_lost_found(st, orphans, moved)
    _plan_nlinks(st)
    st.tick("namespace", 1, 1, force=True)


def _plan_rebuilds(st: CheckState) -> None:
    """Rebuild the records of named inodes that left data; the other keys of inodes
    without a record are stale."""
    named = {e.child for e in st.deferred}
    named.update(e.child for es in st.homeless.values() for e in es)
    if ROOT_INO not in st.slot:
        named.add(ROOT_INO)
    ghosts: list[tuple[int, Ghost | None]] = list(st.ghosts.items())
    ghosts += [(i, None) for i in named if i not in st.ghosts]
    for ino, g in ghosts:
        if ino in st.slot:
            continue
        children = ino in st.homeless
        evidence = g is not None and (g.bad_record or g.blocks or g.link_len is not None
                                      or g.xattrs or g.parent is not None)
        if ino in named and (evidence or children) or ino == ROOT_INO:
            _rebuild(st, ino, g or Ghost(), children)
        elif g is not None:
            for key, ref, what in g.keys:
                st.stale(ino, key, f"{what} of inode {ino}, which does not exist", ref)


def _rebuild(st: CheckState, ino: int, g: Ghost, children: bool) -> None:
    if children or g.parent is not None or ino == ROOT_INO:
        mode, size, what = stat.S_IFDIR | 0o755, 0, "a directory"
    elif g.link_len is not None:
        mode, size, what = stat.S_IFLNK | 0o777, g.link_len, "a symlink"
    else:
        mode, size, what = stat.S_IFREG | 0o644, g.end, f"a file of {g.end} bytes"
    st.add_slot(ino, mode, 0, size, MARK_NEW)
    if ino > st.max_ino:
        st.max_ino = ino
        st.next_ino = max(st.next_ino, ino + 1)
    if stat.S_ISDIR(mode) and g.parent is not None:
        st.dir_parent_key[ino] = g.parent
    for key, ref, part in g.keys:
        kind = key[:1]
        keep = (kind == b"X" or (kind == b"B" and stat.S_ISREG(mode))
                or (kind == b"L" and stat.S_ISLNK(mode))
                or (kind == b"P" and stat.S_ISDIR(mode)))
        if not keep:
            st.stale(ino, key, f"{part} of rebuilt inode {ino} ({what})", ref)
    cause = "its record is unreadable" if g.bad_record else "it has no record"

    def write_inode(b: Batch) -> None:
        s = st.slot[ino]
        nlink = 2 + st.subdirs[s] if stat.S_ISDIR(mode) else st.names[s]
        b.put(schema.inode_key(ino), Inode(ino, mode, nlink=nlink, size=size, atime_ns=st.now,
                                           mtime_ns=st.now, ctime_ns=st.now).pack())

    st.problem(MISSING_INODE, ino, f"inode {ino} is named but {cause}: rebuilt as {what} "
               "(mode, owner and times reset)", STAGE_INODES, write_inode)


def _plan_directories(st: CheckState) -> tuple[list[int], list[int]]:
    """One name per directory, matching its P key, no cycles; returns the orphans and the
    directories cut out of cycles (both go to lost+found)."""
    orphans: list[int] = []
    parent_of: dict[int, int] = {}
    for ino in st.dirs:
        s = st.slot[ino]
        names = st.names_of(ino)
        if ino == ROOT_INO:
            for e in names:
                remove_entry(st, e, DIRECTORY_HARD_LINK, f"entry {shown(e.name)} in "
                             f"directory {e.parent} names the root", counted=True)
            pk = st.dir_parent_key.get(ino)
            if pk is not None and pk != ROOT_INO:
                st.problem(WRONG_PARENT, ino, f"the root's parent key names {pk}",
                           STAGE_LINKS, delete_fix(schema.parent_key(ROOT_INO)))
            continue
        if not names:
            if st.marks[s] & MARK_O:
                _pending_orphan(st, ino)
            else:
                orphans.append(ino)
            continue
        pk = st.dir_parent_key.get(ino)
        keep = next((e for e in names if e.parent == pk), names[0])
        for e in names:
            if e is not keep:
                remove_entry(st, e, DIRECTORY_HARD_LINK, f"directory {ino} also named "
                             f"{shown(e.name)} in directory {e.parent}", counted=True)
        parent_of[ino] = keep.parent
        if st.marks[s] & MARK_O:
            _stale_orphan_mark(st, ino)
    moved = _break_cycles(st, parent_of)
    for ino, parent in parent_of.items():
        if ino in moved:
            continue
        pk = st.dir_parent_key.get(ino)
        if pk != parent:
            st.problem(WRONG_PARENT, ino, f"directory {ino} is in directory {parent}, its "
                       f"parent key says {pk}", STAGE_LINKS,
                       put_fix(schema.parent_key(ino), schema.le_u64(parent)))
    return orphans, moved


def _break_cycles(st: CheckState, parent_of: dict[int, int]) -> list[int]:
    """Directories whose parents lead in a circle never reach the root: cut each circle
    at its lowest inode, which goes to lost+found."""
    moved: list[int] = []
    rooted: set[int] = {ROOT_INO}
    for start in parent_of:
        path: list[int] = []
        on_path: set[int] = set()
        x: int | None = start
        while x is not None and x not in rooted:
            if x in on_path:
                circle = path[path.index(x):]
                victim = min(circle)
                keep = next(e for e in st.names_of(victim) if e.parent == parent_of[victim]
                            and (e.parent, e.name) not in st.removed)
                remove_entry(st, keep, ORPHAN_INODE, f"directory {victim} is in a cycle of "
                             f"{len(circle)} directories cut off from the root; its entry "
                             f"{shown(keep.name)} in {keep.parent} is moved to lost+found",
                             counted=True)
                moved.append(victim)
                break
            path.append(x)
            on_path.add(x)
            # None: an orphan or the root, which reaches the root after the repair
            x = parent_of.get(x)
        rooted.update(path)
    return moved


def _plan_files(st: CheckState) -> list[int]:
    orphans: list[int] = []
    names, marks, modes = st.names, st.marks, st.modes
    for s, ino in enumerate(st.inos):
        if stat.S_ISDIR(modes[s]):
            continue
        if names[s] == 0:
            if marks[s] & MARK_O:
                _pending_orphan(st, ino)
            elif not marks[s] & MARK_T:  # a file in the trash has no name (sofs.trash)
                orphans.append(ino)
        else:
            if marks[s] & MARK_O:
                _stale_orphan_mark(st, ino)
            if marks[s] & MARK_T:
                st.problem(STALE_KEY, ino, f"inode {ino} is in the trash but has a name",
                           STAGE_LINKS, delete_fix(schema.trash_key(ino)))
    return orphans


def _pending_orphan(st: CheckState, ino: int) -> None:
    st.open_orphans.append(ino)
    st.problem(ORPHAN_INODE, ino, f"inode {ino} was unlinked while open: the next mount "
               "frees it")


def _stale_orphan_mark(st: CheckState, ino: int) -> None:
    st.problem(STALE_KEY, ino, f"inode {ino} is marked unlinked-while-open but has a name "
               "(the next mount would free it)", STAGE_LINKS,
               delete_fix(schema.orphan_key(ino)))


def _plan_lost_found(st: CheckState, orphans: list[int], moved: list[int]) -> None:
    root = st.slot[ROOT_INO]
    lf = None
    value = st.meta.get(schema.dentry_key(ROOT_INO, LOST_FOUND))
    if value is not None and len(value) == 16 and (ROOT_INO, LOST_FOUND) not in st.removed:
        child = schema.parse_dentry_value(value)[0]
        cs = st.slot.get(child)
        if cs is not None and st.is_dir(cs) and child not in orphans + moved:
            lf = child
    if lf is None:
        lf = _new_lost_found(st, root)
    st.lost_found = lf
    lfs = st.slot[lf]
    cut = set(moved)
    for ino in orphans + moved:
        s = st.slot[ino]
        name = b"#%d" % ino
        n = 0
        while st.meta.get(schema.dentry_key(lf, name)) is not None:
            n += 1
            name = b"#%d.%d" % (ino, n)
        cookie = st.alloc_cookie()
        is_dir = st.is_dir(s)
        st.adjust(s, names=1)
        if is_dir:
            st.adjust(lfs, subdirs=1)
        link = _link_fix(lf, ino, name, cookie, is_dir)
        if ino in cut:  # reported when its entry in the cycle was planned away
            st.silent(STAGE_LINKS, link)
        else:
            st.problem(ORPHAN_INODE, ino, f"inode {ino} has no name: linked into lost+found "
                       f"as {shown(name)}", STAGE_LINKS, link)


def _new_lost_found(st: CheckState, root: int) -> int:
    """Plan creating ``/lost+found`` (or ``lost+found.N`` if the name is taken by something
    else); its inode number."""
    name = LOST_FOUND
    n = 0
    while st.meta.get(schema.dentry_key(ROOT_INO, name)) is not None:
        n += 1
        name = LOST_FOUND + b".%d" % n
    lf = st.alloc_ino()
    lfs = st.add_slot(lf, stat.S_IFDIR | 0o700, 0, 0, MARK_NEW)
    st.adjust(root, subdirs=1)
    cookie = st.alloc_cookie()

    def create(b: Batch) -> None:
        b.put(schema.inode_key(lf), Inode(lf, stat.S_IFDIR | 0o700, nlink=2 + st.subdirs[lfs],
                                          atime_ns=st.now, mtime_ns=st.now,
                                          ctime_ns=st.now).pack())
        b.put(schema.parent_key(lf), schema.le_u64(ROOT_INO))
        b.put(schema.dentry_key(ROOT_INO, name), schema.dentry_value(lf, cookie))
        b.put(schema.readdir_key(ROOT_INO, cookie), schema.readdir_value(lf, name))

    st.silent(STAGE_INODES, create)
    return lf


def _link_fix(lf: int, ino: int, name: bytes, cookie: int, is_dir: bool) -> Fix:
    def link(b: Batch) -> None:
        b.put(schema.dentry_key(lf, name), schema.dentry_value(ino, cookie))
        b.put(schema.readdir_key(lf, cookie), schema.readdir_value(ino, name))
        if is_dir:
            b.put(schema.parent_key(ino), schema.le_u64(lf))
    return link


def _plan_nlinks(st: CheckState) -> None:
    marks, nlinks, modes = st.marks, st.nlinks, st.modes
    names, subdirs, delta = st.names, st.subdirs, st.delta
    pending = set(st.open_orphans)
    for s, ino in enumerate(st.inos):
        if marks[s] & MARK_NEW or ino in pending:
            continue
        want = 2 + subdirs[s] if stat.S_ISDIR(modes[s]) else names[s]
        have = nlinks[s]
        if have == want:
            continue
        fix = _nlink_fix(ino, want)
        before = want - delta.get(s, 0)
        if have != before:
            st.problem(WRONG_NLINK, ino, f"inode {ino} has link count {have}, counted {before}"
                       + (f" ({want} after the repair)" if want != before else ""),
                       STAGE_NLINK, fix)
        else:  # only the other repairs change it
            st.silent(STAGE_NLINK, fix)


def _nlink_fix(ino: int, want: int) -> Fix:
    def fix(b: Batch) -> None:
        value = b.get(schema.inode_key(ino))
        if value is None:
            return
        node = Inode.unpack(ino, value)
        node.nlink = want
        b.put(schema.inode_key(ino), node.pack())
    return fix


# ---------------------------------------------------------------------- superblock counters

def plan_superblock(st: CheckState) -> None:
    """Counters at least past every number in use (and every one this repair hands out);
    staged first, so nothing handed out by this repair is ever handed out again."""
    counters = (
        (schema.SUPER_NEXT_INO, st.sb_next_ino, st.next_ino,
         st.sb_next_ino is None or st.sb_next_ino <= st.max_ino,
         f"next_ino is {st.sb_next_ino}, inode {st.max_ino} exists"),
        (schema.SUPER_NEXT_COOKIE, st.sb_next_cookie, st.next_cookie,
         st.sb_next_cookie is None or st.sb_next_cookie <= st.max_cookie,
         f"next_cookie is {st.sb_next_cookie}, cookie {st.max_cookie} is in use"),
        (schema.SUPER_MOUNTS, st.sb_mounts,
         st.max_generation if st.sb_mounts is None else st.sb_mounts,
         st.sb_mounts is None, "mount count missing"),
    )
    for key, have, want, wrong, detail in counters:
        if have == want and not wrong:
            continue
        fix = put_fix(key, schema.le_u64(want))
        if wrong:
            st.problem(SUPERBLOCK, None, detail, STAGE_SUPER, fix)
        else:  # only raised past what this repair hands out
            st.silent(STAGE_SUPER, fix)
