"""The checker's working state, shared by its phases: the inode table (attributes in
``array`` columns indexed by a slot number), the names found, the counters, and the findings,
each with the fix that repair would stage.

Memory stays compact: one dict ``ino -> slot`` at most (:class:`Slots`), chunk references in
one dict ``chunk key -> count``; only what is found wrong is kept as objects (:class:`Found`,
:class:`Ghost`). The phases that fill it are :mod:`.scan`, :mod:`.refcounts` and
:mod:`.namespace`; :mod:`.repair` applies the fixes.
"""

from __future__ import annotations

import dataclasses
import stat
from array import array
from bisect import bisect_left
from collections.abc import Callable
from typing import NamedTuple

from chunkstore.errors import ChunkStoreError
from chunkstore.placement.keys import KEY_SIZE, REF_SIZE, REF_VERSION, ChunkRef
from chunkstore.protection.policy import PolicyCode

from .. import chunkrefs
from ..inode import ROOT_INO
from ..metadata import Batch, MetaStore
from .chunks import ChunkProbe
from .report import BAD_RECORD, STALE_KEY, Progress

LOST_FOUND = b"lost+found"
FIRST_COOKIE = 3           # 1 and 2 are "." and ".." (sofs.fs)
NAME_MAX = 255
TICK = 65_536              # progress is reported every this many items

# how an entry's D/E twins must be fixed
OK, NEW_E, NEW_D, MOVE_E = 0, 1, 2, 3
# inode marks: orphan (O key), unflushed (W key), rebuilt or created by this repair, in the
# trash (T key: no name is right)
MARK_O, MARK_W, MARK_NEW, MARK_T = 1, 2, 4, 8
# repair stages: fixes are applied in this order
(STAGE_SUPER, STAGE_BAD, STAGE_REFS, STAGE_INODES, STAGE_ENTRIES, STAGE_LINKS,
 STAGE_NLINK, STAGE_STALE) = range(8)

Fix = Callable[[Batch], None]


def delete_fix(key: bytes) -> Fix:
    """The fix that deletes ``key``."""
    key = bytes(key)

    def fix(b: Batch) -> None:
        b.delete(key)
    return fix


def put_fix(key: bytes, value: bytes) -> Fix:
    """The fix that writes ``value`` at ``key``."""
    def fix(b: Batch) -> None:
        b.put(key, value)
    return fix


class Entry(NamedTuple):
    """One name found in a directory, and how its D/E twins must be fixed."""

    parent: int
    name: bytes
    child: int
    cookie: int
    fix: int


@dataclasses.dataclass(slots=True)
class Found:
    """A finding: a problem (``kind`` empty: a silent step of a problem reported elsewhere)
    and the fix repair stages for it in ``stage``."""

    kind: str
    ino: int | None
    detail: str
    stage: int
    fix: Fix | None


@dataclasses.dataclass(slots=True)
class Ghost:
    """Keys of an inode number that has no readable inode record."""

    bad_record: bool = False
    blocks: int = 0
    end: int = 0
    link_len: int | None = None
    xattrs: int = 0
    parent: int | None = None
    keys: list[tuple[bytes, bytes | None, str]] = dataclasses.field(default_factory=list)


def shown(name: bytes) -> str:
    return repr(name.decode(errors="replace"))


def valid_name(name: bytes) -> bool:
    return 0 < len(name) <= NAME_MAX and b"/" not in name and b"\0" not in name


def le(value: bytes | None) -> int | None:
    """A u64 superblock or parent value (None if absent or not 8 bytes)."""
    return int.from_bytes(value, "little") if value is not None and len(value) == 8 else None


class Slots:
    """Inode number -> slot in the inode columns, without a hash table for the bulk.

    The inode scan yields numbers in ascending order and the filesystem hands them out in
    sequence, so once the scan is over (:meth:`seal`) a dense array maps them (8 bytes per
    number up to the highest), or, if the numbers are sparse, a binary search over the sorted
    column does. Slots added later (rebuilt inodes, lost+found) go to a small dict.
    """

    def __init__(self, inos: array) -> None:
        self.inos = inos
        self.is_sealed = False
        self.sealed = 0  # slots below this one are found without the dict
        self.dense: array | None = None
        self.extra: dict[int, int] = {}

    def seal(self) -> None:
        self.is_sealed = True
        n = self.sealed = len(self.inos)
        top = self.inos[n - 1] if n else 0
        if top <= 4 * n + 65536:
            dense = array("q", [-1]) * (top + 1)
            for s, ino in enumerate(self.inos):
                dense[ino] = s
            self.dense = dense

    def added(self, ino: int, s: int) -> None:
        if self.is_sealed:
            self.extra[ino] = s

    def get(self, ino: int) -> int | None:
        dense = self.dense
        if dense is not None:
            if ino < len(dense):
                s = dense[ino]
                if s >= 0:
                    return s
        elif self.sealed:
            i = bisect_left(self.inos, ino, 0, self.sealed)
            if i < self.sealed and self.inos[i] == ino:
                return i
        return self.extra.get(ino)

    def __getitem__(self, ino: int) -> int:
        s = self.get(ino)
        if s is None:
            raise KeyError(ino)
        return s

    def __contains__(self, ino: int) -> bool:
        return self.get(ino) is not None


