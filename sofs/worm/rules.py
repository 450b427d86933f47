"""The WORM rules of one mounted volume: which change of which inode is refused, and commits.

:class:`WormRules` belongs to a :class:`sofs.fs.Filesystem`, which calls it, with its lock held,
before every change it makes: the rules raise :class:`~sofs.errors.WormRefused` (EPERM at the
FUSE boundary) for every caller, root included, so the refusal is the failing call itself,
never a later close. A volume without domains pays one integer test per change.

A regular file of a domain is an ordinary file until it is *committed*: when its last write bit
is removed (``chmod a-w``; Samba's read-only attribute maps to it), or when it has not changed
for the domain's autocommit period (judged on the file's ctime, which only sofs sets, whenever
an operation touches the file and by :meth:`scan`). Committing removes the write bits, sets its
retention (what its atime asks, clamped to the domain's policy, else the default) and shows it
as its atime. Expiry is judged by the volume's compliance clock (:mod:`.clock`), opened from the
RING when first needed; when the RING cannot say the time, deletes of committed files fail.

Refused on a committed file: write, open for writing or with O_TRUNC, truncate, fallocate,
adding a write bit, changing owner, group or mtime, shortening its retention, setting or
removing xattrs, rename from or onto it, unlink before expiry. A file under a legal hold
(:meth:`WormRules.hold`; holds stack by name) cannot be deleted, renamed, written or truncated,
even after its retention ended. Refused for a domain: rmdir or rename of its root; renaming a
non-empty directory in, out of or within a domain; links across its boundary; renaming into a
domain a directory that is not empty (EXDEV: ``mv`` then copies file by file) or a file with
several names.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, fields

from chunkstore.api import ChunkStore
from chunkstore.clock import Clock

from ..errors import CrossDevice, DataUnavailable, InvalidArgument, WormRefused
from ..inode import Inode
from ..metadata import Batch, MetaStore
from ..timestamps import wall_ns
from .clock import ComplianceClock
from .policy import DomainPolicy
from .records import (
    COMMITTED,
    DOMAIN_ROOT,
    DOMAIN_SHIFT,
    HELD,
    MAX_DOMAINS,
    Commit,
    Domain,
    Hold,
    commit_key,
    domain_index,
    domain_key,
    hold_key,
    hold_prefix,
    iso_utc,
    parse_pending_key,
    pending_key,
)

log = logging.getLogger(__name__)

WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
_DOMAIN_MASK = MAX_DOMAINS << DOMAIN_SHIFT


@dataclass(frozen=True)
class WormStatus:
    """What ``sofsctl worm show`` says of one inode."""

    ino: int
    domain: str | None   # the domain's path, None outside any domain
    mode: str | None     # compliance or enterprise
    state: str           # "none", "directory", "uncommitted", "committed", "expired"
    committed_ns: int | None = None
    retain_until_ns: int | None = None
    rule: str | None = None
    holds: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _restore(node: Inode, saved: Inode) -> None:
    for f in fields(saved):
        setattr(node, f.name, getattr(saved, f.name))


@dataclass(frozen=True)
class Retained:
    """Files of a volume that WORM still keeps (:meth:`WormRules.retained`)."""

    files: int                # committed, retention not over
    held: int                 # under at least one legal hold
    last_until_ns: int | None  # the latest retention end among them

    @property
    def anything(self) -> bool:
        return bool(self.files or self.held)


class WormRules:
    """The WORM domains of one volume and the rules over them (module docstring)."""

    def __init__(self, meta: MetaStore, store: ChunkStore, volume_uuid: str, clock: Clock,
                 save: Callable[[Batch, Inode], None],
                 chmod_acl: Callable[[Batch, Inode], None] | None = None) -> None:
        self._meta = meta
        self._store = store
        self._uuid = volume_uuid
        self._clock = clock
        self._save = save
        self._chmod_acl = chmod_acl  # the access ACL follows the mode (its mask, others)
        self._compliance: ComplianceClock | None = None
        self._recent: set[int] = set()  # committed since the last drain_committed()
        self.domains: dict[int, Domain] = {}
        for _, value in meta.scan(b"N"):
            d = Domain.from_value(value)
            self.domains[d.index] = d

    # ------------------------------------------------------------------ clock and records

    def compliance_now(self) -> int:
        """The compliance clock's time (ns); DataUnavailable if the RING cannot give it."""
        if self._compliance is None:
            self._compliance = ComplianceClock.open(self._store, self._uuid, clock=self._clock)
        return self._compliance.now_ns()

    def close(self) -> None:
        if self._compliance is not None:
            self._compliance.persist()

    def domain_of(self, node: Inode) -> Domain | None:
        index = domain_index(node.flags)
        return self.domains.get(index) if index else None

    def commit_of(self, node: Inode) -> Commit | None:
        if not node.flags & COMMITTED:
            return None
        value = self._meta.get(commit_key(node.ino))
        return Commit.from_value(value) if value is not None else None

    # ------------------------------------------------------------------ domains

    def create_domain(self, b: Batch, root: Inode, path: str, policy: DomainPolicy,
                      is_empty: bool) -> Domain:
        """Make the directory ``root`` (empty) the top of a new domain."""
        if not root.is_dir:
            raise InvalidArgument(f"{path}: a WORM domain is a directory")
        inside = self.domain_of(root)
        if inside is not None:
            raise WormRefused(f"{path} is already in the WORM domain {inside.path}")
        if not is_empty:
            raise InvalidArgument(f"{path} is not empty: a WORM domain is made of an empty or "
                                  "new directory")
        index = max(self.domains, default=0) + 1
        if index > MAX_DOMAINS:
            raise InvalidArgument(f"a volume holds at most {MAX_DOMAINS} WORM domains")
        domain = Domain(index, root.ino, path, policy, self.compliance_now())
        b.put(domain_key(index), domain.to_value())
        root.flags = (root.flags & ~_DOMAIN_MASK) | (index << DOMAIN_SHIFT) | DOMAIN_ROOT
        self._save(b, root)
        self.domains[index] = domain
        log.info("WORM domain %s created (%s mode, default retention %s)", path, policy.mode,
                 policy.default_ns)
        return domain

    def stamp_child(self, b: Batch, parent: Inode, node: Inode) -> None:
        """A new inode under ``parent`` belongs to its domain; a regular file waits for its
        commit (``Y``)."""
        index = domain_index(parent.flags)
        if not index:
            return
        node.flags = (node.flags & ~_DOMAIN_MASK) | (index << DOMAIN_SHIFT)
        if node.is_reg:
            b.put(pending_key(node.ino), b"")

    # ------------------------------------------------------------------ commit

    def _refuse(self, node: Inode, what: str, commit: Commit | None = None) -> WormRefused:
        domain = self.domain_of(node)
        where = domain.path if domain else "?"
        if commit is not None:
            why = (f"{what} of inode {node.ino} refused: it is a committed WORM file of domain "
                   f"{where}, retained until {iso_utc(commit.retain_until_ns)}")
        else:
            why = f"{what} of inode {node.ino} refused by WORM domain {where}"
        log.warning("%s", why)
        return WormRefused(why)

    def _held(self, node: Inode, what: str) -> WormRefused:
        names = ", ".join(self.holds(node)) or "?"
        why = f"{what} of inode {node.ino} refused: it is under legal hold ({names})"
        log.warning("%s", why)
        return WormRefused(why)

    # ------------------------------------------------------------------ legal holds

    def holds(self, node: Inode) -> list[str]:
        if not node.flags & HELD:
            return []
        return [Hold.from_value(v).name for _, v in self._meta.scan(hold_prefix(node.ino))]

    def hold(self, b: Batch, node: Inode, name: str, add: bool) -> bool:
        """Stage adding (or releasing) the hold ``name`` on the file ``node``; False when it
        was already so."""
        if not name or len(name) > 200 or "/" in name:
            raise InvalidArgument("a hold is named by 1 to 200 characters, no '/'")
        if self.domain_of(node) is None:
            raise InvalidArgument(f"inode {node.ino} is not in a WORM domain: only files of a "
                                  "domain are held")
        if not node.is_reg:
            raise InvalidArgument(f"inode {node.ino} is not a regular file")
        key = hold_key(node.ino, name)
        present = self._meta.get(key) is not None
        if present == add:
            return False
        if add:
            b.put(key, Hold(name, self.compliance_now()).to_value())
            node.flags |= HELD
        else:
            b.delete(key)
            if self.holds(node) == [name]:
                node.flags &= ~HELD
        self._save(b, node)
        log.info("WORM: legal hold %s %s inode %d", name, "placed on" if add else "released from",
                 node.ino)
        return True

    def commit(self, b: Batch, node: Inode, rule: str, at_ns: int | None = None) -> Commit:
        """Stage committing the regular file ``node`` (in a domain, not yet committed) at
        ``at_ns`` of the compliance clock (default: now)."""
        domain = self.domain_of(node)
        assert domain is not None and node.is_reg and not node.flags & COMMITTED
        now = self.compliance_now() if at_ns is None else at_ns
        rec = Commit(now, domain.policy.retain_until(now, node.atime_ns), rule)
        node.flags |= COMMITTED
        node.mode &= ~WRITE_BITS
        if self._chmod_acl is not None:  # no write left in the ACL either (Samba reads it)
            self._chmod_acl(b, node)
        node.atime_ns = rec.retain_until_ns
        node.ctime_ns = wall_ns(self._clock)
        b.put(commit_key(node.ino), rec.to_value())
        b.delete(pending_key(node.ino))
        self._save(b, node)
        self._recent.add(node.ino)
        log.info("WORM: inode %d committed (%s) in domain %s, retained until %s", node.ino,
                 rule, domain.path, iso_utc(rec.retain_until_ns))
        return rec

    def autocommit_due(self, node: Inode) -> bool:
        domain = self.domain_of(node)
        return (domain is not None and node.is_reg and not node.flags & COMMITTED
                and node.nlink > 0
                and domain.policy.autocommit_due(node.ctime_ns, wall_ns(self._clock)))

    def catch_up(self, node: Inode, *, reading: bool = False) -> bool:
        """Commit ``node`` now if its autocommit period has passed (its own batch); True if
        it was committed. Before a change, a compliance clock the RING cannot give fails the
        change (DataUnavailable: nothing is changed unjudged); while ``reading`` (stat,
        lookup, the scanner) the commit waits for the next touch instead, logged."""
        if not self.autocommit_due(node):
            return False
        b = self._meta.batch()
        saved = node.copy()
        try:
            self.commit(b, node, "autocommit")
            self._meta.commit(b)
        except DataUnavailable as e:
            _restore(node, saved)  # memory stays what is stored
            self._recent.discard(node.ino)
            if not reading:
                raise
            log.warning("WORM: autocommit of inode %d waits: %s", node.ino, e)
            return False
        except BaseException:
            _restore(node, saved)
            self._recent.discard(node.ino)
            raise
        return True

    def drain_committed(self) -> set[int]:
        """The inodes committed since the last call (whose attributes a kernel may cache)."""
        recent, self._recent = self._recent, set()
        return recent

    def commits_on_readonly(self, node: Inode) -> bool:
        """Whether the DOS read-only attribute just set on ``node`` commits it (as ``chmod
        a-w``: a regular file of a domain, not committed yet, still named)."""
        return (bool(domain_index(node.flags)) and node.is_reg and node.nlink > 0
                and not node.flags & COMMITTED)

    def pending(self) -> list[int]:
        """The inodes of domain files not committed yet (for the autocommit scanner)."""
        return [parse_pending_key(k) for k, _ in self._meta.scan(b"Y")]

    # ------------------------------------------------------------------ checks

    def check_data(self, node: Inode, what: str) -> None:
        """Before a write, truncate, fallocate or xattr change of ``node``."""
        if domain_index(node.flags):
            self.catch_up(node)
            if node.flags & COMMITTED:
                raise self._refuse(node, what, self.commit_of(node))
            if node.flags & HELD:
                raise self._held(node, what)

    def check_open(self, node: Inode, flags: int) -> None:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            self.check_data(node, "open for writing" if not flags & os.O_TRUNC
                            else "open with O_TRUNC")

    def setattr(self, b: Batch, node: Inode, *, mode: int | None, uid: int | None,
                gid: int | None, atime_ns: int | None,
                mtime_ns: int | None) -> tuple[int | None, int | None]:
        """Judge a setattr of ``node`` (its size is judged by :meth:`check_data`, as a
        truncate) before it is applied: raise if refused. Returns the
        atime to apply (a committed file's retention, clamped) and, when the change
        commits the file (its last write bit goes), the commit time: the caller then calls
        :meth:`commit` with it after applying the rest. The time is read first, so a
        compliance clock the RING cannot give fails the setattr before anything changed."""
        if not domain_index(node.flags):
            return atime_ns, None
        self.catch_up(node)
        if node.flags & HELD and (uid is not None or gid is not None):
            raise self._held(node, "changing the owner")
        if node.flags & COMMITTED:
            rec = self.commit_of(node)
            if mode is not None and mode & WRITE_BITS:
                raise self._refuse(node, "adding a write bit", rec)
            if (uid is not None and uid != node.uid) or (gid is not None and gid != node.gid):
                raise self._refuse(node, "changing the owner or group", rec)
            if mtime_ns is not None and mtime_ns != node.mtime_ns:
                raise self._refuse(node, "changing the modification time", rec)
            if atime_ns is not None and rec is not None:
                if atime_ns < rec.retain_until_ns:
                    raise self._refuse(node, "shortening the retention", rec)
                domain = self.domain_of(node)
                assert domain is not None
                until = domain.policy.extended(rec.committed_ns, rec.retain_until_ns, atime_ns)
                if until != rec.retain_until_ns:
                    rec = Commit(rec.committed_ns, until, rec.rule)
                    b.put(commit_key(node.ino), rec.to_value())
                    log.info("WORM: inode %d retention extended to %s", node.ino, iso_utc(until))
                return until, None
            return atime_ns, None
        commits = (node.is_reg and mode is not None and not mode & WRITE_BITS
                   and node.nlink > 0)
        return atime_ns, self.compliance_now() if commits else None

    def check_remove(self, node: Inode) -> None:
        """Before unlinking a name of ``node`` or removing the directory ``node``."""
        if not domain_index(node.flags):
            return
        if node.flags & DOMAIN_ROOT:
            raise self._refuse(node, "removing the top directory of a domain")
        self.catch_up(node)
        if node.flags & HELD:
            raise self._held(node, "deleting")
        if node.flags & COMMITTED:
            rec = self.commit_of(node)
            if rec is None or self.compliance_now() < rec.retain_until_ns:
                raise self._refuse(node, "deleting before its retention ends", rec)

    def check_privileged_delete(self, node: Inode) -> None:
        """Before the privileged delete of ``node`` (an enterprise domain's file, held by no
        legal hold), which may come before its retention ends."""
        domain = self.domain_of(node)
        if domain is None or not node.is_reg:
            raise InvalidArgument(f"inode {node.ino} is not a file of a WORM domain: a "
                                  "privileged delete removes only those")
        if domain.policy.mode != "enterprise":
            raise self._refuse(node, f"a privileged delete in the {domain.policy.mode} domain "
                               f"{domain.path} (only an enterprise domain has one)",
                               self.commit_of(node))
        if node.flags & HELD:
            raise self._held(node, "a privileged delete")

    def retained(self) -> Retained:
        """What this volume still retains: committed files before their expiry and held
        files (a volume that retains anything is not deleted). A volume without domains
        retains nothing, and its compliance clock is not read (nor made in the RING)."""
        if not self.domains:
            return Retained(0, 0, None)
        now = self.compliance_now()
        until = [Commit.from_value(v).retain_until_ns for _, v in self._meta.scan(b"Z")]
        held = {k[1:9] for k, _ in self._meta.scan(b"H")}
        live = [u for u in until if u > now]
        return Retained(len(live), len(held), max(live, default=None))

    def check_link(self, node: Inode, new_parent: Inode) -> None:
        if domain_index(node.flags) != domain_index(new_parent.flags):
            raise self._refuse(node, "a hard link across the boundary of a WORM domain")

    def check_rename(self, b: Batch, snode: Inode, dnode: Inode | None, op: Inode, np: Inode,
                     src_empty: bool) -> None:
        """Before renaming ``snode`` from directory ``op`` to ``np`` (over ``dnode``); stages
        the change of domain of a file or empty directory moved across a boundary."""
        src_dom, dst_dom = domain_index(op.flags), domain_index(np.flags)
        if not (src_dom or dst_dom or domain_index(snode.flags)):
            return
        for node in (snode, dnode):
            if node is None or not domain_index(node.flags):
                continue
            if node.flags & DOMAIN_ROOT:
                raise self._refuse(node, "renaming the top directory of a domain")
            self.catch_up(node)
            if node.flags & COMMITTED:
                raise self._refuse(node, "rename", self.commit_of(node))
            if node.flags & HELD:
                raise self._held(node, "rename")
        if snode.is_dir and not src_empty and (src_dom or dst_dom):
            if not src_dom:
                raise CrossDevice("a directory that is not empty is not moved into a WORM "
                                  "domain: its files are copied in one by one")
            raise self._refuse(snode, "renaming a directory that is not empty")
        if src_dom == dst_dom:
            return
        if not snode.is_dir and snode.nlink > 1:
            raise CrossDevice("a file with several names is not moved across the boundary of "
                              "a WORM domain")
        snode.flags = (snode.flags & ~_DOMAIN_MASK) | (dst_dom << DOMAIN_SHIFT)
        if snode.is_reg:
            if dst_dom:
                b.put(pending_key(snode.ino), b"")
            else:
                b.delete(pending_key(snode.ino))

    # ------------------------------------------------------------------ views

    def status(self, node: Inode) -> WormStatus:
        domain = self.domain_of(node)
        if domain is None:
            return WormStatus(node.ino, None, None, "none")
        holds = tuple(self.holds(node))
        if not node.is_reg:
            return WormStatus(node.ino, domain.path, domain.policy.mode, "directory"
                              if node.is_dir else "uncommitted")
        rec = self.commit_of(node)
        if rec is None:
            return WormStatus(node.ino, domain.path, domain.policy.mode, "uncommitted",
                              holds=holds)
        state = "expired" if self.compliance_now() >= rec.retain_until_ns else "committed"
        return WormStatus(node.ino, domain.path, domain.policy.mode, state, rec.committed_ns,
                          rec.retain_until_ns, rec.rule, holds)
