"""The volume's metadata database (the "MESA" role): a thin layer over one rocksdict.

:class:`MetaStore` opens the database in raw-bytes mode and offers point reads, prefix scans and
atomic batches. :class:`Batch` collects the puts and deletes of one filesystem operation and lets
the operation read its own writes (two refcount changes of one chunk in a single operation must
add up). Committing a batch is one rocksdb WriteBatch: all of an operation lands, or none of it.
Key layout: :mod:`sofs.schema`.

Durability: a plain commit goes to rocksdb's write-ahead log in the page cache, which survives a
kill -9 of the process but not a power cut. :meth:`MetaStore.make_durable` forces the log to
stable storage, group-committed: every commit is numbered when its write returns; the first
caller that finds no log sync running becomes the leader, notes the highest number written,
runs one ``flush_wal(sync=True)`` (an fdatasync of the log) for everyone and publishes "synced
up to N"; callers whose commits are at or below N just return, the others wait for the next
round. So many concurrent closes share one sync (see :attr:`MetaStore.wal_syncs`). It blocks:
call it from a worker thread, never from the FUSE event loop. ``commit(sync=True)`` writes one
batch with a synced write (for rare commits made in a worker thread already).

Journal (issue 13): a mount that holds its volume's write lease attaches the volume's journal
in the RING (:meth:`MetaStore.attach_journal`, :mod:`sofs.journal`). Each commit's writes are
then also queued, in commit order, and the leader of a :meth:`make_durable` round appends
everything queued as one group (final values) after its log sync and before anyone's answer:
"durable" then means on this host's stable storage *and* in the RING. A group the RING did not
take goes back to the head of the queue (the callers get the error; the next round retries
it), so the journal never skips a commit that a later one depends on.
"""

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import rocksdict

from chunkstore.atomicfile import fsync_dir

from .errors import JournalError, MetadataDamaged, VolumeError, VolumeFenced
from .journal import Writes, merge


class Batch:
    """The writes of one operation, readable before they are committed."""

    def __init__(self, store: "MetaStore") -> None:
        self._store = store
        self._writes: dict[bytes, bytes | None] = {}  # None: deleted in this batch

    def get(self, key: bytes) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        return self._store.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._writes[key] = value

    def delete(self, key: bytes) -> None:
        self._writes[key] = None

    def __len__(self) -> int:
        return len(self._writes)

    def items(self) -> Iterator[tuple[bytes, bytes | None]]:
        return iter(self._writes.items())


