"""HostedRing: a client of an embedded RING whose disks a *ring host* process serves.

On an embedded data directory (``cluster.json``) one process at a time may open the disk
stores (the cluster lock). So that several volumes can be mounted at once, that process is
the data directory's ring host (``fuse_mount.ringhost``): it holds the
:class:`~chunkstore.ring.local.LocalRing` (its disks, repair log, healer) and serves the disks
over the storage nodes' wire protocol on the loopback interface, exactly as a ``sofs-node``
does. Each mount is then a :class:`HostedRing`: the data path of
:class:`~chunkstore.ring.datapath.RingStore` (placement, quorum writes, erasure coding,
degraded reads) runs in the mount process, every disk being a
:class:`~chunkstore.net.client.RemoteDisk` to the host.

What the host publishes, in the data directory (written only by the host, which holds the
cluster lock)::

    run/ringhost.json    {"pid", "host", "port", "epoch", "started", "idle_exit_s"}: where it
                         listens, the ring epoch it serves, and whether it ends by itself
                         (:class:`HostState`, replaced atomically; pid 0 once it stopped)
    run/ringhost.secret  the handshake secret (mode 0600), made at the host's first start

Placement comes from the data directory's own ``cluster.json`` and ``ring.json``. The host
answers StaleMap to a request made with an older ring epoch (after ``disk add``); the client
then re-reads both files (:meth:`HostedRing.refresh_map`) and retries, as a networked client
fetches a newer map.

A disk the host reports unavailable, or a host that does not answer, leaves the client's
read/write set; a reviver thread tries the down disks again every ``revive_s`` seconds (on the
injected clock), re-reading the host's address first (a restarted host may listen on another
port).

The repair log (:class:`HostedRepairLog`): the host's healer sweeps, so what a client notes
(degraded writes and reads, deletes that did not reach every disk) is forwarded to the host's
log through ``forward(op, args)`` (the host's admin socket, given by the layer above), and
kept in the client's own log (``repairlog-INSTANCE``) for its data path. At open, the
host's DELETED entries are merged into it (the open fails if the host cannot say which), so
a chunk written again after an incomplete delete is cleared in the host's log before its put
returns (else the host's sweep would remove its new pieces): that forward must succeed, or
the put fails, and the local entry stays until it does, so a retry forwards it again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.errors import ChunkStoreError, DiskUnavailable, FormatError, RingHostDown
from chunkstore.net.client import RemoteDisk
from chunkstore.net.wire.auth import load_secret
from chunkstore.placement.keys import ChunkRef
from chunkstore.placement.layout import HOST_SECRET_FILE, HOST_STATE_FILE, REPAIR_LOG_DIR, RUN_DIR
from chunkstore.placement.ring import Ring
from chunkstore.protection.policy import PolicyCode
from chunkstore.ring import localcluster as cl
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.repairlog import DELETED, RepairLog

log = logging.getLogger("sofs.hostedring")

# forward(op, args): run the host's admin op (raises ChunkStoreError when it cannot)
Forward = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class HostState:
    """Contents of ``run/ringhost.json``: the ring host's process and address."""

    pid: int
    host: str
    port: int
    epoch: int
    started: float
    idle_exit_s: float = 5.0  # 0: it never ends by itself (run by systemd)

    @property
    def alive(self) -> bool:
        """Whether its process runs (a zombie does not: the host is nobody's child, and
        whoever adopted it may reap it late)."""
        if self.pid <= 0:  # written by a host that stopped (its port is kept for the next)
            return False
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
        except (OSError, IndexError):
            return False

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "port": self.port,
                           "epoch": self.epoch, "started": self.started,
                           "idle_exit_s": self.idle_exit_s})