class CheckState:
    """Everything one run of the checker knows; the phases read and extend it."""

    def __init__(self, meta: MetaStore, probe: ChunkProbe | None, block_size: int,
                 progress: Progress | None, now_ns: int) -> None:
        if block_size <= 0:
            raise ValueError("block_size must be positive")
        self.meta = meta
        self.probe = probe
        self.bs = block_size
        self.block_bytes = 0  # raw lengths of the well-formed block map entries, summed
        self.progress = progress
        self.found: list[Found] = []
        self.now = now_ns          # timestamps of rebuilt inodes and collector queue entries
        # superblock counters as read (None: missing or unreadable)
        self.sb_next_ino: int | None = None
        self.sb_next_cookie: int | None = None
        self.sb_mounts: int | None = None
        # inode table: one slot per inode, columns in arrays
        self.inos = array("Q")
        self.slot = Slots(self.inos)
        self.modes = array("I")
        self.nlinks = array("I")
        self.sizes = array("Q")
        self.marks = bytearray()
        self.names = array("I")      # names the inode will have after the planned fixes
        self.subdirs = array("I")    # subdirectories, likewise
        self.delta: dict[int, int] = {}  # slot -> link count change due to the planned fixes
        self.dirs: list[int] = []
        self.dir_parent_key: dict[int, int] = {}  # directory -> its P value
        self.dir_names: dict[int, Entry | list[Entry]] = {}  # a list only if several
        self.ghosts: dict[int, Ghost] = {}
        self.max_ino = ROOT_INO
        self.max_generation = 0
        # namespace pass
        self.deferred: list[Entry] = []              # entries naming an inode without record
        self.homeless: dict[int, list[Entry]] = {}   # entries under a non-directory parent
        self.removed: set[tuple[int, bytes]] = set()
        self.new_cookie: dict[tuple[int, bytes], int] = {}
        self.max_cookie = 0
        self.next_ino = 0
        self.next_cookie = 0
        self.lost_found: int | None = None
        self.open_orphans: list[int] = []
        self.unreferenced: list[ChunkRef] | None = None  # None: not looked for (.leaks)
        # counts
        self.nblocks = 0
        self.nchunks = 0
        self.counts: dict[bytes, int] = {}
        self.good_codes: set[bytes] = set()   # policy codes seen to parse (a handful)

    # ------------------------------------------------------------------ findings

    def tick(self, phase: str, done: int, total: int = 0, force: bool = False) -> None:
        if self.progress is not None and (force or done % TICK == 0):
            self.progress(phase, done, total)

    def problem(self, kind: str, ino: int | None, detail: str, stage: int = 0,
                fix: Fix | None = None) -> None:
        self.found.append(Found(kind, ino, detail, stage, fix))

    def silent(self, stage: int, fix: Fix) -> None:
        """A repair step that belongs to problems reported elsewhere."""
        self.found.append(Found("", None, "", stage, fix))

    def bad_key(self, key: bytes, what: str, ino: int | None = None) -> None:
        self.problem(BAD_RECORD, ino, f"unreadable {what} (key {bytes(key[:24]).hex()})",
                     STAGE_BAD, delete_fix(key))

    def stale(self, ino: int, key: bytes, detail: str, ref: bytes | None = None,
              kind: str = STALE_KEY) -> None:
        """Plan deleting a key (a block's chunk released first) and report it."""
        k = bytes(key)
        if ref is None:
            self.problem(kind, ino, detail, STAGE_STALE, delete_fix(k))
            return
        try:
            parsed = ChunkRef.from_bytes(ref)
        except ChunkStoreError:
            self.bad_key(key, "block value", ino)
            return

        def release(b: Batch) -> None:
            if b.get(k) is not None:
                chunkrefs.decref(b, parsed, 0, self.now)
                b.delete(k)

        self.problem(kind, ino, detail, STAGE_STALE, release)

    def ref_ok(self, ref: bytes) -> bool:
        """Whether ChunkRef bytes parse (version, policy code), without building a ChunkRef."""
        if len(ref) != REF_SIZE or ref[0] != REF_VERSION:
            return False
        code = bytes(ref[1 + KEY_SIZE:5 + KEY_SIZE])
        if code not in self.good_codes:
            try:
                PolicyCode.from_bytes(code)
            except ChunkStoreError:
                return False
            self.good_codes.add(code)
        return True

    # ------------------------------------------------------------------ inode table

    def ghost(self, ino: int) -> Ghost:
        g = self.ghosts.get(ino)
        if g is None:
            g = self.ghosts[ino] = Ghost()
        return g

    def is_dir(self, s: int) -> bool:
        return stat.S_ISDIR(self.modes[s])

    def add_slot(self, ino: int, mode: int, nlink: int, size: int, mark: int = 0) -> int:
        s = len(self.inos)
        self.inos.append(ino)
        self.slot.added(ino, s)
        self.modes.append(mode)
        self.nlinks.append(nlink)
        self.sizes.append(size)
        self.marks.append(mark)
        self.names.append(0)
        self.subdirs.append(0)
        if stat.S_ISDIR(mode):
            self.dirs.append(ino)
        return s

    def adjust(self, s: int, names: int = 0, subdirs: int = 0) -> None:
        """A planned fix adds/removes a name (or a subdirectory) of slot ``s``."""
        self.names[s] += names
        self.subdirs[s] += subdirs
        self.delta[s] = self.delta.get(s, 0) + names + subdirs

    def names_of(self, ino: int) -> list[Entry]:
        had = self.dir_names.get(ino)
        return [] if had is None else had if isinstance(had, list) else [had]

    def alloc_cookie(self) -> int:
        cookie = self.next_cookie
        self.next_cookie += 1
        return cookie

    def alloc_ino(self) -> int:
        ino = self.next_ino
        self.next_ino += 1
        return ino
