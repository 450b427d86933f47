"""The abstract chunk-store interface used by the sofs file layer.

A chunk store keeps immutable, content-addressed payloads. ``put`` names the payload by its
blake3-160 key, protects it according to a :class:`~chunkstore.protection.policy.Protection` and returns
a :class:`~chunkstore.placement.keys.ChunkRef` to be kept in the caller's metadata; ``get`` gives back the
verified payload for a ref. Chunks are never modified; the same payload put twice yields the
same key (content dedup), and reference counting / garbage collection of unreferenced chunks
is the caller's job (``delete`` removes the chunk whatever else refers to it).

Besides chunks, a store keeps one small, mutable, versioned *root record* per volume
(``put_root`` / ``get_root`` / ``list_roots``; rules in :mod:`chunkstore.roots`): where the
layer above finds its newest metadata checkpoint knowing only the cluster.

All methods are blocking and thread-safe: callers on a trio event loop run them through
``trio.to_thread.run_sync``.

Implementations: :class:`chunkstore.ring.memory.MemoryChunkStore` (tests),
:class:`chunkstore.ring.local.LocalRing` (disks in this process),
:class:`chunkstore.ring.net.NetRing` (disks on storage nodes).

Below the ChunkStore, a ring client talks to each of its disks through a
:class:`DiskBackend`: a local :class:`~chunkstore.disk.store.DiskStore` or a
:class:`~chunkstore.net.client.RemoteDisk`. A networked ring client also offers its
:class:`Membership` (the cluster map and which nodes answer), which the healer turns into map
changes.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Iterator, Protocol, runtime_checkable

from chunkstore.disk.index import PieceInfo
from chunkstore.disk.records import CompactReport, DiskStats
from chunkstore.placement.clustermap import ClusterMap
from chunkstore.placement.keys import ChunkRef
from chunkstore.protection.policy import PolicyCode, Protection
from chunkstore.roots import RootRecord


@dataclass(frozen=True)
class Capacity:
    """Raw capacity numbers in bytes (for statfs).

    ``total_bytes`` / ``free_bytes`` are the raw sums over the distinct underlying filesystems;
    ``used_bytes`` is what the store's own data occupies. Scaling by the protection overhead
    (e.g. /1.5 for EC 4+2) is the caller's decision.
    """

    total_bytes: int
    free_bytes: int
    used_bytes: int


class ChunkStore(abc.ABC):
    """Abstract chunk store. Usable as a context manager (``close`` on exit)."""

    @abc.abstractmethod
    def put(self, payload: bytes, protection: Protection) -> ChunkRef:
        """Store ``payload`` (immutable) and return its ref; the policy is chosen by size.

        Returns once the write quorum of pieces is durable (fsynced). Idempotent for the same
        payload. Raises NotEnoughDisks / DiskFull when the quorum cannot be reached.
        """

    @abc.abstractmethod
    def get(self, ref: ChunkRef) -> bytes:
        """Return the payload, verified against ``ref.key`` and ``ref.size``.

        Raises ChunkNotFound (no piece anywhere) or ChunkCorrupt (pieces exist but too few
        verify). Never returns unverified bytes.
        """

    @abc.abstractmethod
    def delete(self, ref: ChunkRef) -> None:
        """Remove the chunk's pieces. Idempotent: deleting a missing chunk is not an error."""

    @abc.abstractmethod
    def capacity(self) -> Capacity:
        """Raw total/free/used bytes (see :class:`Capacity`)."""

    def put_root(self, volume_id: bytes, seq: int, body: bytes) -> int:
        """Store version ``seq`` of the volume's root record (:mod:`chunkstore.roots`), the one
        small mutable record per volume; returns how many disks hold it. StaleRoot if a newer
        seq is stored, KeyConflict for the same seq with another body, NotEnoughDisks below
        the write quorum; the same seq and body again is a no-op."""
        raise NotImplementedError

    def get_root(self, volume_id: bytes) -> RootRecord | None:
        """The volume's root record with the highest seq stored, or None."""
        raise NotImplementedError

    def get_root_certain(self, volume_id: bytes) -> RootRecord | None:
        """:meth:`get_root`, where None also means that enough of the store answered for any
        record written to a quorum to have been seen (NotEnoughDisks otherwise): a reader
        that stops at the first missing record (a journal's end) must not stop early because
        the disks holding it are away. A store on one machine answers for all of it."""
        return self.get_root(volume_id)

    def list_roots(self) -> dict[bytes, int]:
        """volume_id -> highest root record seq stored."""
        raise NotImplementedError

    @abc.abstractmethod
    def close(self) -> None:
        """Release resources (files, locks, threads). Idempotent."""

    def __enter__(self) -> "ChunkStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@runtime_checkable
