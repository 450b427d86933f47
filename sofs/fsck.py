"""The filesystem checker: proves a volume's metadata consistent, and repairs what is not.

:func:`check` reads one volume's metadata (:mod:`sofs.schema`) with one scan per key prefix and
checks it against itself and, when given a chunk store, against the stored chunks. The volume must
not be in use: the caller opens its :class:`~sofs.metadata.MetaStore` exclusively (a mounted
volume holds the lock, so opening it fails rather than racing a live filesystem).

Memory stays compact: inode attributes live in ``array`` columns indexed by a slot number
(one dict ``ino -> slot``), chunk references in one dict ``chunk key -> count``; directory entries
are matched with their readdir twins one directory at a time. Only what is found wrong is kept
as objects.

Problem kinds (``Problem.kind``), and what ``repair=True`` does about each:

==========================  ========================================================================
kind                        repair
==========================  ========================================================================
``superblock``              format field missing: rewritten; ``next_ino`` / ``next_cookie`` not
                            above every number in use, or ``mounts`` missing: raised/rewritten.
                            An unknown format version stops the check (nothing else is read).
``bad-record``              a key or value that does not parse (inode, entry, block, refcount,
                            queue entry): deleted. An unreadable inode record that is still named
                            is rebuilt (see ``missing-inode``); a refcount is recounted.
``missing-inode``           an entry names an inode that has no (readable) record but left data
                            (blocks, symlink target, xattrs, parent key or entries of its own):
                            the record is rebuilt from that evidence (type from the keys, size
                            from the blocks; mode, owner and times reset). The data is kept.
``dangling-entry``          an entry names an inode that does not exist and left nothing, or sits
                            in a directory that does not exist or is not a directory: both the
                            ``D`` and the ``E`` key are removed (children lose that name only).
``entry-without-cookie``    a ``D`` entry without its matching ``E`` twin: a new readdir cookie is
                            allocated above every existing one (``S next_cookie`` moves past it).
``cookie-without-entry``    an ``E`` entry without its ``D`` twin: the ``D`` entry is recreated;
                            a duplicate of a name that has its own ``D`` entry is removed.
``directory-hard-link``     a directory with more than one name (or an entry naming the root):
                            the extra names are removed (the one its ``P`` key names is kept).
``wrong-parent``            a directory's ``P`` key missing or not naming its parent: rewritten.
``orphan-inode``            an inode with no name: linked into ``/lost+found`` (created, mode
                            0700, if missing) as ``#<ino>``; so is one directory of each cycle
                            of directories cut off from the root. Inodes marked ``O``
                            (unlinked while open) are only reported: the next mount frees them.
``wrong-nlink``             the link count differs from the names (files) or from 2 + the
                            subdirectories (directories): set to the counted value.
``stale-key``               ``B``/``X``/``L``/``P``/``O``/``W`` keys of inodes that do not exist
                            or do not have that type, ``O`` marks on named inodes: deleted (a
                            block's chunk is released with ``chunkrefs.decref``, grace 0).
``block-beyond-eof``        a block at or past the end of a file that has no ``W`` mark: unmapped
                            (its chunk released as above).
``refcount-mismatch``       an ``R`` count differs from the number of blocks naming the chunk:
                            rewritten (a count that becomes 0 is queued for the collector).
``refcount-missing``        blocks name a chunk that has no ``R`` key: created.
``zero-refcount-not-queued`` an ``R`` count of 0 without a ``G`` queue entry: queued (due now).
``missing-chunk``           with a store: a referenced chunk is not there (LocalRing: fewer than
                            its policy's minimum pieces on the disks); never repaired here.
==========================  ========================================================================

After a repair a second check is clean, except for ``missing-chunk`` (data that is gone stays
reported) and the ``O`` orphans (which :attr:`FsckReport.clean` does not count as problems: the
next mount frees them). Every repair is staged in metadata WriteBatches committed with
``sync=True``; referenced chunks are never deleted: released ones go through the collector.

Progress phases (``progress(phase, done, total_or_0)``): ``superblock``, ``inodes``, ``keys``,
``blocks``, ``refcounts``, ``entries``, ``namespace``, ``repair``.

:func:`unreferenced_chunks` lists chunks stored on a LocalRing's disks that no volume references
(leaked by a crash between storing a chunk and committing its reference).
"""

from __future__ import annotations

import dataclasses
import stat
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from chunkstore.errors import ChunkCorrupt, ChunkNotFound, ChunkStoreError
from chunkstore.placement.keys import KEY_SIZE, REF_SIZE, REF_VERSION, ChunkRef
from chunkstore.ring.datapath import RingStore
from chunkstore.protection.policy import REPLICA_INDEX, PolicyCode, ReplicationPolicy
from chunkstore.ring.repairlog import DELETED
from chunkstore.api import ChunkStore

from . import chunkrefs, schema
from .errors import FsError
from .inode import ROOT_INO, Inode
from .metadata import Batch, MetaStore

SUPERBLOCK = "superblock"
BAD_RECORD = "bad-record"
MISSING_INODE = "missing-inode"
DANGLING_ENTRY = "dangling-entry"
ENTRY_WITHOUT_COOKIE = "entry-without-cookie"
COOKIE_WITHOUT_ENTRY = "cookie-without-entry"
DIRECTORY_HARD_LINK = "directory-hard-link"
WRONG_PARENT = "wrong-parent"
ORPHAN_INODE = "orphan-inode"
WRONG_NLINK = "wrong-nlink"
STALE_KEY = "stale-key"
BLOCK_BEYOND_EOF = "block-beyond-eof"
REFCOUNT_MISMATCH = "refcount-mismatch"
REFCOUNT_MISSING = "refcount-missing"
ZERO_REFCOUNT_NOT_QUEUED = "zero-refcount-not-queued"
MISSING_CHUNK = "missing-chunk"

KINDS = (SUPERBLOCK, BAD_RECORD, MISSING_INODE, DANGLING_ENTRY, ENTRY_WITHOUT_COOKIE,
         COOKIE_WITHOUT_ENTRY, DIRECTORY_HARD_LINK, WRONG_PARENT, ORPHAN_INODE, WRONG_NLINK,
         STALE_KEY, BLOCK_BEYOND_EOF, REFCOUNT_MISMATCH, REFCOUNT_MISSING,
         ZERO_REFCOUNT_NOT_QUEUED, MISSING_CHUNK)