def host_state(data_dir: str | os.PathLike) -> HostState | None:
    """The ring host's published state, if its file is there and well formed (its process
    may have died since: see :attr:`HostState.alive`)."""
    try:
        with open(os.path.join(os.fspath(data_dir), HOST_STATE_FILE), "rb") as f:
            doc = json.loads(f.read(4096))
        return HostState(pid=int(doc["pid"]), host=str(doc["host"]), port=int(doc["port"]),
                         epoch=int(doc["epoch"]), started=float(doc["started"]),
                         idle_exit_s=float(doc.get("idle_exit_s", 5.0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_host(data_dir: str | os.PathLike) -> HostState | None:
    """The ring host's state if its process is alive."""
    st = host_state(data_dir)
    return st if st is not None and st.alive else None


def secret_path(data_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(data_dir), HOST_SECRET_FILE)


def make_secret(data_dir: str | os.PathLike) -> bytes:
    """The host's handshake secret, made (mode 0600, 32 random bytes as hex) if missing."""
    path = secret_path(data_dir)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return load_secret(path)
    try:
        os.write(fd, os.urandom(32).hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return load_secret(path)


class HostedRepairLog(RepairLog):
    """The client's repair log, each change also forwarded to the host's (module docstring)."""

    def __init__(self, path: str | os.PathLike, forward: Forward | None) -> None:
        super().__init__(path)
        self._forward = forward

    def merge_deleted(self) -> None:
        """Take the host's DELETED entries into this log (see the module docstring).
        RingHostDown if the host cannot say: without them, a chunk written again would not
        be cleared in the host's log, whose sweep would then remove its new pieces."""
        if self._forward is None:
            return
        try:
            entries = self._forward("repair-deleted", {})
        except ChunkStoreError as e:
            raise RingHostDown(f"cannot read the ring host's deleted chunks: {e}") from e
        for doc in entries:
            try:
                ref = ChunkRef(bytes.fromhex(doc["key"]), int(doc["size"]),
                               PolicyCode.from_bytes(bytes.fromhex(doc["policy"])))
            except (KeyError, TypeError, ValueError, FormatError):
                continue
            super().note(ref, DELETED)

    def note(self, ref: ChunkRef, kind: int = 1) -> None:
        super().note(ref, kind)
        self._send("repair-note", {"key": ref.key.hex(), "size": ref.size,
                                   "policy": ref.policy.to_bytes().hex(), "kind": kind},
                   must=False)

    def clear(self, key: bytes) -> None:
        entry = self.get(key)
        if entry is not None and entry.kind == DELETED:
            # the chunk is written again: the host must know first, and the entry stays here
            # while it does not, so that the put's retry tells it again
            self._send("repair-clear", {"key": key.hex()}, must=True)
            super().clear(key)
            return
        super().clear(key)
        self._send("repair-clear", {"key": key.hex()}, must=False)

    def _send(self, op: str, args: dict[str, Any], must: bool) -> None:
        if self._forward is None:
            return
        try:
            self._forward(op, args)
        except ChunkStoreError as e:
            if must:
                raise DiskUnavailable(f"cannot tell the ring host that chunk {args['key']} "
                                      f"is written again: {e}") from e
            log.warning("repair log: could not forward %s of chunk %s to the ring host: %s",
                        op, args["key"], e)


class HostedRing(RingStore):
    """A client of the data directory's ring host (see module docstring). Use :meth:`open`."""

    def __init__(self, data_dir: str | os.PathLike, instance: str, *,
                 forward: Forward | None = None, timeout: float = 10.0,
                 workers: int | None = None, revive_s: float = 2.0,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.data_dir = os.fspath(data_dir)
        self.instance = instance
        self.timeout = timeout
        self.revive_s = revive_s
        self._clock = clock
        self._init_disks()
        self._map_lock = threading.RLock()
        self._remote: dict[str, RemoteDisk] = {}
        self._lock = cl.ClusterLock(self.data_dir, os.path.join(RUN_DIR, f"hosted-{instance}.lock"))
        try:
            state = running_host(self.data_dir)
            if state is None:
                raise RingHostDown(f"{self.data_dir}: the embedded ring's host process is not "
                                   "running (it is started by the first mount)")
            self.host = state
            self._secret = load_secret(secret_path(self.data_dir))
            self.config = cl.load_config(self.data_dir)
            self.ring = Ring(cl.load_ring(self.data_dir))
            self._connect()
            self.repair_log = HostedRepairLog(
                os.path.join(self.data_dir, f"{REPAIR_LOG_DIR}-{instance}"), forward)
            self.repair_log.merge_deleted()
        except BaseException:
            if hasattr(self, "repair_log"):
                self.repair_log.close()
            self._close_remotes()
            self._lock.release()
            raise
        self._start_pool(workers or min(32, 2 * max(1, len(self.config.disks))))
        self._stop = threading.Event()
        self._reviver = threading.Thread(target=self._revive_loop, name="hosted-revive",
                                         daemon=True)
        self._reviver.start()

    @classmethod
    def open(cls, data_dir: str | os.PathLike, instance: str, **kw: Any) -> "HostedRing":
        """Connect to the running ring host (RingHostDown if there is none)."""
        return cls(data_dir, instance, **kw)

    # -- the ring and the host's address ------------------------------------------------------

    def _connect(self) -> None:
        """One RemoteDisk per configured disk, to the host's address, at the ring's epoch."""
        with self._map_lock:
            epoch = self.ring.data.epoch
            for d in self.config.disks:
                rd = self._remote.get(d.id)
                if rd is not None and (rd.host, rd.port) == (self.host.host, self.host.port):
                    rd.set_epoch(epoch)
                    continue
                if rd is not None:
                    rd.close()
                rd = RemoteDisk(self.host.host, self.host.port, d.id, self._secret,
                                self.timeout, epoch=epoch, clock=self._clock)
                self._remote[d.id] = rd
                with self._disks_lock:
                    self._disks[d.id] = rd
                    self._down.pop(d.id, None)

    def refresh_map(self, from_disk: str | None = None) -> bool:
        """Re-read ``cluster.json``, ``ring.json`` and the host's address; True if the ring
        epoch or the address changed (then the disks are reconnected)."""
        with self._map_lock:
            try:
                config = cl.load_config(self.data_dir)
                data = cl.load_ring(self.data_dir)
            except ChunkStoreError as e:
                log.warning("cannot re-read the embedded ring's files: %s", e)
                return False
            state = running_host(self.data_dir) or self.host
            moved = (state.host, state.port) != (self.host.host, self.host.port)
            if data.epoch == self.ring.data.epoch and not moved:
                return False
            self.config, self.host = config, state
            if data.epoch != self.ring.data.epoch:
                self.ring = Ring(data)
                log.info("embedded ring epoch %d taken (%d disks)", data.epoch, len(config.disks))
            self._connect()
            return True

    def disk_ids(self) -> list[str]:
        return [d.id for d in self.config.disks]

    def mark_down(self, disk_id: str, reason: str) -> None:
        """Stop using a disk until the reviver finds it answering (its connection is kept)."""
        with self._disks_lock:
            self._disks.pop(disk_id, None)
            fresh = disk_id not in self._down
            if disk_id in self._remote:
                self._down[disk_id] = reason
        if fresh:
            log.warning("disk %s is unavailable (%s): reads and writes go around it", disk_id,
                        reason)

    def revive_disk(self, disk_id: str) -> bool:
        self.refresh_map()  # a restarted host may listen elsewhere, the ring may have grown
        return self._take_back(disk_id, self._remote.get(disk_id))

    def _revive_loop(self) -> None:
        while not self._clock.wait(self._stop, self.revive_s):
            try:
                for disk_id in list(self.unavailable_disks()):
                    self.revive_disk(disk_id)
            except Exception:  # never let the reviver die
                log.exception("reviving disks failed")

    # -- closing ------------------------------------------------------------------------------

    def _close_remotes(self) -> None:
        for rd in self._remote.values():
            rd.close()

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._stop.set()
        self._reviver.join(timeout=30)
        self._close_disks()
        self._close_remotes()
        self._lock.release()

    def __repr__(self) -> str:
        return (f"HostedRing({self.data_dir!r}, host {self.host.host}:{self.host.port}, "
                f"disks={len(self._remote)}, down={sorted(self._down)})")
