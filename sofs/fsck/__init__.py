"""The filesystem checker: proves a volume's metadata consistent, and repairs what is not.

:func:`check` reads one volume's metadata (:mod:`sofs.schema`) with one scan per key prefix and
checks it against itself and, when given a chunk store, against the stored chunks (and, by
:func:`check_volume` on a RING, looks for the volume's chunks that nothing references). The volume must
not be in use: the caller opens its :class:`~sofs.metadata.MetaStore` exclusively (a mounted
volume holds the lock, so opening it fails rather than racing a live filesystem).

The package, by job: :mod:`.scan` reads the metadata into the working state (:mod:`.state`:
inode attributes in ``array`` columns, so memory stays compact); :mod:`.refcounts` checks the
chunk counts and the collector queue; :mod:`.chunks` asks the chunk store whether referenced
chunks exist (and finds leaked ones); :mod:`.namespace` plans what is wrong with the tree and
what repair would do; :mod:`.leaks` finds the volume's unreferenced chunks on the RING;
:mod:`.repair` applies that plan; :mod:`.report` holds the records
handed back; :mod:`.checker` runs the phases in order.

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
``unreferenced-chunk``      with a RING (offline checks only): a chunk of this volume (its payload
                            carries the volume id) with pieces on the disks that no block,
                            refcount, snapshot or metadata checkpoint of the volume names
                            (:mod:`.leaks`): a zero refcount and a collector queue entry due one
                            grace period later; the collector deletes it then if still
                            unreferenced and unpinned. Never deleted here. A listing that fails
                            raises ReferencesUnknown before any repair.
==========================  ========================================================================

After a repair a second check is clean, except for ``missing-chunk`` (data that is gone stays
reported) and the ``O`` orphans (which :attr:`FsckReport.clean` does not count as problems: the
next mount frees them). Every repair is staged in metadata WriteBatches committed with
``sync=True``; referenced chunks are never deleted: released ones go through the collector.

Progress phases (``progress(phase, done, total_or_0)``): ``superblock``, ``inodes``, ``keys``,
``blocks``, ``refcounts``, ``unreferenced`` (with a RING), ``entries``, ``namespace``, ``repair``.

:func:`unreferenced_chunks` lists chunks stored on a LocalRing's disks that no volume references
(leaked by a crash between storing a chunk and committing its reference).
"""

from .checker import check, check_volume
from .chunks import ChunkProbe, unreferenced_chunks
from .leaks import LeakSearch, find_unreferenced
from .report import (
    BAD_RECORD,
    BLOCK_BEYOND_EOF,
    COOKIE_WITHOUT_ENTRY,
    DANGLING_ENTRY,
    DIRECTORY_HARD_LINK,
    ENTRY_WITHOUT_COOKIE,
    KINDS,
    MISSING_CHUNK,
    MISSING_INODE,
    ORPHAN_INODE,
    REFCOUNT_MISMATCH,
    REFCOUNT_MISSING,
    STALE_KEY,
    SUPERBLOCK,
    UNREFERENCED_CHUNK,
    WRONG_NLINK,
    WRONG_PARENT,
    ZERO_REFCOUNT_NOT_QUEUED,
    FsckReport,
    Problem,
    Progress,
)
from .state import LOST_FOUND

__all__ = [
    "check", "check_volume", "unreferenced_chunks", "ChunkProbe", "FsckReport", "Problem",
    "Progress", "KINDS", "LOST_FOUND", "SUPERBLOCK", "BAD_RECORD", "MISSING_INODE",
    "DANGLING_ENTRY", "ENTRY_WITHOUT_COOKIE", "COOKIE_WITHOUT_ENTRY", "DIRECTORY_HARD_LINK",
    "WRONG_PARENT", "ORPHAN_INODE", "WRONG_NLINK", "STALE_KEY", "BLOCK_BEYOND_EOF",
    "REFCOUNT_MISMATCH", "REFCOUNT_MISSING", "ZERO_REFCOUNT_NOT_QUEUED", "MISSING_CHUNK",
    "UNREFERENCED_CHUNK", "LeakSearch", "find_unreferenced",
]