class MetaStore:
    """One volume's rocksdict; a second process opening it gets :class:`VolumeError`."""

    def __init__(self, path: Path, *, view_dir: Path | None = None) -> None:
        """Open the volume's database at ``path``. With ``view_dir`` (a scratch directory of
        the caller's), open a read-only view instead, beside the process that has it open (a
        RocksDB secondary instance, caught up with that process's log once): see
        :meth:`open_view`."""
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(view_dir is None)
        opts.set_max_background_jobs(2)
        # Point lookups (names, inodes, block maps) dominate: bloom filters skip SST files
        # that cannot hold a key, and a 64 MiB block cache keeps hot directories in memory,
        # so a lookup costs the same in a directory of 1,000 or 100,000 entries.
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(10, False)
        table.set_block_cache(rocksdict.Cache(64 << 20))
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        opts.set_block_based_table_factory(table)
        self.path = Path(path)
        self.read_only = view_dir is not None
        try:
            if view_dir is None:
                self._db = rocksdict.Rdict(str(path), options=opts)
                # rocksdb syncs the files it makes in the directory, never the directory's
                # own name: a database created now (at a volume's first mount) must not
                # vanish in a power cut with everything committed to it
                fsync_dir(self.path.parent)
            else:
                opts.set_max_open_files(-1)  # a secondary instance needs every file open
                self._db = rocksdict.Rdict(
                    str(path), options=opts,
                    access_type=rocksdict.AccessType.secondary(str(view_dir)))
                self._db.try_catch_up_with_primary()
        except Exception as e:  # rocksdict raises plain Exception for a held LOCK
            if "lock" in str(e).lower():
                raise VolumeError(f"{path}: the volume is in use by another process "
                                  "(is it mounted?)") from e
            raise VolumeError(f"{path}: cannot open metadata: {e}") from e
        self._sync = rocksdict.WriteOptions()
        self._sync.sync = True
        self._nosync = rocksdict.WriteOptions()
        self.fenced: str | None = None  # why no change may be committed any more
        # the group commit of the log (module docstring): commits numbered as their writes
        # return; of those, all up to _synced are on stable storage
        self._log_cv = threading.Condition()
        self._written = 0
        self._synced = 0
        self._syncing = False
        self.wal_syncs = 0  # log syncs run by make_durable (one per group)
        # the journal in the RING (module docstring): append(group) and the commits queued
        self._journal: Callable[[Writes, tuple[int, int]], int] | None = None
        # (commit number, its writes), in commit order
        self._queued: list[tuple[int, list[tuple[bytes, bytes | None]]]] = []
        self._order = threading.Lock()  # commit order = queue order while journaling
        self._quiet = False  # quiesced(): no journal round may start
        self.journal_groups = 0

    def attach_journal(self, append: Callable[[Writes, tuple[int, int]], int]) -> None:
        """From now on, every commit is also appended to the journal by :meth:`make_durable`
        (``append`` writes one group). Attach before the first commit to be journaled."""
        with self._order, self._log_cv:
            self._journal = append

    @contextlib.contextmanager
    def quiesced(self) -> Iterator[None]:
        """Inside: no commit is being made and no journal append is in flight (new ones wait).
        A checkpoint takes its snapshot and reads the journal's position here, so that every
        commit in the snapshot is either in the entries before that position or still queued
        (and will be the start of the entries from it): replaying from the position then only
        re-applies a contiguous run of commits the snapshot already holds, before the newer
        ones, which ends in the right state (:mod:`sofs.journal`)."""
        with self._order:
            with self._log_cv:
                self._quiet = True
                while self._syncing:
                    self._log_cv.wait()
            try:
                yield
            finally:
                with self._log_cv:
                    self._quiet = False
                    self._log_cv.notify_all()

    @property
    def journal_queued(self) -> int:
        """Commits written here but not yet in the journal."""
        with self._log_cv:
            return len(self._queued)

    def fence(self, reason: str) -> None:
        """From now on refuse every change (VolumeFenced): another copy of the volume is the
        reference (sofs.metacheckpoint)."""
        self.fenced = reason

    def unfence(self) -> None:
        self.fenced = None

    def _damaged(self, e: Exception) -> MetadataDamaged:
        return MetadataDamaged(f"{self.path}: the metadata database failed ({e}); the volume "
                               "needs a restore from its checkpoint (sofsctl volume restore)")

    def get(self, key: bytes) -> bytes | None:
        try:
            return self._db.get(key)
        except Exception as e:  # rocksdict raises plain Exception for Corruption / IO error
            raise self._damaged(e) from e

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with ``prefix``, in key order, from ``start`` (inclusive)."""
        try:
            it = self._db.iter()
            it.seek(start if start is not None else prefix)
            while it.valid():
                key = it.key()
                if not key.startswith(prefix):
                    break
                value = it.value()
                yield key, value
                it.next()
            it.status()
        except Exception as e:
            raise self._damaged(e) from e

    def has_prefix(self, prefix: bytes) -> bool:
        for _ in self.scan(prefix):
            return True
        return False

    def batch(self) -> Batch:
        return Batch(self)

    @classmethod
    def open_view(cls, path: Path, view_dir: Path) -> "MetaStore":
        """A read-only view of metadata a mount process has open: what it had written when
        the view was opened (not what it still buffers in memory). Every commit is refused."""
        view_dir.mkdir(parents=True, exist_ok=True)
        view = cls(path, view_dir=view_dir)
        view.fence("a read-only view of metadata another process has open")
        return view

    def commit(self, batch: Batch, sync: bool = False) -> int:
        """Write ``batch`` atomically; returns its number in the log (for
        :meth:`make_durable`; an empty batch returns the number of the last commit). With
        ``sync``, return only once the log is on stable storage (an empty batch then syncs
        what was written before)."""
        if self.fenced is not None and len(batch):
            raise VolumeFenced(f"the volume is read-only here: {self.fenced}")
        if not len(batch):
            if sync:
                self.make_durable()
            return self.written
        if self._journal is None:
            return self._write(batch, sync)
        with self._order:  # the queue holds the commits in the order rocksdb applied them
            number = self._write(batch, sync, queue=True)
        if sync:
            self.make_durable(number)
        return number

    def _write(self, batch: Batch, sync: bool, queue: bool = False) -> int:
        wb = rocksdict.WriteBatch(raw_mode=True)
        for key, value in batch.items():
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        try:
            self._db.write(wb, self._sync if sync else self._nosync)
        except Exception as e:
            raise self._damaged(e) from e
        with self._log_cv:  # counted only once written: a sync started later covers it
            self._written += 1
            if queue:
                self._queued.append((self._written, list(batch.items())))
            return self._written

    def apply(self, writes: Writes) -> None:
        """Write final values (None: delete) as one atomic batch, synced: a journal group
        being replayed into a restored copy (:func:`sofs.journal.replay`)."""
        b = self.batch()
        for key, value in writes.items():
            if value is None:
                b.delete(key)
            else:
                b.put(key, value)
        if len(b):
            self._write(b, sync=True)

    @property
    def written(self) -> int:
        """The number of the last commit written to the log."""
        with self._log_cv:
            return self._written

    def is_durable(self, upto: int) -> bool:
        """Whether every commit up to number ``upto`` is on stable storage (cheap: no I/O)."""
        with self._log_cv:
            return self._synced >= upto

    def make_durable(self, upto: int | None = None) -> None:
        """Return once every commit up to number ``upto`` (default: every commit written so
        far) is on stable storage, sharing one log sync with concurrent callers (module
        docstring). Blocking: call it from a worker thread."""
        with self._log_cv:
            target = self._written if upto is None else upto
            while self._synced < target:
                if self._syncing or self._quiet:
                    self._log_cv.wait()
                    continue
                self._syncing = True  # the leader of this round
                goal = self._written
                group, self._queued = self._queued, []
                journal = self._journal
                synced = False
                self._log_cv.release()
                try:
                    if group and journal is not None:
                        self._sync_and_append(journal, group)
                    else:
                        self._sync_log()
                    synced = True
                finally:
                    self._log_cv.acquire()
                    self._syncing = False
                    if synced:
                        self.wal_syncs += 1
                        self._synced = max(self._synced, goal)
                    else:  # not in the journal: first in the next round, in order
                        self._queued[:0] = group
                    self._log_cv.notify_all()

    def _sync_log(self) -> None:
        try:
            self._db.flush_wal(True)
        except Exception as e:
            raise self._damaged(e) from e

    def _sync_and_append(self, journal: Callable[[Writes, tuple[int, int]], int],
                         group: list[tuple[int, list[tuple[bytes, bytes | None]]]]) -> None:
        """The log sync and the journal append at the same time: they do not depend on each
        other (a crash between the two loses only what nobody was told is durable), and the
        answer waits for the slower of the two, not for both in turn."""
        failed: list[BaseException] = []

        def sync() -> None:
            try:
                self._sync_log()
            except BaseException as e:  # handed to the caller below
                failed.append(e)

        syncer = threading.Thread(target=sync, name="wal-sync", daemon=True)
        syncer.start()
        try:
            self._append(journal, group)
        finally:
            syncer.join()
        if failed:
            raise failed[0]

    def _append(self, journal: Callable[[Writes, tuple[int, int]], int],
                group: list[tuple[int, list[tuple[bytes, bytes | None]]]]) -> None:
        try:
            journal(merge(items for _, items in group), (group[0][0], group[-1][0]))
        except VolumeFenced as e:  # the nodes hold a newer lease's token: never again
            self.fence(str(e))
            raise
        except JournalError:
            raise
        self.journal_groups += 1

    def checkpoint(self, path: Path) -> None:
        """Write a consistent copy of the database to the new directory ``path`` (hard links
        to the SST files where it can, so it is cheap on the same filesystem)."""
        rocksdict.Checkpoint(self._db).create_checkpoint(str(path))

    def approximate_size(self) -> int:
        return self._db.property_int_value("rocksdb.total-sst-files-size") or 0

    def close(self) -> None:
        self._db.close()
