"""RingStore: the RING's data path over a set of disks, wherever the disks are.

A :class:`RingStore` places chunks with a :class:`~chunkstore.placement.ring.Ring` and talks to each disk
through a :class:`~chunkstore.api.DiskBackend`: a local DiskStore
(:class:`chunkstore.ring.local.LocalRing`) or a :class:`~chunkstore.net.client.RemoteDisk` on a
storage node (:class:`chunkstore.ring.net.NetRing`). Subclasses open the disks and fill
``self._disks`` / ``self._down``; everything else is here.

Every disk call goes through :meth:`RingStore.call` (the data path's and the repair sweep's):
a disk that fails in an unexpected way is marked unavailable (:meth:`RingStore.mark_down`), and
a StaleMap answer (a node has a newer cluster map) makes the client refresh its map
(:meth:`RingStore.refresh_map`) and retry the call once.

put: key = blake3-160 of the payload; the policy is chosen by size (``Protection.for_size``);
replication writes n copies (fragment index 0xFF) on ``owners(key, n)``, EC encodes k+m
fragments and writes fragment i on ``owners[i]``. All pieces are written in parallel on a
bounded thread pool. The put succeeds once the policy's write quorum of pieces is durable; the
missing pieces are noted in the repair log. Below the quorum it raises DiskFull (if a full disk
was among the causes) or NotEnoughDisks; the pieces already written are left in place (they may
be shared with a concurrent put of the same payload, so deleting them is never safe here). The
caller never references the chunk, so its garbage collector (which deletes only chunks that were
once referenced) never collects them either. The put notes the chunk ABANDONED in the repair
log (unless the log holds another entry for it; a later successful put clears it): a repair
sweep collects the pieces of such a chunk that cannot be read back after a grace period, by
conditional deletes that a put of the same chunk since then refuses, and reports them as an
abandoned put rather than as lost data (chunkstore.healing.sweep). A readable one is kept,
protected by repair like any chunk, until an audit lists it (``sofs.fsck.unreferenced_chunks``).

get: replicas are tried owner by owner; for EC the data fragments (0..k-1) are read first in
parallel, parity only when a data fragment is missing, unreadable or fails its checksum.
Pieces are also looked for on non-owner disks when the owners fall short. The reassembled
payload is verified against the key (blake3-160) and size; unverified bytes are never
returned. Bad or missing pieces are noted in the repair log.

A disk that fails in an unexpected way is marked unavailable (:meth:`RingStore.mark_down`):
reads degrade, writes go to the quorum, nothing crashes; subclasses bring disks back
(``revive_disk``). A chunk whose policy cannot be used here (its EC backend is missing) raises
PolicyError; a closed store raises DiskUnavailable.

delete: tombstones on every owner; if an owner is unavailable the chunk is noted as DELETED in
the repair log so repair removes the leftovers later instead of rebuilding them. A repair sweep
watches deletes (:meth:`RingStore.watching_deletes`): a key is added to every watch before its
first tombstone, so a sweep that finds pieces gone can tell a delete from a loss.

Volume root records (:mod:`chunkstore.roots`), the one small mutable record per volume, and
the slots of the volumes' metadata journals: :mod:`chunkstore.ring.rootpath`.

capacity: raw totals of the disks' filesystems, each filesystem counted once (by st_dev);
``used_bytes`` sums the container bytes of the disks. Scaling by the protection overhead is
left to the caller.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

from chunkstore.api import Capacity, ChunkStore, DiskBackend, Membership
from chunkstore.errors import (
    ChunkCorrupt,
    ChunkNotFound,
    ChunkStoreError,
    DiskFull,
    DiskUnavailable,
    FormatError,
    KeyConflict,
    NotEnoughDisks,
    PolicyError,
    StaleEpoch,
    StaleMap,
)
from chunkstore.placement.keys import MAX_CHUNK_SIZE, ChunkRef, chunk_key
from chunkstore.placement.ring import Ring
from chunkstore.protection.policy import REPLICA_INDEX, ECPolicy, Policy, Protection, ReplicationPolicy
from chunkstore.ring.repairlog import ABANDONED, DELETED, NEEDS_REPAIR, RepairLog
from chunkstore.ring.rootpath import SPARES, RootPath

T = TypeVar("T")

_MAX_DECODE_TRIES = 64
_SPARES = SPARES  # disks of a key's walk beyond its owners that take (and are searched for) handoffs


log = logging.getLogger("sofs.ring")
_DEGRADED_LOG_EVERY_S = 60.0


class RingStore(RootPath, ChunkStore):
    """Chunks placed on disks by a ring (see module docstring). Abstract: subclasses set
    ``data_dir``, ``ring``, ``repair_log``, ``_disks``, ``_down`` and call :meth:`_start_pool`."""

    data_dir: str  # the client's state directory (repair log, locks, healer state)
    ring: Ring
    repair_log: RepairLog
    _degraded_logged = -_DEGRADED_LOG_EVERY_S  # monotonic time of the last degraded-write line

    def _init_disks(self) -> None:
        self._disks_lock = threading.Lock()
        self._disks: dict[str, DiskBackend] = {}
        self._down: dict[str, str] = {}
        self._closed = True
        self._delete_watches: list[set[bytes]] = []  # see watching_deletes

    def _start_pool(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ring")
        self._closed = False

    def disk_ids(self) -> list[str]:
        """Every disk this store knows, in a stable order."""
        raise NotImplementedError

    def revive_disk(self, disk_id: str) -> bool:
        """Try to bring an unavailable disk back; True if it is usable now."""
        raise NotImplementedError

    @property
    def membership(self) -> Membership | None:
        """The cluster's members as this client sees them, on a networked RING; None on an
        embedded one (its disks are all in this process: nothing to mark down)."""
        return None

    def refresh_map(self, from_disk: str | None = None) -> bool:
        """Fetch a newer cluster map (from the node serving ``from_disk``, else any); True if
        one was adopted. An embedded RING has no map to refresh."""
        return False

    def disk(self, disk_id: str) -> DiskBackend:
        """The open disk (DiskStore or RemoteDisk), or DiskUnavailable."""
        with self._disks_lock:
            ds = self._disks.get(disk_id)
            if ds is None:
                raise DiskUnavailable(f"disk {disk_id} unavailable: {self._down.get(disk_id, 'unknown disk')}")
            return ds

    def _take_back(self, disk_id: str, disk: DiskBackend | None) -> bool:
        """Put a down disk whose handle is kept (a remote one) back in use if it answers."""
        if disk is None:
            return False
        try:
            disk.check_alive()
        except ChunkStoreError:
            return False
        with self._disks_lock:
            self._disks[disk_id] = disk
            was = self._down.pop(disk_id, None)
        if was is not None:
            log.info("disk %s answers again", disk_id)
        return True

    def mark_down(self, disk_id: str, reason: str) -> None:
        """Stop using a disk until it is revived (called when it reports DiskUnavailable)."""
        with self._disks_lock:
            ds = self._disks.pop(disk_id, None)
            fresh = disk_id not in self._down
            self._down[disk_id] = reason
        if fresh:
            log.warning("disk %s is unavailable (%s): reads and writes go around it; "
                        "sofsctl status and sofsctl repair", disk_id, reason)
        if ds is not None:
            try:
                ds.close()
            except Exception:
                pass

    def available_disks(self) -> list[str]:
        with self._disks_lock:
            return [d for d in self.disk_ids() if d in self._disks]

    def unavailable_disks(self) -> dict[str, str]:
        """disk id -> reason."""
        with self._disks_lock:
            return dict(self._down)

    # -- helpers ------------------------------------------------------------------------

    def _policy(self, ref: ChunkRef) -> Policy:
        try:
            return ref.policy.policy()
        except PolicyError as e:
            raise PolicyError(f"chunk {ref.hex}: cannot use its policy here: {e}") from e

    def _check_open(self) -> None:
        if self._closed:
            raise DiskUnavailable(f"{type(self).__name__} is closed: its disks are no longer open")

    def call(self, disk_id: str, op: Callable[[DiskBackend], T]) -> T:
        """``op(disk)`` on one disk, the way every disk call of the data path and the repair
        sweep is made: a StaleMap answer refreshes the map and retries once; a disk that
        reports DiskUnavailable or fails in any unexpected way is marked down (and the failure
        raised as DiskUnavailable). Other chunkstore errors are raised as they are. ``op`` may
        run twice: it must be idempotent (every disk operation is)."""
        try:
            return self._call_once(disk_id, op)
        except StaleMap:
            self.refresh_map(disk_id)
            return self._call_once(disk_id, op)

    def _call_once(self, disk_id: str, op: Callable[[DiskBackend], T]) -> T:
        ds = self.disk(disk_id)
        try:
            return op(ds)
        except DiskUnavailable as e:
            self.mark_down(disk_id, str(e))
            raise
        except ChunkStoreError:
            raise
        except Exception as e:  # e.g. the index was closed under us, EIO
            self.mark_down(disk_id, f"{type(e).__name__}: {e}")
            raise DiskUnavailable(f"disk {disk_id}: {type(e).__name__}: {e}") from e

    def _put_piece(self, disk_id: str, key: bytes, idx: int, ref: ChunkRef, data: bytes) -> None:
        self.call(disk_id, lambda ds: ds.put(key, idx, ref.policy, ref.size, data))

    def _get_piece(self, disk_id: str, key: bytes, idx: int, verify: bool = True) -> bytes:
        return self.call(disk_id, lambda ds: ds.get(key, idx, verify))

    def _has_piece(self, disk_id: str, key: bytes, idx: int) -> bool:
        return self.call(disk_id, lambda ds: ds.has(key, idx))

    def _delete_piece(self, disk_id: str, key: bytes, idx: int) -> None:
        self.call(disk_id, lambda ds: ds.delete(key, idx))

    # -- ChunkStore ---------------------------------------------------------------------

    def put(self, payload: bytes, protection: Protection) -> ChunkRef:
        self._check_open()
        if len(payload) > MAX_CHUNK_SIZE:
            raise FormatError(f"chunk too large: {len(payload)} bytes (a ChunkRef holds at most {MAX_CHUNK_SIZE})")
        key = chunk_key(payload)
        policy = protection.for_size(len(payload))
        ref = ChunkRef(key, len(payload), policy.code)
        return self.put_ref(ref, payload, policy)

    def put_ref(self, ref: ChunkRef, payload: bytes, policy: Policy | None = None) -> ChunkRef:
        """Write the pieces of a chunk whose ref is already known (used by put and repair).
        If the map changes while they are written (a StaleMap answer), they are written
        again where the new map places them (the first copies become extras for repair)."""
        policy = policy or self._policy(ref)
        pieces = policy.encode(payload)
        ring = self.ring
        self._put_pieces(ref, policy, pieces, ring)
        if self.ring is not ring:
            log.info("chunk %s: the map changed while it was written; written again where "
                     "the new map places it", ref.hex)
            self._put_pieces(ref, policy, pieces, self.ring)
        return ref

    def _put_pieces(self, ref: ChunkRef, policy: Policy, pieces: list, ring: Ring) -> None:
        entry = self.repair_log.get(ref.key)
        if entry is not None and entry.kind == DELETED:
            self.repair_log.clear(ref.key)  # wanted again, before any piece lands (see sweep)
        owners = ring.owners(ref.key, policy.width)
        futures = {
            i: self._pool.submit(self._put_piece, owners[i], ref.key, policy.piece_index(i), ref, pieces[i])
            for i in range(policy.width)
        }
        failed, errors = self._collect_puts(futures)
        ok = policy.width - len(failed)
        if failed:
            ok += self._hand_off(ref, policy, pieces, failed, errors)
        entry = self.repair_log.get(ref.key)
        if entry is not None and entry.kind == DELETED:
            self.repair_log.clear(ref.key)  # the chunk is wanted again
        if ok < policy.write_quorum:
            if ok:
                self._note_abandoned(ref)
            msg = f"chunk {ref.hex}: {ok} of {policy.width} pieces written, quorum {policy.write_quorum}: {errors[0]}"
            if any(isinstance(e, DiskFull) for e in errors):
                raise DiskFull(msg)
            raise NotEnoughDisks(msg)
        if entry is not None and entry.kind == ABANDONED:
            self.repair_log.clear(ref.key)  # an earlier put of it failed, this one did not
        if errors:
            self.repair_log.note(ref, NEEDS_REPAIR)
            now = time.monotonic()
            if now - self._degraded_logged >= _DEGRADED_LOG_EVERY_S:
                self._degraded_logged = now
                log.warning("chunk %s written degraded: %d of %d pieces on their disks (%s); "
                            "the repair log keeps it for the next repair (said at most once "
                            "a minute)", ref.hex, ok, policy.width, errors[0])

    def _note_abandoned(self, ref: ChunkRef) -> None:
        """The put of REF failed below its quorum with pieces written: note them for the sweep
        to collect after a grace period, unless the log already wants the chunk otherwise."""
        entry = self.repair_log.get(ref.key)
        if entry is None or entry.kind == ABANDONED:
            self.repair_log.note(ref, ABANDONED)

    @staticmethod
    def _collect_puts(futures: dict) -> tuple[list[int], list[BaseException]]:
        failed: list[int] = []
        errors: list[BaseException] = []
        for i, f in futures.items():
            try:
                f.result()
            except (KeyConflict, StaleEpoch):  # a fenced writer: nowhere else helps
                raise
            except ChunkStoreError as e:
                failed.append(i)
                errors.append(e)
        return failed, errors

    def _hand_off(self, ref: ChunkRef, policy: Policy, pieces: list, failed: list[int],
                  errors: list[BaseException]) -> int:
        """Write the pieces whose owners failed on the next disks of the key's walk (hinted
        handoff): the chunk stays fully protected, reads find the pieces there, and repair
        moves them home. Returns how many found a place."""
        walk = self.ring.owners(ref.key, min(self.ring.placing_count, policy.width + _SPARES))[policy.width:]
        spares = [d for d in walk if d in set(self.available_disks())]
        placed = 0
        for i in failed:
            while spares:
                disk_id = spares.pop(0)
                try:
                    self._put_piece(disk_id, ref.key, policy.piece_index(i), ref, pieces[i])
                    placed += 1
                    break
                except (KeyConflict, StaleEpoch):
                    raise
                except ChunkStoreError as e:
                    errors.append(e)
        return placed

    def get(self, ref: ChunkRef) -> bytes:
        self._check_open()
        policy = self._policy(ref)
        payload = self._get_fast(ref, policy)
        if payload is not None:
            return payload
        if isinstance(policy, ReplicationPolicy):
            return self._get_replicated(ref, policy)
        return self._get_ec(ref, policy)

    def _get_fast(self, ref: ChunkRef, policy: Policy) -> bytes | None:
        """The healthy case: the first copy, or the k data fragments, read without per-piece
        checksums and verified as a whole against the chunk key (on a LocalRing every byte is
        hashed once; a RemoteDisk also checks each transfer end to end). Any trouble (a piece
        missing, a disk down, a payload that does not verify) returns None and the careful path
        below reads again, verifying each piece to find the bad one."""
        owners = self.ring.owners(ref.key, policy.width)
        try:
            if isinstance(policy, ReplicationPolicy):
                payload = self._get_piece(owners[0], ref.key, REPLICA_INDEX, False)
            else:
                futures = [self._pool.submit(self._get_piece, owners[i], ref.key, i, False)
                           for i in range(policy.k)]
                frags = {i: f.result() for i, f in enumerate(futures)}
                payload = policy.decode(frags)
        except (ChunkStoreError, PolicyError):
            return None
        return payload if ref.verify(payload) else None

    def _other_disks(self, exclude: Iterable[str]) -> list[str]:
        ex = set(exclude)
        return [d for d in self.available_disks() if d not in ex]

    def _fallback_disks(self, key: bytes, owners: list[str]) -> list[str]:
        """Available non-owners, the next disks of the key's walk first (where handed-off
        pieces are written), then the rest."""
        others = self._other_disks(owners)
        walk = [d for d in self.ring.owners(key, min(self.ring.placing_count, len(owners) + _SPARES))
                if d in others]
        return walk + [d for d in others if d not in walk]

    def _get_replicated(self, ref: ChunkRef, policy: ReplicationPolicy) -> bytes:
        owners = self.ring.owners(ref.key, policy.width)
        trouble = False  # an owner lacked its copy, or a copy was bad / unreachable
        corrupt = False
        for disk_id in owners + self._fallback_disks(ref.key, owners):
            try:
                data = self._get_piece(disk_id, ref.key, REPLICA_INDEX)
            except ChunkNotFound:
                trouble = trouble or disk_id in owners
                continue
            except ChunkCorrupt:
                trouble = corrupt = True
                continue
            except DiskUnavailable:
                trouble = True
                continue
            if ref.verify(data):
                if trouble:
                    self.repair_log.note(ref)
                return data
            trouble = corrupt = True
        if corrupt:
            self.repair_log.note(ref)
            raise ChunkCorrupt(f"chunk {ref.hex}: no copy verifies")
        raise ChunkNotFound(f"chunk {ref.hex} not found")

    def _read_fragments(self, ref: ChunkRef, wanted: list[tuple[str, int]]) -> dict[int, bytes | BaseException]:
        futures = {idx: self._pool.submit(self._get_piece, disk_id, ref.key, idx) for disk_id, idx in wanted}
        out: dict[int, bytes | BaseException] = {}
        for idx, f in futures.items():
            try:
                out[idx] = f.result()
            except ChunkStoreError as e:
                out[idx] = e
        return out

    def _get_ec(self, ref: ChunkRef, policy: ECPolicy) -> bytes:
        owners = self.ring.owners(ref.key, policy.width)
        k = policy.k
        good: dict[int, bytes] = {}
        failed: dict[int, BaseException] = {}

        def take(results: dict[int, bytes | BaseException]) -> None:
            for idx, r in results.items():
                if isinstance(r, BaseException):
                    failed[idx] = r
                else:
                    good[idx] = r
                    failed.pop(idx, None)

        # 1. data fragments first
        take(self._read_fragments(ref, [(owners[i], i) for i in range(k)]))
        # 2. parity when a data fragment is missing or bad
        if len(good) < k:
            take(self._read_fragments(ref, [(owners[i], i) for i in range(k, policy.width)]))
        # 3. pieces that live on other disks (e.g. written while an owner was down)
        if len(good) < k:
            self._search_elsewhere(ref, policy, owners, good)
        # 4. a repair may have moved fragments home between our reads: look once more
        if len(good) < k:
            take(self._read_fragments(ref, [(owners[i], i) for i in range(policy.width) if i not in good]))
            if len(good) < k:
                self._search_elsewhere(ref, policy, owners, good)
        if failed:
            self.repair_log.note(ref)
        if len(good) >= k:
            payload = self._decode_verified(ref, policy, good)
            if payload is not None:
                return payload
            # a fragment verified against its record checksum but is not this chunk's:
            # read everything we have not read yet and try other combinations
            if len(good) < policy.width:
                take(self._read_fragments(ref, [(owners[i], i) for i in range(policy.width) if i not in good]))
                payload = self._decode_verified(ref, policy, good, combos=True)
                if payload is not None:
                    self.repair_log.note(ref)
                    return payload
            self.repair_log.note(ref)
            raise ChunkCorrupt(f"chunk {ref.hex}: fragments do not decode to the chunk")
        if good or any(not isinstance(e, ChunkNotFound) for e in failed.values()):
            raise ChunkCorrupt(f"chunk {ref.hex}: only {len(good)} of {k} needed fragments readable")
        raise ChunkNotFound(f"chunk {ref.hex} not found")

    def _search_elsewhere(self, ref: ChunkRef, policy: Policy, owners: list[str], good: dict[int, bytes]) -> None:
        missing = [i for i in range(policy.width) if i not in good]
        # after a map change a fragment may sit on a disk that now owns another index of the
        # chunk: owners are searched too (except for their own index, already read)
        available = set(self.available_disks())
        candidates = [d for d in owners if d in available] + self._fallback_disks(ref.key, owners)
        for disk_id in candidates:
            for i in list(missing):
                if disk_id == owners[i]:
                    continue
                try:
                    if not self._has_piece(disk_id, ref.key, i):
                        continue
                    good[i] = self._get_piece(disk_id, ref.key, i)
                    missing.remove(i)
                except ChunkStoreError:
                    continue

    def _decode_verified(
        self, ref: ChunkRef, policy: ECPolicy, good: dict[int, bytes], combos: bool = False
    ) -> bytes | None:
        candidates: Iterable[tuple[int, ...]]
        if combos:
            candidates = itertools.islice(itertools.combinations(sorted(good), policy.k), _MAX_DECODE_TRIES)
        else:
            candidates = [tuple(sorted(good))]
        for combo in candidates:
            try:
                payload = policy.decode({i: good[i] for i in combo})
            except PolicyError:
                continue
            if ref.verify(payload):
                return payload
        return None

    @contextlib.contextmanager
    def watching_deletes(self) -> Iterator[set[bytes]]:
        """A set that receives the key of every chunk deleted through this client while the
        context lasts (added before its pieces are tombstoned)."""
        keys: set[bytes] = set()
        with self._disks_lock:
            self._delete_watches.append(keys)
        try:
            yield keys
        finally:
            with self._disks_lock:
                self._delete_watches.remove(keys)

    def delete(self, ref: ChunkRef) -> None:
        self._check_open()
        policy = self._policy(ref)
        with self._disks_lock:
            for keys in self._delete_watches:
                keys.add(ref.key)
        owners = self.ring.owners(ref.key, policy.width)
        futures = [
            self._pool.submit(self._delete_piece, owners[i], ref.key, policy.piece_index(i)) for i in range(policy.width)
        ]
        incomplete = False
        for f in futures:
            try:
                f.result()
            except ChunkStoreError:
                incomplete = True
        if incomplete:
            self.repair_log.note(ref, DELETED)
        else:
            entry = self.repair_log.get(ref.key)
            if entry is not None and entry.kind == NEEDS_REPAIR:
                self.repair_log.clear(ref.key)

    def capacity(self) -> Capacity:
        total = free = used = 0
        seen: set[int] = set()
        for disk_id in self.available_disks():
            try:
                st = self.call(disk_id, lambda ds: ds.stats())
            except ChunkStoreError:
                continue
            used += st.used_bytes
            if st.fs_dev not in seen:
                seen.add(st.fs_dev)
                total += st.fs_total_bytes
                free += st.fs_free_bytes
        return Capacity(total, free, used)

    def _close_disks(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._pool.shutdown(wait=True)
        with self._disks_lock:
            disks, self._disks = list(self._disks.values()), {}
        for ds in disks:
            try:
                ds.close()
            except Exception:
                pass
        self.repair_log.close()