class DiskBackend(Protocol):
    """One disk as a ring client uses it: the methods the data path
    (:mod:`chunkstore.ring.datapath`), the repair sweep (:mod:`chunkstore.healing.sweep`) and
    the mount's compaction call. Satisfied by :class:`~chunkstore.disk.store.DiskStore` and
    :class:`~chunkstore.net.client.RemoteDisk`; blocking and thread-safe. Errors are
    chunkstore errors (DiskUnavailable when the disk cannot be used at all)."""

    def put(self, key: bytes, frag_idx: int, policy_code: PolicyCode, chunk_size: int,
            data: bytes | memoryview) -> None:
        """Store one piece durably (idempotent; KeyConflict for other bytes)."""

    def get(self, key: bytes, frag_idx: int, verify: bool = True) -> bytes:
        """The piece's data (ChunkNotFound, ChunkCorrupt); ``verify``: against its checksum."""

    def has(self, key: bytes, frag_idx: int) -> bool:
        """Whether the piece is indexed on this disk."""

    def delete(self, key: bytes, frag_idx: int, decided_at: float | None = None) -> None:
        """Tombstone the piece (idempotent); with ``decided_at``, KeyConflict instead if a put
        of it landed at or after that time (DiskStore.delete)."""

    def pieces(self) -> Iterator[PieceInfo]:
        """Every piece indexed on the disk."""

    def stats(self) -> DiskStats:
        """Usage of the disk and of its filesystem."""

    def compact(self, min_dead_ratio: float = 0.3) -> CompactReport:
        """Rewrite containers that are mostly dead."""

    def check_alive(self) -> None:
        """DiskUnavailable if the disk cannot be used."""

    def put_root(self, volume_id: bytes, seq: int, body: bytes) -> int:
        """Store a volume root record (:mod:`chunkstore.roots`); the seq held afterwards."""

    def get_root(self, volume_id: bytes) -> RootRecord | None:
        """The volume's root record on this disk, or None (ChunkCorrupt if it does not verify)."""

    def list_roots(self) -> list[tuple[bytes, int]]:
        """(volume_id, seq) of every root record on this disk."""

    def close(self) -> None:
        """Release the disk (idempotent); later calls raise DiskUnavailable."""


class Membership(Protocol):
    """A networked RING's members as its client sees them (``RingStore.membership``): what the
    healer needs to turn long silences into map changes, and the status display shows."""

    cmap: ClusterMap  # the newest cluster map this client has adopted
    # the cluster's etcd (an EtcdClient) when it has one: liveness and map changes are then
    # etcd's (chunkstore.healing.healer), else None
    etcd: Any

    def unreachable_for(self) -> dict[str, float]:
        """Node id -> seconds it has not answered (on the monotonic clock)."""

    def suspects(self) -> dict[str, float]:
        """Node id -> wall-clock time (unix) since which it has not answered (for display)."""

    def publish(self, cmap: ClusterMap) -> dict[str, str]:
        """Adopt ``cmap`` and offer it to every member node; node id -> why it did not take it."""
