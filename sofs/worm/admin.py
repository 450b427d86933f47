"""The WORM administration of a volume: domains, status, the autocommit scan, legal holds,
what a volume still retains, and the privileged delete of an enterprise domain.

A part of :class:`sofs.fs.Filesystem` (its base class), kept apart so that each module holds one
job; the rules themselves are :class:`sofs.worm.rules.WormRules`. ``sofsctl worm`` reaches these
through the mount process (:mod:`fuse_mount.wormops`) or on a volume it opened itself.

The privileged delete writes its record first, as a new committed WORM file of the domain's
log directory (``.worm-log``, root's, mode 0755): one JSON record per delete, named by its UTC
time and inode, kept for the domain's maximum retention. The directory is an append-only log:
a record can neither be changed nor removed, nor the directory (it is not empty); only root may
add to it. Then the file's name is removed.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import threading
from collections.abc import Callable

from ..dirents import Directories
from ..errors import InvalidArgument, IsADirectory, NoSuchEntry
from ..inode import Inode
from ..inodes import InodeTable
from ..metadata import MetaStore
from ..permissions import ROOT_CTX
from .policy import DomainPolicy
from .records import Domain, iso_utc
from .rules import Retained, WormRules, WormStatus

log = logging.getLogger(__name__)

LOG_DIR = b".worm-log"
FOREVER_NS = 2**62  # an atime asking for the longest retention (clamped to the maximum)


class WormAdmin:
    """WORM operations of the filesystem (set up by :class:`sofs.fs.Filesystem`)."""

    meta: MetaStore
    _lock: threading.RLock
    _inodes: InodeTable
    _dirs: Directories
    _worm: WormRules

    # the filesystem's own operations (sofs.fs, sofs.namespace)
    _dir: Callable[[int], Inode]
    lookup: Callable[[int, bytes], Inode]
    mkdir: Callable[..., Inode]
    create: Callable[..., tuple[int, Inode]]
    write: Callable[[int, int, bytes], int]
    release: Callable[[int], None]
    setattr: Callable[..., Inode]
    _remove: Callable[..., None]

    @property
    def worm_domains(self) -> list[Domain]:
        with self._lock:
            return sorted(self._worm.domains.values(), key=lambda d: d.index)

    def resolve(self, path: str, *, create_dirs: bool = False) -> int:
        """The inode at ``path`` (from the volume's root, no symlinks followed); with
        ``create_dirs``, missing directories are made (0755, root's)."""
        ino = 1
        for part in [p for p in path.split("/") if p]:
            try:
                ino = self.lookup(ino, part.encode()).ino
            except NoSuchEntry:
                if not create_dirs:
                    raise
                ino = self.mkdir(ino, part.encode(), 0o755).ino
        return ino

    def worm_domain_create(self, path: str, policy: DomainPolicy) -> Domain:
        """Make ``path`` (an empty or new directory) a WORM domain; synced before it returns."""
        ino = self.resolve(path, create_dirs=True)
        with self._lock:
            node = self._dir(ino)
            b = self.meta.batch()
            shown = "/" + "/".join(p for p in path.split("/") if p)
            domain = self._worm.create_domain(b, node, shown, policy, self._dirs.is_empty(ino))
            self.meta.commit(b, sync=True)
            return domain

    def worm_status(self, ino: int) -> WormStatus:
        with self._lock:
            node = self._inodes.get(ino)
            self._worm.catch_up(node)
            return self._worm.status(node)

    def worm_scan(self) -> list[int]:
        """Commit every domain file whose autocommit period has passed; returns their inodes
        and those of every other file committed since the last scan (a chmod, a ``worm
        show``, a refused change that found its autocommit due), whose cached attributes
        are stale."""
        for ino in self._worm.pending():
            with self._lock:
                try:
                    node = self._inodes.get(ino)
                except NoSuchEntry:
                    continue
                self._worm.catch_up(node, reading=True)
        with self._lock:
            return sorted(self._worm.drain_committed())

    def worm_hold(self, ino: int, name: str, *, add: bool, recursive: bool = False) -> int:
        """Place (``add``) or release the legal hold ``name`` on the file ``ino``, or with
        ``recursive`` on every regular file under the directory ``ino``; returns how many
        files changed. Each directory's files are one synced batch."""
        with self._lock:
            node = self._inodes.get(ino)
            if node.is_dir and not recursive:
                raise IsADirectory(f"inode {ino} is a directory: hold its files with recursive")
            if not node.is_dir:
                b = self.meta.batch()
                one = self._worm.hold(b, node, name, add)
                self.meta.commit(b, sync=True)
                return int(one)
        changed, todo = 0, [ino]
        while todo:
            with self._lock:
                b = self.meta.batch()
                for _, child, _ in self._dirs.entries(todo.pop(), 0):
                    kid = self._inodes.get(child)
                    if kid.is_dir:
                        todo.append(child)
                    elif kid.is_reg:
                        changed += self._worm.hold(b, kid, name, add)
                self.meta.commit(b, sync=True)
        return changed

    def worm_held(self, ino: int) -> list[tuple[str, list[str]]]:
        """(path under ``ino``, its hold names) of every held file under the directory
        ``ino`` (or of ``ino`` itself, a file)."""
        out: list[tuple[str, list[str]]] = []
        todo: list[tuple[int, str]] = [(ino, "")]
        while todo:
            at, path = todo.pop()
            with self._lock:
                node = self._inodes.get(at)
                if not node.is_dir:
                    if holds := self._worm.holds(node):
                        out.append((path or ".", holds))
                    continue
                for name, child, _ in self._dirs.entries(at, 0):
                    todo.append((child, f"{path}/{name.decode(errors='replace')}"))
        return sorted(out)

    def worm_retained(self) -> Retained:
        """What the volume's domains still retain (files due for autocommit counted: they are
        committed first); DataUnavailable when the RING cannot give the compliance clock."""
        self.worm_scan()
        with self._lock:
            return self._worm.retained()

    def worm_privileged_delete(self, path: str, reason: str, who: str,
                               host: str) -> PrivilegedDelete:
        """Remove the file at ``path`` of an enterprise domain, before its retention ends if
        need be (never a held file), after recording who, when, why and what in the domain's
        log (module docstring); both synced before it returns."""
        reason = reason.strip()
        if not reason:
            raise InvalidArgument("a privileged delete needs a reason (--reason TEXT)")
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise InvalidArgument("the volume's root is not a file")
        parent = self.resolve("/".join(parts[:-1]))
        name = parts[-1].encode()
        with self._lock:
            node = self.lookup(parent, name)
            if node.is_dir:
                raise IsADirectory(f"{path} is a directory: a privileged delete removes files")
            self._worm.check_privileged_delete(node)
            domain = self._worm.domain_of(node)
            assert domain is not None
            rec = self._worm.commit_of(node)
            now = self._worm.compliance_now()
        stamp = datetime.datetime.fromtimestamp(now / 1e9, datetime.timezone.utc)
        entry = PrivilegedDelete(
            time=iso_utc(now), compliance_ns=now, who=who, host=host, reason=reason,
            path="/" + "/".join(parts), ino=node.ino, size=node.size,
            committed_ns=rec.committed_ns if rec else None,
            retain_until_ns=rec.retain_until_ns if rec else None,
            record=f"{domain.path.rstrip('/')}/{LOG_DIR.decode()}/"
                   f"{stamp:%Y%m%dT%H%M%S.%fZ}-{node.ino}.json")
        self._write_record(domain.root_ino, entry)  # its data is stored without the lock
        with self._lock:
            if self.lookup(parent, name).ino != node.ino:
                raise NoSuchEntry(f"{path} was replaced while its delete was recorded: "
                                  f"nothing deleted (the record {entry.record} stays)")
            self._remove(parent, name, ROOT_CTX, want_dir=False,
                         judge=self._worm.check_privileged_delete)
            self.meta.commit(self.meta.batch(), sync=True)
        log.warning("WORM: privileged delete of %s (inode %d) by %s on %s: %s; recorded in %s",
                    entry.path, node.ino, who, host, reason, entry.record)
        return entry

    def _write_record(self, root_ino: int, entry: PrivilegedDelete) -> None:
        """The record of one privileged delete, as a committed file of the log directory."""
        try:
            logdir = self.lookup(root_ino, LOG_DIR).ino
        except NoSuchEntry:
            logdir = self.mkdir(root_ino, LOG_DIR, 0o755).ino
        fh, node = self.create(logdir, entry.record.rsplit("/", 1)[1].encode(), 0o644,
                               os.O_WRONLY | os.O_EXCL)
        try:
            self.write(fh, 0, (json.dumps(dataclasses.asdict(entry), indent=1) + "\n").encode())
        finally:
            self.release(fh)
        self.setattr(node.ino, atime_ns=FOREVER_NS)
        self.setattr(node.ino, mode=0o444)  # commits it (sofs.worm.rules)


@dataclasses.dataclass(frozen=True)
class PrivilegedDelete:
    """One privileged delete, as recorded in the domain's log."""

    time: str                 # UTC, of the compliance clock
    compliance_ns: int
    who: str
    host: str
    reason: str
    path: str                 # in the volume
    ino: int
    size: int
    committed_ns: int | None  # None: the file was not committed yet
    retain_until_ns: int | None
    record: str               # the log file that holds this record

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

