"""An in-process ring client for unit tests: a RingStore over the disks of a local cluster
directory, each behind a :class:`FaultyDisk` that can raise chosen errors, hold calls until
released, and records every call made after it was closed."""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Iterator

from chunkstore.api import DiskBackend
from chunkstore.disk.index import PieceInfo
from chunkstore.disk.records import CompactReport, DiskStats
from chunkstore.disk.store import DiskStore
from chunkstore.placement.layout import REPAIR_LOG_DIR
from chunkstore.placement.ring import Ring
from chunkstore.protection.policy import PolicyCode
from chunkstore.ring import localcluster as cl
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.repairlog import RepairLog
from chunkstore.roots import RootRecord


class FaultyDisk:
    """A DiskBackend in front of another one.

    ``fail_next(method, error)`` makes the next call of ``method`` raise ``error`` (queued, one
    per call); ``hold(method, gate, entered)`` makes every call of ``method`` wait until
    ``gate`` is set (``entered`` is set when one is waiting). ``inside`` counts calls in
    progress; calls made after :meth:`close` are listed in ``after_close``."""

    def __init__(self, inner: DiskBackend) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.inside = 0
        self.after_close: list[str] = []
        self.closed = False
        self._faults: dict[str, list[BaseException]] = {}
        self._holds: dict[str, tuple[threading.Event, threading.Event]] = {}
        self._lock = threading.Lock()

    def fail_next(self, method: str, error: BaseException) -> None:
        with self._lock:
            self._faults.setdefault(method, []).append(error)

    def hold(self, method: str, gate: threading.Event, entered: threading.Event) -> None:
        self._holds[method] = (gate, entered)

    def _enter(self, method: str) -> None:
        with self._lock:
            if self.closed:
                self.after_close.append(method)
            self.calls[method] += 1
            self.inside += 1
            queue = self._faults.get(method)
            error = queue.pop(0) if queue else None
        try:
            if error is not None:
                raise error
            held = self._holds.get(method)
            if held is not None:
                gate, entered = held
                entered.set()
                gate.wait()
        except BaseException:
            self._leave()
            raise

    def _leave(self) -> None:
        with self._lock:
            self.inside -= 1

    def _run(self, method: str, fn):
        self._enter(method)
        try:
            return fn()
        finally:
            self._leave()

    def put(self, key: bytes, frag_idx: int, policy_code: PolicyCode, chunk_size: int,
            data: bytes | memoryview) -> None:
        self._run("put", lambda: self.inner.put(key, frag_idx, policy_code, chunk_size, data))

    def get(self, key: bytes, frag_idx: int, verify: bool = True) -> bytes:
        return self._run("get", lambda: self.inner.get(key, frag_idx, verify))

    def has(self, key: bytes, frag_idx: int) -> bool:
        return self._run("has", lambda: self.inner.has(key, frag_idx))

    def delete(self, key: bytes, frag_idx: int, decided_at: float | None = None) -> None:
        self._run("delete", lambda: self.inner.delete(key, frag_idx, decided_at))

    def pieces(self) -> Iterator[PieceInfo]:
        return iter(self._run("pieces", lambda: list(self.inner.pieces())))

    def stats(self) -> DiskStats:
        return self._run("stats", self.inner.stats)

    def compact(self, min_dead_ratio: float = 0.3) -> CompactReport:
        return self._run("compact", lambda: self.inner.compact(min_dead_ratio))

    def check_alive(self) -> None:
        self._run("check_alive", self.inner.check_alive)

    def put_root(self, volume_id: bytes, seq: int, body: bytes) -> int:
        return self._run("put_root", lambda: self.inner.put_root(volume_id, seq, body))

    def get_root(self, volume_id: bytes) -> RootRecord | None:
        return self._run("get_root", lambda: self.inner.get_root(volume_id))

    def list_roots(self) -> list[tuple[bytes, int]]:
        return self._run("list_roots", self.inner.list_roots)

    def close(self) -> None:
        with self._lock:
            self.closed = True
        self.inner.close()


class DiskRing(RingStore):
    """A RingStore over a local cluster directory's disks, each a :class:`FaultyDisk`
    (``backends``). No cluster lock; ``refresh_map`` only counts its calls (``map_refreshes``);
    a disk marked down stays down."""

    def __init__(self, data_dir: str | os.PathLike) -> None:
        self.data_dir = os.fspath(data_dir)
        config = cl.load_config(self.data_dir)
        self.ring = Ring(cl.load_ring(self.data_dir))
        self._init_disks()
        self.backends: dict[str, FaultyDisk] = {}
        for d in config.disks:
            store = DiskStore(config.disk_path(self.data_dir, d.id), cluster_id=config.cluster_id,
                              disk_id=d.id)
            self.backends[d.id] = self._disks[d.id] = FaultyDisk(store)
        self.repair_log = RepairLog(os.path.join(self.data_dir, REPAIR_LOG_DIR))
        self.map_refreshes = 0
        self._start_pool(8)

    def disk_ids(self) -> list[str]:
        return sorted(self.backends)

    def revive_disk(self, disk_id: str) -> bool:
        return False

    def refresh_map(self, from_disk: str | None = None) -> bool:
        self.map_refreshes += 1
        return True

    def hold_reads(self, gate: threading.Event) -> threading.Event:
        """Every piece read waits until ``gate`` is set; the event returned is set once one
        is waiting."""
        entered = threading.Event()
        for b in self.backends.values():
            b.hold("get", gate, entered)
        return entered

    def calls_after_close(self) -> dict[str, list[str]]:
        return {d: b.after_close for d, b in self.backends.items() if b.after_close}

    def calls_inside(self) -> int:
        return sum(b.inside for b in self.backends.values())

    def close(self) -> None:
        self._close_disks()
        for b in self.backends.values():  # those marked down too
            b.close()