LOST_FOUND = b"lost+found"
_FIRST_COOKIE = 3          # 1 and 2 are "." and ".." (sofs.fs)
_NAME_MAX = 255
_BATCH_OPS = 20_000        # a repair batch is committed once it holds this many writes
_TICK = 65_536             # progress is reported every this many items

Progress = Callable[[str, int, int], None]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One inconsistency: its kind (see the module docstring), the inode concerned (None for a
    chunk or the superblock), a human-readable detail, and whether this run repaired it."""

    kind: str
    ino: int | None
    detail: str
    repaired: bool


@dataclasses.dataclass(frozen=True)
class FsckReport:
    """What :func:`check` counted and found. Counts are of what was read (before any repair)."""

    inodes: int
    directories: int
    files: int
    symlinks: int
    blocks: int
    chunks: int            # distinct chunks referenced by blocks
    bytes: int             # total size of the regular files
    problems: tuple[Problem, ...]
    repaired: int
    open_orphans: tuple[int, ...] = ()  # inodes unlinked while open (O): freed at next mount

    @property
    def clean(self) -> bool:
        """No problem, apart from the open-unlinked orphans that the next mount frees."""
        pending = set(self.open_orphans)
        return all(p.kind == ORPHAN_INODE and p.ino in pending and not p.repaired
                   for p in self.problems)

    def count(self, kind: str) -> int:
        return sum(1 for p in self.problems if p.kind == kind)


def check(meta: MetaStore, store: ChunkStore | None = None, *, block_size: int,
          repair: bool = False, progress: Progress | None = None) -> FsckReport:
    """Check one volume (see the module docstring); with ``repair`` fix what can be fixed.

    The volume must not be in use. ``block_size`` is the volume's (``VolumeConfig.block_size``).
    """
    return _Checker(meta, store, block_size, progress).run(repair)


def unreferenced_chunks(store: RingStore, volumes: list[MetaStore],
                        also_referenced: Iterable[bytes] = ()) -> list[ChunkRef]:
    """Chunks with pieces on the ring's available disks that none of ``volumes`` references.

    A chunk counts as referenced if a volume has a refcount (``R``, even 0: the collector owns
    it then) or a block (``B``) naming it, or its key is in ``also_referenced``: pass the
    volumes' metadata checkpoints there (:func:`sofs.metacheckpoint.checkpoint_keys`), which
    no file names. Pass every volume of the cluster, none of them in use; chunks the repair
    log already marks deleted are left out. Nothing is deleted here.
    """
    referenced: set[bytes] = set(also_referenced)
    for meta in volumes:
        for key, _ in meta.scan(b"R"):
            referenced.add(bytes(key[1:]))
        for _, value in meta.scan(b"B"):
            referenced.add(bytes(value[5:5 + KEY_SIZE]))
    deleted = {e.ref.key for e in store.repair_log.entries() if e.kind == DELETED}
    found: dict[tuple[bytes, bytes], ChunkRef] = {}
    for disk_id in store.available_disks():
        try:
            for p in store.disk(disk_id).pieces():
                if p.key in referenced or p.key in deleted:
                    continue
                ck = (p.key, p.policy.to_bytes())
                if ck not in found:
                    found[ck] = ChunkRef(p.key, p.chunk_size, p.policy)
        except (ChunkStoreError, OSError):
            continue  # an unreadable disk: its pieces are repair's business
    return sorted(found.values(), key=lambda r: (r.key, r.policy.to_bytes()))


# ---------------------------------------------------------------------------- internals

_OK, _NEW_E, _NEW_D, _MOVE_E = 0, 1, 2, 3   # how an entry's D/E twins must be fixed
_MARK_O, _MARK_W, _MARK_NEW = 1, 2, 4        # inode marks: orphan, unflushed, rebuilt/created

(_STAGE_SUPER, _STAGE_BAD, _STAGE_REFS, _STAGE_INODES, _STAGE_ENTRIES, _STAGE_LINKS,
 _STAGE_NLINK, _STAGE_STALE) = range(8)

Fix = Callable[[Batch], None]


class _Entry(NamedTuple):
    """One name found in a directory, and how its D/E twins must be fixed."""

    parent: int
    name: bytes
    child: int
    cookie: int
    fix: int


@dataclasses.dataclass(slots=True)
class _Found:
    kind: str
    ino: int | None
    detail: str
    stage: int
    fix: Fix | None


@dataclasses.dataclass(slots=True)
class _Ghost:
    """Keys of an inode number that has no readable inode record."""

    bad_record: bool = False
    blocks: int = 0
    end: int = 0
    link_len: int | None = None
    xattrs: int = 0
    parent: int | None = None
    keys: list[tuple[bytes, bytes | None, str]] = dataclasses.field(default_factory=list)


def _shown(name: bytes) -> str:
    return repr(name.decode(errors="replace"))


def _valid_name(name: bytes) -> bool:
    return 0 < len(name) <= _NAME_MAX and b"/" not in name and b"\0" not in name


def _le(value: bytes | None) -> int | None:
    """A u64 superblock or parent value (None if absent or not 8 bytes)."""
    return int.from_bytes(value, "little") if value is not None and len(value) == 8 else None


class _ChunkProbe:
    """Whether a referenced chunk is still readable from the store."""

    def __init__(self, store: ChunkStore) -> None:
        self.store = store

    def missing(self, ref_bytes: bytes) -> str | None:
        """None if the chunk is there, else why it is not."""
        try:
            ref = ChunkRef.from_bytes(ref_bytes)
        except ChunkStoreError as e:
            return f"unreadable reference: {e}"
        if isinstance(self.store, RingStore):
            return self._ring_missing(self.store, ref)
        try:
            self.store.get(ref)
        except ChunkNotFound:
            return "not in the store"
        except ChunkCorrupt:
            return "corrupt: no copy verifies"
        except ChunkStoreError as e:
            return f"unreadable: {e}"
        return None

    def _ring_missing(self, ring: RingStore, ref: ChunkRef) -> str | None:
        try:
            policy = ref.policy.policy()
            owners = ring.ring.owners(ref.key, policy.width)
        except ChunkStoreError as e:
            return f"cannot place: {e}"
        replicated = isinstance(policy, ReplicationPolicy)
        found: set[object] = set()
        for i, disk_id in enumerate(owners):
            idx = policy.piece_index(i)
            if self._has(ring, disk_id, ref.key, idx):
                found.add(disk_id if replicated else idx)
        if len(found) < policy.min_pieces:  # misplaced pieces (not yet moved) count too
            indexes = [REPLICA_INDEX] if replicated else list(range(policy.width))
            for disk_id in ring.available_disks():
                for idx in indexes:
                    if self._has(ring, disk_id, ref.key, idx):
                        found.add(disk_id if replicated else idx)
        if len(found) < policy.min_pieces:
            return f"{len(found)} of the {policy.min_pieces} pieces needed are on the disks"
        return None

    @staticmethod
    def _has(ring: RingStore, disk_id: str, key: bytes, idx: int) -> bool:
        try:
            return ring.disk(disk_id).has(key, idx)
        except (ChunkStoreError, OSError):
            return False


class _Slots:
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


class _Writer:
    """Stages repairs in batches; a batch is committed (synced) between two fixes only."""

    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta
        self.batch = meta.batch()

    def apply(self, fix: Fix) -> None:
        fix(self.batch)
        if len(self.batch) >= _BATCH_OPS:
            self.commit()

    def commit(self) -> None:
        if len(self.batch):
            self.meta.commit(self.batch, sync=True)
            self.batch = self.meta.batch()


class _Checker:
    def __init__(self, meta: MetaStore, store: ChunkStore | None, block_size: int,
                 progress: Progress | None) -> None:
        if block_size <= 0:
            raise ValueError("block_size must be positive")
        self.meta = meta
        self.probe = _ChunkProbe(store) if store is not None else None
        self.bs = block_size
        self.progress = progress
        self.found: list[_Found] = []
        self.now = time.time_ns()
        # inode table: one slot per inode, columns in arrays
        self.inos = array("Q")
        self.slot = _Slots(self.inos)
        self.modes = array("I")
        self.nlinks = array("I")
        self.sizes = array("Q")
        self.marks = bytearray()
        self.names = array("I")      # names the inode will have after the planned fixes
        self.subdirs = array("I")    # subdirectories, likewise
        self.delta: dict[int, int] = {}  # slot -> link count change due to the planned fixes
        self.dirs: list[int] = []
        self.dir_parent_key: dict[int, int] = {}  # directory -> its P value
        self.dir_names: dict[int, _Entry | list[_Entry]] = {}  # a list only if several
        self.ghosts: dict[int, _Ghost] = {}
        self.max_ino = ROOT_INO
        self.max_generation = 0
        # namespace pass
        self.deferred: list[_Entry] = []              # entries naming an inode without record
        self.homeless: dict[int, list[_Entry]] = {}   # entries under a non-directory parent
        self.removed: set[tuple[int, bytes]] = set()
        self.new_cookie: dict[tuple[int, bytes], int] = {}
        self.max_cookie = 0
        self.next_ino = 0
        self.next_cookie = 0
        self.lost_found: int | None = None
        self.open_orphans: list[int] = []
        # counts
        self.nblocks = 0
        self.nchunks = 0
        self.counts: dict[bytes, int] = {}
        self.good_codes: set[bytes] = set()   # policy codes seen to parse (a handful)

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

    # ------------------------------------------------------------------ helpers

    def _tick(self, phase: str, done: int, total: int = 0, force: bool = False) -> None:
        if self.progress is not None and (force or done % _TICK == 0):
            self.progress(phase, done, total)

    def problem(self, kind: str, ino: int | None, detail: str, stage: int = 0,
                fix: Fix | None = None) -> None:
        self.found.append(_Found(kind, ino, detail, stage, fix))

    def silent(self, stage: int, fix: Fix) -> None:
        """A repair step that belongs to problems reported elsewhere."""
        self.found.append(_Found("", None, "", stage, fix))

    def bad_key(self, key: bytes, what: str, ino: int | None = None) -> None:
        self.problem(BAD_RECORD, ino, f"unreadable {what} (key {bytes(key[:24]).hex()})",
                     _STAGE_BAD, lambda b, k=bytes(key): b.delete(k))

    def ghost(self, ino: int) -> _Ghost:
        g = self.ghosts.get(ino)
        if g is None:
            g = self.ghosts[ino] = _Ghost()
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

    def alloc_cookie(self) -> int:
        cookie = self.next_cookie
        self.next_cookie += 1
        return cookie

    def alloc_ino(self) -> int:
        ino = self.next_ino
        self.next_ino += 1
        return ino

    # ------------------------------------------------------------------ run

    def run(self, repair: bool) -> FsckReport:
        if not self.scan_superblock():
            return self.report(repair, 0, 0, 0, 0, 0)
        self.scan_inodes()
        self.scan_keys()
        self.scan_blocks()
        self.scan_refcounts()
        self.scan_entries()
        self.plan_namespace()
        self.plan_superblock()
        files = dirs = links = 0
        total = 0
        for s, mode in enumerate(self.modes):
            if self.marks[s] & _MARK_NEW:
                continue
            if stat.S_ISREG(mode):
                files += 1
                total += self.sizes[s]
            elif stat.S_ISDIR(mode):
                dirs += 1
            elif stat.S_ISLNK(mode):
                links += 1
        n = sum(1 for m in self.marks if not m & _MARK_NEW)
        return self.report(repair, n, dirs, files, links, total)

    def report(self, repair: bool, inodes: int, dirs: int, files: int, links: int,
               total: int) -> FsckReport:
        done: set[int] = set()
        if repair:
            writer = _Writer(self.meta)
            order = sorted((i for i, f in enumerate(self.found) if f.fix is not None),
                           key=lambda i: self.found[i].stage)
            for n, i in enumerate(order, 1):
                writer.apply(self.found[i].fix)
                done.add(i)
                self._tick("repair", n, len(order))
            writer.commit()
            self._tick("repair", len(order), len(order), force=True)
        problems = tuple(Problem(f.kind, f.ino, f.detail, i in done)
                         for i, f in enumerate(self.found) if f.kind)
        return FsckReport(inodes=inodes, directories=dirs, files=files, symlinks=links,
                          blocks=self.nblocks, chunks=self.nchunks, bytes=total,
                          problems=problems, repaired=sum(p.repaired for p in problems),
                          open_orphans=tuple(sorted(self.open_orphans)))

    # ------------------------------------------------------------------ superblock

    def scan_superblock(self) -> bool:
        """False if nothing else can be checked."""
        m = self.meta
        self._tick("superblock", 0, 1, force=True)
        fmt = m.get(schema.SUPER_FORMAT)
        if fmt is None:
            if not m.has_prefix(b"I"):
                self.problem(SUPERBLOCK, None, "no superblock and no inodes: an empty or "
                             "never mounted volume")
                return False
            self.problem(SUPERBLOCK, None, "format field missing: rewritten", _STAGE_SUPER,
                         lambda b: b.put(schema.SUPER_FORMAT,
                                         schema.le_u64(schema.SCHEMA_VERSION)))
        elif _le(fmt) != schema.SCHEMA_VERSION:
            self.problem(SUPERBLOCK, None, f"unknown metadata format {fmt.hex()} (this checker "
                         f"knows version {schema.SCHEMA_VERSION}): nothing else checked")
            return False
        self.sb_next_ino = _le(m.get(schema.SUPER_NEXT_INO))
        self.sb_next_cookie = _le(m.get(schema.SUPER_NEXT_COOKIE))
        self.sb_mounts = _le(m.get(schema.SUPER_MOUNTS))
        self._tick("superblock", 1, 1, force=True)
        return True

    def plan_superblock(self) -> None:
        """Counters at least past every number in use (and every one this repair hands out);
        staged first, so nothing handed out by this repair is ever handed out again."""
        counters = (
            (schema.SUPER_NEXT_INO, self.sb_next_ino, self.next_ino,
             self.sb_next_ino is None or self.sb_next_ino <= self.max_ino,
             f"next_ino is {self.sb_next_ino}, inode {self.max_ino} exists"),
            (schema.SUPER_NEXT_COOKIE, self.sb_next_cookie, self.next_cookie,
             self.sb_next_cookie is None or self.sb_next_cookie <= self.max_cookie,
             f"next_cookie is {self.sb_next_cookie}, cookie {self.max_cookie} is in use"),
            (schema.SUPER_MOUNTS, self.sb_mounts,
             self.max_generation if self.sb_mounts is None else self.sb_mounts,
             self.sb_mounts is None, "mount count missing"),
        )
        for key, have, want, wrong, detail in counters:
            if have == want and not wrong:
                continue
            fix = (lambda b, key=key, want=want: b.put(key, schema.le_u64(want)))
            if wrong:
                self.problem(SUPERBLOCK, None, detail, _STAGE_SUPER, fix)
            else:  # only raised past what this repair hands out
                self.silent(_STAGE_SUPER, fix)

    # ------------------------------------------------------------------ inodes

    def scan_inodes(self) -> None:
        self._tick("inodes", 0, 0, force=True)
        n = 0
        for n, (key, value) in enumerate(self.meta.scan(b"I"), 1):
            if n % _TICK == 0:
                self._tick("inodes", n)
            if len(key) != 9:
                self.bad_key(key, "inode key")
                continue
            ino = int.from_bytes(key[1:], "big")
            if ino > self.max_ino:
                self.max_ino = ino
            try:
                node = Inode.unpack(ino, value)
            except FsError:
                node = None
            if node is None or (ino == ROOT_INO and not node.is_dir):
                self.ghost(ino).bad_record = True
                self.bad_key(key, "inode record" if node is None else "root inode (not a "
                             "directory)", ino)
                continue
            self.add_slot(ino, node.mode, node.nlink, node.size)
            if node.generation > self.max_generation:
                self.max_generation = node.generation
        self.slot.seal()
        self._tick("inodes", n, n, force=True)

    # ------------------------------------------------------------------ P, L, X, O, W keys

    def stale(self, ino: int, key: bytes, detail: str, ref: bytes | None = None,
              kind: str = STALE_KEY) -> None:
        """Plan deleting a key (a block's chunk released first) and report it."""
        if ref is not None:
            try:
                parsed = ChunkRef.from_bytes(ref)
            except ChunkStoreError:
                self.bad_key(key, "block value", ino)
                return

            def fix(b: Batch, k=bytes(key), r=parsed) -> None:
                if b.get(k) is not None:
                    chunkrefs.decref(b, r, 0, self.now)
                    b.delete(k)
        else:
            def fix(b: Batch, k=bytes(key)) -> None:
                b.delete(k)
        self.problem(kind, ino, detail, _STAGE_STALE, fix)

    def scan_keys(self) -> None:
        self._tick("keys", 0, 0, force=True)
        n = 0
        slot, modes = self.slot, self.modes
        for prefix in (b"P", b"L", b"O", b"W", b"X"):
            for key, value in self.meta.scan(prefix):
                n += 1
                if n % _TICK == 0:
                    self._tick("keys", n)
                if (len(key) <= 9) if prefix == b"X" else (len(key) != 9):
                    self.bad_key(key, f"{prefix.decode()} key")
                    continue
                ino = int.from_bytes(key[1:9], "big")
                s = slot.get(ino)
                if s is None:
                    g = self.ghost(ino)
                    if prefix == b"P":
                        g.parent = _le(value)
                    elif prefix == b"L":
                        g.link_len = len(value)
                    elif prefix == b"X":
                        g.xattrs += 1
                    g.keys.append((bytes(key), None, f"{prefix.decode()} key"))
                    continue
                mode = modes[s]
                if prefix == b"P":
                    if not stat.S_ISDIR(mode):
                        self.stale(ino, key, "parent key of a non-directory")
                    elif _le(value) is None or len(value) != 8:
                        self.bad_key(key, "parent key value", ino)
                    else:
                        self.dir_parent_key[ino] = _le(value)
                elif prefix == b"L":
                    if not stat.S_ISLNK(mode):
                        self.stale(ino, key, "symlink target of a non-symlink")
                elif prefix == b"O":
                    self.marks[s] |= _MARK_O
                elif prefix == b"W":
                    if not stat.S_ISREG(mode):
                        self.stale(ino, key, "unflushed mark of a non-regular file")
                    else:
                        self.marks[s] |= _MARK_W
        self._tick("keys", n, n, force=True)

    # ------------------------------------------------------------------ blocks

    def scan_blocks(self) -> None:
        self._tick("blocks", 0, 0, force=True)
        bs = self.bs
        slot, modes, sizes, marks = self.slot, self.modes, self.sizes, self.marks
        counts = self.counts
        good = self.good_codes
        last_ino = -1
        s = None
        is_reg = unflushed = False
        size = 0
        n = 0
        for n, (key, value) in enumerate(self.meta.scan(b"B"), 1):
            if n % _TICK == 0:
                self._tick("blocks", n)
            if len(key) != 17 or len(value) != 4 + REF_SIZE or value[4] != REF_VERSION or (
                    value[25:29] not in good and not self.ref_ok(value[4:])):
                self.bad_key(key, "block map entry")
                continue
            ck = value[5:5 + KEY_SIZE]
            counts[ck] = counts.get(ck, 0) + 1
            ino = int.from_bytes(key[1:9], "big")
            if ino != last_ino:
                last_ino = ino
                s = slot.get(ino)
                if s is not None:
                    is_reg = stat.S_ISREG(modes[s])
                    unflushed = bool(marks[s] & _MARK_W)
                    size = sizes[s]
            index = int.from_bytes(key[9:], "big")
            if s is None:
                g = self.ghost(ino)
                g.blocks += 1
                g.end = max(g.end, index * bs + int.from_bytes(value[:4], "little"))
                g.keys.append((bytes(key), bytes(value[4:]), "block"))
            elif not is_reg:
                self.stale(ino, key, f"block {index} of a non-regular file", value[4:])
            elif index * bs >= size and not unflushed:
                self.stale(ino, key, f"block {index} at or past the end of file ({size} "
                           "bytes)", value[4:], kind=BLOCK_BEYOND_EOF)
        self.nblocks = n
        self._tick("blocks", n, n, force=True)

    # ------------------------------------------------------------------ refcounts, chunks

    def scan_refcounts(self) -> None:
        self._tick("refcounts", 0, len(self.counts), force=True)
        queued: set[bytes] = set()
        for key, _ in self.meta.scan(b"G"):
            if len(key) != 9 + KEY_SIZE:
                self.bad_key(key, "collector queue entry")
            else:
                queued.add(bytes(key[9:]))
        counts = self.counts
        self.nchunks = len(counts)
        n = 0
        for n, (key, value) in enumerate(self.meta.scan(b"R"), 1):
            if n % _TICK == 0:
                self._tick("refcounts", n, self.nchunks)
            ck = bytes(key[1:])
            if (len(key) != 1 + KEY_SIZE or len(value) != 8 + REF_SIZE
                    or value[9:9 + KEY_SIZE] != ck or not self.ref_ok(value[8:])):
                self.bad_key(key, "refcount")  # recounted below if blocks name the chunk
                continue
            count = int.from_bytes(value[:8], "little")
            counted = counts.pop(ck, 0)
            if counted and self.probe is not None:
                self.check_chunk(ck, value[8:])
            if count != counted:
                self.problem(REFCOUNT_MISMATCH, None, f"chunk {ck.hex()}: refcount {count}, "
                             f"{counted} block(s) name it", _STAGE_REFS,
                             self.set_refcount_fix(ck, counted, bytes(value[8:])))
            elif count == 0 and ck not in queued:
                self.problem(ZERO_REFCOUNT_NOT_QUEUED, None, f"chunk {ck.hex()}: refcount 0 "
                             "and not queued for the collector", _STAGE_REFS,
                             lambda b, ck=ck: b.put(schema.gc_key(self.now, ck), b""))
        if counts:  # chunks named by blocks without a (readable) refcount: find their refs
            refs: dict[bytes, bytes] = {}
            for _, value in self.meta.scan(b"B"):
                ck = value[5:5 + KEY_SIZE]
                if ck in counts and ck not in refs and self.ref_ok(value[4:]):
                    refs[ck] = bytes(value[4:])
            for ck, counted in counts.items():
                ref = refs[ck]
                if self.probe is not None:
                    self.check_chunk(ck, ref)
                self.problem(REFCOUNT_MISSING, None, f"chunk {ck.hex()}: no refcount, "
                             f"{counted} block(s) name it", _STAGE_REFS,
                             self.set_refcount_fix(ck, counted, ref))
        self.counts = {}
        self._tick("refcounts", n, n, force=True)

    def set_refcount_fix(self, ck: bytes, count: int, ref: bytes) -> Fix:
        def fix(b: Batch) -> None:
            b.put(schema.refcount_key(ck), schema.refcount_value(count, ref))
            if count == 0:
                b.put(schema.gc_key(self.now, ck), b"")
        return fix

    def check_chunk(self, ck: bytes, ref: bytes) -> None:
        why = self.probe.missing(ref)
        if why is not None:
            self.problem(MISSING_CHUNK, None, f"chunk {ck.hex()}: {why}")

    # ------------------------------------------------------------------ directory entries

    def grouped(self, prefix: bytes) -> Iterator[tuple[bytes, list[tuple[bytes, bytes]]]]:
        """(parent u64 bytes, its items) for the D or E keys, one directory at a time."""
        group: bytes | None = None
        items: list[tuple[bytes, bytes]] = []
        for key, value in self.meta.scan(prefix):
            if len(key) < 10 or (prefix == b"E" and len(key) != 17):
                self.bad_key(key, "directory entry key")
                continue
            pk = key[1:9]
            if pk != group:
                if items:
                    yield group, items
                group, items = pk, []
            items.append((key, value))
        if items:
            yield group, items

    def directories(self) -> Iterator[tuple[int, list, list]]:
        """The D and E items of each directory (merged walk of the two scans)."""
        dg, eg = self.grouped(b"D"), self.grouped(b"E")
        d, e = next(dg, None), next(eg, None)
        while d is not None or e is not None:
            if e is None or (d is not None and d[0] < e[0]):
                yield int.from_bytes(d[0], "big"), d[1], []
                d = next(dg, None)
            elif d is None or e[0] < d[0]:
                yield int.from_bytes(e[0], "big"), [], e[1]
                e = next(eg, None)
            else:
                yield int.from_bytes(d[0], "big"), d[1], e[1]
                d, e = next(dg, None), next(eg, None)

    def scan_entries(self) -> None:
        self._tick("entries", 0, 0, force=True)
        n = 0
        next_tick = _TICK
        for parent, ditems, eitems in self.directories():
            n += len(ditems)
            if n >= next_tick:
                self._tick("entries", n, force=True)
                next_tick = n + _TICK
            entries = self.match_twins(parent, ditems, eitems)
            ps = self.slot.get(parent)
            if ps is not None and self.is_dir(ps):
                for e in entries:
                    self.count_entry(e, ps, final=False)
            else:
                self.homeless.setdefault(parent, []).extend(entries)
        self._tick("entries", n, n, force=True)
        self.next_ino = max(self.sb_next_ino or 0, self.max_ino + 1)
        self.next_cookie = max(self.sb_next_cookie or 0, self.max_cookie + 1, _FIRST_COOKIE)

    def match_twins(self, parent: int, ditems: list, eitems: list) -> list[_Entry]:
        """The names of one directory; reports and plans fixes for D/E keys that disagree."""
        dmap: dict[bytes, tuple[int, int]] = {}
        max_cookie = self.max_cookie
        for key, value in ditems:
            if len(value) != 16:
                self.bad_key(key, "directory entry", parent)
                continue
            child, cookie = schema.parse_dentry_value(value)
            dmap[bytes(key[9:])] = (child, cookie)
            if cookie > max_cookie:
                max_cookie = cookie
        emap: dict[int, tuple[int, bytes]] = {}
        for key, value in eitems:
            if len(value) < 9:
                self.bad_key(key, "readdir entry", parent)
                continue
            cookie = schema.parse_readdir_key(key)
            emap[cookie] = schema.parse_readdir_value(value)
            if cookie > max_cookie:
                max_cookie = cookie
        self.max_cookie = max_cookie
        out = []
        for name, (child, cookie) in dmap.items():
            if cookie >= _FIRST_COOKIE and emap.get(cookie) == (child, name):
                out.append(_Entry(parent, name, child, cookie, _OK))
                continue
            e = _Entry(parent, name, child, cookie, _NEW_E)
            out.append(e)
            self.problem(ENTRY_WITHOUT_COOKIE, child, f"entry {_shown(name)} in directory "
                         f"{parent} has no readdir twin: one is made", _STAGE_ENTRIES,
                         lambda b, e=e: self.fix_twins(b, e))
        made: set[bytes] = set()
        for cookie, (child, name) in emap.items():
            d = dmap.get(name)
            if cookie >= _FIRST_COOKIE and d == (child, cookie):
                continue
            where = f"readdir entry {_shown(name)} (cookie {cookie}) in directory {parent}"
            if d is not None or name in made or not _valid_name(name):
                self.problem(COOKIE_WITHOUT_ENTRY, child, f"{where} duplicates or lacks a name "
                             "entry: removed", _STAGE_ENTRIES,
                             lambda b, k=schema.readdir_key(parent, cookie): b.delete(k))
                continue
            made.add(name)
            e = _Entry(parent, name, child, cookie,
                       _NEW_D if cookie >= _FIRST_COOKIE else _MOVE_E)
            out.append(e)
            self.problem(COOKIE_WITHOUT_ENTRY, child, f"{where} has no name entry: one is made",
                         _STAGE_ENTRIES, lambda b, e=e: self.fix_twins(b, e))
        return out

    def fix_twins(self, b: Batch, e: _Entry) -> None:
        if (e.parent, e.name) in self.removed:
            return  # the whole entry goes
        if e.fix == _NEW_D:
            b.put(schema.dentry_key(e.parent, e.name), schema.dentry_value(e.child, e.cookie))
            return
        if e.fix == _MOVE_E:
            b.delete(schema.readdir_key(e.parent, e.cookie))
        cookie = self.new_cookie[(e.parent, e.name)]
        b.put(schema.dentry_key(e.parent, e.name), schema.dentry_value(e.child, cookie))
        b.put(schema.readdir_key(e.parent, cookie), schema.readdir_value(e.child, e.name))

    def count_entry(self, e: _Entry, ps: int, final: bool) -> None:
        """Count a name in a valid directory (``ps``); a name of an inode without a record
        waits for :meth:`plan_namespace` (``final=False``) or goes (``final=True``)."""
        s = self.slot.get(e.child)
        if s is None:
            if final:
                self.remove_entry(e, DANGLING_ENTRY, f"entry {_shown(e.name)} in directory "
                                  f"{e.parent} names inode {e.child}, which does not exist")
            else:
                self.deferred.append(e)
            return
        self.names[s] += 1
        if e.fix in (_NEW_E, _MOVE_E):
            self.new_cookie[(e.parent, e.name)] = 0  # allocated once all cookies are known
        if stat.S_ISDIR(self.modes[s]):
            self.subdirs[ps] += 1
            had = self.dir_names.get(e.child)
            if had is None:
                self.dir_names[e.child] = e
            elif isinstance(had, list):
                had.append(e)
            else:
                self.dir_names[e.child] = [had, e]

    def remove_entry(self, e: _Entry, kind: str, detail: str, counted: bool = False) -> None:
        """Plan removing both keys of an entry; ``counted``: it was counted as a name."""
        self.removed.add((e.parent, e.name))
        if counted:
            s = self.slot[e.child]
            self.adjust(s, names=-1)
            if self.is_dir(s):
                self.adjust(self.slot[e.parent], subdirs=-1)

        def fix(b: Batch) -> None:
            if e.fix in (_OK, _NEW_E):
                b.delete(schema.dentry_key(e.parent, e.name))
            if e.fix in (_OK, _NEW_D, _MOVE_E):
                b.delete(schema.readdir_key(e.parent, e.cookie))

        self.problem(kind, e.child, detail + ": removed", _STAGE_ENTRIES, fix)

    # ------------------------------------------------------------------ namespace plan

    def plan_namespace(self) -> None:
        self._tick("namespace", 0, 0, force=True)
        self.plan_rebuilds()
        for parent, entries in self.homeless.items():
            ps = self.slot.get(parent)
            if ps is not None and self.is_dir(ps):
                for e in entries:
                    self.count_entry(e, ps, final=True)
                continue
            why = "does not exist" if ps is None else "is not a directory"
            for e in entries:
                self.remove_entry(e, DANGLING_ENTRY, f"entry {_shown(e.name)} in inode "
                                  f"{parent}, which {why}")
        for e in self.deferred:
            self.count_entry(e, self.slot[e.parent], final=True)
        self.deferred = []
        self.homeless = {}
        for (parent, name) in [k for k, v in self.new_cookie.items() if not v]:
            if (parent, name) not in self.removed:
                self.new_cookie[(parent, name)] = self.alloc_cookie()
        orphans, moved = self.plan_directories()
        orphans += self.plan_files()
        if orphans or moved:
            self.plan_lost_found(orphans, moved)
        self.plan_nlinks()
        self._tick("namespace", 1, 1, force=True)

    def plan_rebuilds(self) -> None:
        """Rebuild the records of named inodes that left data; the other keys of inodes
        without a record are stale."""
        named = {e.child for e in self.deferred}
        named.update(e.child for es in self.homeless.values() for e in es)
        if ROOT_INO not in self.slot:
            named.add(ROOT_INO)
        for ino, g in list(self.ghosts.items()) + [(i, None) for i in named
                                                   if i not in self.ghosts]:
            if ino in self.slot:
                continue
            children = ino in self.homeless
            evidence = g is not None and (g.bad_record or g.blocks or g.link_len is not None
                                          or g.xattrs or g.parent is not None)
            if ino in named and (evidence or children) or ino == ROOT_INO:
                self.rebuild(ino, g or _Ghost(), children)
            elif g is not None:
                for key, ref, what in g.keys:
                    self.stale(ino, key, f"{what} of inode {ino}, which does not exist", ref)

    def rebuild(self, ino: int, g: _Ghost, children: bool) -> None:
        if children or g.parent is not None or ino == ROOT_INO:
            mode, size, what = stat.S_IFDIR | 0o755, 0, "a directory"
        elif g.link_len is not None:
            mode, size, what = stat.S_IFLNK | 0o777, g.link_len, "a symlink"
        else:
            mode, size, what = stat.S_IFREG | 0o644, g.end, f"a file of {g.end} bytes"
        self.add_slot(ino, mode, 0, size, _MARK_NEW)
        if ino > self.max_ino:
            self.max_ino = ino
            self.next_ino = max(self.next_ino, ino + 1)
        if stat.S_ISDIR(mode) and g.parent is not None:
            self.dir_parent_key[ino] = g.parent
        for key, ref, part in g.keys:
            kind = key[:1]
            keep = (kind == b"X" or (kind == b"B" and stat.S_ISREG(mode))
                    or (kind == b"L" and stat.S_ISLNK(mode))
                    or (kind == b"P" and stat.S_ISDIR(mode)))
            if not keep:
                self.stale(ino, key, f"{part} of rebuilt inode {ino} ({what})", ref)
        cause = "its record is unreadable" if g.bad_record else "it has no record"
        self.problem(MISSING_INODE, ino, f"inode {ino} is named but {cause}: rebuilt as {what} "
                     "(mode, owner and times reset)", _STAGE_INODES,
                     lambda b: self.write_new_inode(b, ino, mode, size))

    def write_new_inode(self, b: Batch, ino: int, mode: int, size: int) -> None:
        s = self.slot[ino]
        nlink = 2 + self.subdirs[s] if stat.S_ISDIR(mode) else self.names[s]
        b.put(schema.inode_key(ino), Inode(ino, mode, nlink=nlink, size=size, atime_ns=self.now,
                                           mtime_ns=self.now, ctime_ns=self.now).pack())

    def plan_directories(self) -> tuple[list[int], list[int]]:
        """One name per directory, matching its P key, no cycles; returns the orphans and the
        directories cut out of cycles (both go to lost+found)."""
        orphans: list[int] = []
        parent_of: dict[int, int] = {}
        for ino in self.dirs:
            s = self.slot[ino]
            names = self.names_of(ino)
            if ino == ROOT_INO:
                for e in names:
                    self.remove_entry(e, DIRECTORY_HARD_LINK, f"entry {_shown(e.name)} in "
                                      f"directory {e.parent} names the root", counted=True)
                pk = self.dir_parent_key.get(ino)
                if pk is not None and pk != ROOT_INO:
                    self.problem(WRONG_PARENT, ino, f"the root's parent key names {pk}",
                                 _STAGE_LINKS, lambda b: b.delete(schema.parent_key(ROOT_INO)))
                continue
            if not names:
                if self.marks[s] & _MARK_O:
                    self.pending_orphan(ino)
                else:
                    orphans.append(ino)
                continue
            pk = self.dir_parent_key.get(ino)
            keep = next((e for e in names if e.parent == pk), names[0])
            for e in names:
                if e is not keep:
                    self.remove_entry(e, DIRECTORY_HARD_LINK, f"directory {ino} also named "
                                      f"{_shown(e.name)} in directory {e.parent}", counted=True)
            parent_of[ino] = keep.parent
            if self.marks[s] & _MARK_O:
                self.stale_orphan_mark(ino)
        moved = self.break_cycles(parent_of)
        for ino, parent in parent_of.items():
            if ino in moved:
                continue
            pk = self.dir_parent_key.get(ino)
            if pk != parent:
                self.problem(WRONG_PARENT, ino, f"directory {ino} is in directory {parent}, its "
                             f"parent key says {pk}", _STAGE_LINKS,
                             lambda b, i=ino, p=parent: b.put(schema.parent_key(i),
                                                              schema.le_u64(p)))
        return orphans, moved

    def names_of(self, ino: int) -> list[_Entry]:
        had = self.dir_names.get(ino)
        return [] if had is None else had if isinstance(had, list) else [had]

    def break_cycles(self, parent_of: dict[int, int]) -> list[int]:
        """Directories whose parents lead in a circle never reach the root: cut each circle
        at its lowest inode, which goes to lost+found."""
        moved: list[int] = []
        rooted: set[int] = {ROOT_INO}
        for start in parent_of:
            path: list[int] = []
            on_path: set[int] = set()
            x = start
            while x not in rooted:
                if x in on_path:
                    circle = path[path.index(x):]
                    victim = min(circle)
                    keep = next(e for e in self.names_of(victim) if e.parent == parent_of[victim]
                                and (e.parent, e.name) not in self.removed)
                    self.remove_entry(keep, ORPHAN_INODE, f"directory {victim} is in a cycle of "
                                      f"{len(circle)} directories cut off from the root; its "
                                      f"entry {_shown(keep.name)} in {keep.parent} is moved to "
                                      "lost+found", counted=True)
                    moved.append(victim)
                    break
                path.append(x)
                on_path.add(x)
                nxt = parent_of.get(x)
                if nxt is None:  # an orphan or the root: reaches the root after the repair
                    break
                x = nxt
            rooted.update(path)
        return moved

    def plan_files(self) -> list[int]:
        orphans: list[int] = []
        names, marks, modes = self.names, self.marks, self.modes
        for s, ino in enumerate(self.inos):
            if stat.S_ISDIR(modes[s]):
                continue
            if names[s] == 0:
                if marks[s] & _MARK_O:
                    self.pending_orphan(ino)
                else:
                    orphans.append(ino)
            elif marks[s] & _MARK_O:
                self.stale_orphan_mark(ino)
        return orphans

    def pending_orphan(self, ino: int) -> None:
        self.open_orphans.append(ino)
        self.problem(ORPHAN_INODE, ino, f"inode {ino} was unlinked while open: the next mount "
                     "frees it")

    def stale_orphan_mark(self, ino: int) -> None:
        self.problem(STALE_KEY, ino, f"inode {ino} is marked unlinked-while-open but has a "
                     "name (the next mount would free it)", _STAGE_LINKS,
                     lambda b: b.delete(schema.orphan_key(ino)))

    def plan_lost_found(self, orphans: list[int], moved: list[int]) -> None:
        root = self.slot[ROOT_INO]
        lf = None
        value = self.meta.get(schema.dentry_key(ROOT_INO, LOST_FOUND))
        if value is not None and len(value) == 16 and (ROOT_INO, LOST_FOUND) not in self.removed:
            child = schema.parse_dentry_value(value)[0]
            cs = self.slot.get(child)
            if cs is not None and self.is_dir(cs) and child not in orphans + moved:
                lf = child
        if lf is None:
            name = LOST_FOUND
            n = 0
            while self.meta.get(schema.dentry_key(ROOT_INO, name)) is not None:
                n += 1
                name = LOST_FOUND + b".%d" % n
            lf = self.alloc_ino()
            lfs = self.add_slot(lf, stat.S_IFDIR | 0o700, 0, 0, _MARK_NEW)
            self.adjust(root, subdirs=1)
            cookie = self.alloc_cookie()

            def create(b: Batch, lf=lf, name=name, cookie=cookie) -> None:
                b.put(schema.inode_key(lf), Inode(lf, stat.S_IFDIR | 0o700, nlink=2
                                                  + self.subdirs[lfs], atime_ns=self.now,
                                                  mtime_ns=self.now, ctime_ns=self.now).pack())
                b.put(schema.parent_key(lf), schema.le_u64(ROOT_INO))
                b.put(schema.dentry_key(ROOT_INO, name), schema.dentry_value(lf, cookie))
                b.put(schema.readdir_key(ROOT_INO, cookie), schema.readdir_value(lf, name))

            self.silent(_STAGE_INODES, create)
        self.lost_found = lf
        lfs = self.slot[lf]
        cut = set(moved)
        for ino in orphans + moved:
            s = self.slot[ino]
            name = b"#%d" % ino
            n = 0
            while self.meta.get(schema.dentry_key(lf, name)) is not None:
                n += 1
                name = b"#%d.%d" % (ino, n)
            cookie = self.alloc_cookie()
            is_dir = self.is_dir(s)
            self.adjust(s, names=1)
            if is_dir:
                self.adjust(lfs, subdirs=1)

            def link(b: Batch, ino=ino, name=name, cookie=cookie, is_dir=is_dir) -> None:
                b.put(schema.dentry_key(lf, name), schema.dentry_value(ino, cookie))
                b.put(schema.readdir_key(lf, cookie), schema.readdir_value(ino, name))
                if is_dir:
                    b.put(schema.parent_key(ino), schema.le_u64(lf))

            if ino in cut:  # reported when its entry in the cycle was planned away
                self.silent(_STAGE_LINKS, link)
            else:
                self.problem(ORPHAN_INODE, ino, f"inode {ino} has no name: linked into "
                             f"lost+found as {_shown(name)}", _STAGE_LINKS, link)

    def plan_nlinks(self) -> None:
        marks, nlinks, modes = self.marks, self.nlinks, self.modes
        names, subdirs, delta = self.names, self.subdirs, self.delta
        pending = set(self.open_orphans)
        for s, ino in enumerate(self.inos):
            if marks[s] & _MARK_NEW or ino in pending:
                continue
            want = 2 + subdirs[s] if stat.S_ISDIR(modes[s]) else names[s]
            have = nlinks[s]
            if have == want:
                continue
            fix = self.nlink_fix(ino, want)
            before = want - delta.get(s, 0)
            if have != before:
                self.problem(WRONG_NLINK, ino, f"inode {ino} has link count {have}, counted "
                             f"{before}" + (f" ({want} after the repair)" if want != before
                                            else ""), _STAGE_NLINK, fix)
            else:  # only the other repairs change it
                self.silent(_STAGE_NLINK, fix)

    def nlink_fix(self, ino: int, want: int) -> Fix:
        def fix(b: Batch) -> None:
            value = b.get(schema.inode_key(ino))
            if value is None:
                return
            node = Inode.unpack(ino, value)
            node.nlink = want
            b.put(schema.inode_key(ino), node.pack())
        return fix


def check_volume(data_dir, name: str, store: ChunkStore | None = None, *, repair: bool = False,
                 progress: Progress | None = None) -> FsckReport:
    """:func:`check` of the volume ``name`` under ``data_dir`` (unmounted: VolumeError if its
    metadata is in use)."""
    from .volume import load_volume, volume_dir

    config = load_volume(data_dir, name)
    meta = MetaStore(volume_dir(data_dir, name) / "meta")
    try:
        return check(meta, store, block_size=config.block_size, repair=repair,
                     progress=progress)
    finally:
        meta.close()
