"""Taking, listing and deleting the snapshots of an open volume.

:class:`Snapshots` works on the process that has the volume open (its mount process, or
``sofsctl`` on a volume that is not mounted), which alone changes the catalog (:mod:`.catalog`).

Create. Every buffered write is stored and committed first (:meth:`Filesystem.flush_all
<sofs.fs.Filesystem.flush_all>`), then the metadata is checkpointed under the filesystem's lock,
so the snapshot is the volume at one point in time, between two operations; the collector is
paused meanwhile (a pass that began before the snapshot existed would not know its pins). The
checkpoint goes to ``snapshots/.new-NAME``, is renamed to ``snapshots/NAME``, and only then is
the snapshot entered in the catalog: a crash leaves a leftover directory, never a listed
snapshot that is not whole.

Delete. The entry is marked ``deleting`` (the collector's pins let go of it), the chunks it
referenced that the live volume no longer does are queued for the collector
(:meth:`Collector.requeue_released <sofs.collector.Collector.requeue_released>`), its
directory is removed, then its entry. A crash in between leaves the ``deleting`` entry, which
the next create or delete finishes (:meth:`Snapshots.tidy`); if its metadata can no longer be
read, its chunks still go: the collector had kept them queued, a week ahead.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import threading
from typing import Any

from chunkstore.atomicfile import fsync_dir
from chunkstore.clock import SYSTEM_CLOCK, Clock

from ..errors import EntryExists, FsError, InvalidArgument, NoSuchEntry, SnapshotUnreadable
from ..fs import Filesystem
from ..timestamps import wall_ns
from . import catalog
from .catalog import DELETING, NEW_PREFIX, READY, SnapshotInfo, check_name, default_name
from .frozenmeta import FrozenMetaStore
from .pins import volume_dir_of
from .schedule import expired, is_due, load_schedule
from .view import open_snapshot

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Deleted:
    """What :meth:`Snapshots.delete` did."""

    name: str
    requeued: int  # chunks handed back to the collector (only this snapshot kept them)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ScheduleRun:
    """What :meth:`Snapshots.run_schedule` did."""

    taken: str | None
    deleted: tuple[str, ...] = ()


class Snapshots:
    """The snapshots of the open volume ``fs`` (module docstring); ``clock`` dates them."""

    def __init__(self, fs: Filesystem, clock: Clock = SYSTEM_CLOCK) -> None:
        self.fs = fs
        self.vdir = volume_dir_of(fs.meta)
        self._clock = clock
        self._lock = threading.Lock()  # one catalog change at a time

    def _load(self) -> list[SnapshotInfo]:
        infos = catalog.load(self.vdir)
        if infos is None:
            if catalog.has_snapshot_dirs(self.vdir):
                raise SnapshotUnreadable(
                    f"{catalog.catalog_path(self.vdir)} is missing but "
                    f"{catalog.snapshots_dir(self.vdir)} holds snapshots: restore the catalog "
                    "(or remove that directory to drop them)")
            return []
        return infos

    def ready(self) -> list[SnapshotInfo]:
        """The ready snapshots, oldest first."""
        return [i for i in self._load() if i.state == READY]

    def get(self, name: str) -> SnapshotInfo:
        for info in self.ready():
            if info.name == name:
                return info
        raise NoSuchEntry(f"volume {self.fs.config.name} has no snapshot {name!r}")

    def create(self, name: str | None = None, *, scheduled: bool = False) -> SnapshotInfo:
        """Take a snapshot named ``name`` (default: ``@GMT-...`` of now, UTC). EntryExists
        if there is one of that name; InvalidArgument for a name no snapshot may have; the
        flush's error (the snapshot is not taken) when buffered data cannot be stored.
        ``scheduled``: taken by the schedule, which deletes it in time."""
        if name is not None:
            check_name(name)
        with self._lock, self.fs.gc_paused():
            now = wall_ns(self._clock)
            name = name if name is not None else default_name(now)
            infos = self.tidy(self._load())
            if any(i.name == name for i in infos):
                raise EntryExists(f"volume {self.fs.config.name} has a snapshot {name!r} already")
            catalog.save(self.vdir, infos)  # before any snapshot directory (see catalog)
            slot = catalog.next_slot(self.vdir)
            if slot > catalog.MAX_SLOT:
                raise InvalidArgument(f"volume {self.fs.config.name} has had {slot - 1} "
                                      "snapshots, as many as it can have")
            sdir = catalog.snapshots_dir(self.vdir)
            sdir.mkdir(mode=0o700, exist_ok=True)
            tmp = sdir / f"{NEW_PREFIX}{name}"
            shutil.rmtree(tmp, ignore_errors=True)
            self.fs.flush_all()
            self.fs.checkpoint_metadata(tmp)
            final = catalog.snapshot_path(self.vdir, name)
            os.rename(tmp, final)
            fsync_dir(sdir)
            size = sum(p.stat().st_size for p in final.iterdir() if p.is_file())
            info = SnapshotInfo(name, now, size, scheduled=scheduled, slot=slot)
            catalog.save(self.vdir, [*infos, info])
        log.info("snapshot %s of volume %s taken (%d bytes of metadata)", name,
                 self.fs.config.name, size)
        return info

    def delete(self, name: str) -> Deleted:
        """Delete the snapshot ``name`` (NoSuchEntry if there is none)."""
        with self._lock, self.fs.gc_paused():
            infos = self._load()
            if not any(i.name == name and i.state == READY for i in infos):
                raise NoSuchEntry(f"volume {self.fs.config.name} has no snapshot {name!r}")
            infos = [dataclasses.replace(i, state=DELETING) if i.name == name else i
                     for i in infos]
            catalog.save(self.vdir, infos)
            requeued = self._release(name)
            catalog.save(self.vdir, [i for i in infos if i.name != name])
        log.info("snapshot %s of volume %s deleted; %d chunks only it kept go to the collector",
                 name, self.fs.config.name, requeued)
        return Deleted(name, requeued)

    def _release(self, name: str) -> int:
        """Hand the chunks of the snapshot ``name`` back to the collector, remove its
        directory; how many chunks were queued."""
        path = catalog.snapshot_path(self.vdir, name)
        requeued = 0
        if path.is_dir():
            try:
                meta = FrozenMetaStore.open(path, f"snapshot {name}, being deleted")
            except FsError as e:  # its chunks stay queued by the collector: they go later
                log.warning("snapshot %s: its metadata cannot be read (%s); the chunks only it "
                            "kept are collected within a week", name, e)
            else:
                try:
                    requeued = self.fs.requeue_snapshot_chunks(meta)
                finally:
                    meta.close()
            shutil.rmtree(path)
            fsync_dir(path.parent)
        return requeued

    def tidy(self, infos: list[SnapshotInfo]) -> list[SnapshotInfo]:
        """Finish the deletions a crash interrupted and remove leftover directories; the
        catalog's entries that remain (caller holds the lock, with the collector paused)."""
        for info in [i for i in infos if i.state == DELETING]:
            self._release(info.name)
        kept = [i for i in infos if i.state == READY]
        if len(kept) != len(infos):
            catalog.save(self.vdir, kept)
        sdir = catalog.snapshots_dir(self.vdir)
        listed = {i.name for i in kept}
        if sdir.is_dir():
            for path in sdir.iterdir():
                if path.name not in listed:
                    log.info("removing %s, a leftover of an interrupted snapshot", path)
                    shutil.rmtree(path, ignore_errors=True)
        return kept

    def run_schedule(self) -> ScheduleRun:
        """Apply the volume's schedule (:mod:`.schedule`) now: take the snapshot that is due,
        delete the scheduled ones no rule keeps any more."""
        keep = load_schedule(self.vdir)
        if keep is None:
            return ScheduleRun(None)
        taken = None
        if is_due(keep, self.ready(), wall_ns(self._clock)):
            try:
                taken = self.create(scheduled=True).name
            except EntryExists:  # one taken by hand has this second's name
                log.info("scheduled snapshot skipped: its name is taken")
        gone = expired(keep, self.ready())
        for name in gone:
            self.delete(name)
        return ScheduleRun(taken, tuple(gone))

    def open(self, name: str, **kw: Any) -> Filesystem:
        """The ready snapshot ``name`` as a read-only Filesystem (:func:`.view.open_snapshot`);
        the caller closes it."""
        self.get(name)
        return open_snapshot(self.vdir, name, self.fs.store, self.fs.config, **kw)
