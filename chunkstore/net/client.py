"""RemoteDisk: a disk served by a ``sofs-node``, with the DiskStore method signatures.

``RemoteDisk(host, port, disk_id, secret)`` offers put / get(key, frag_idx, verify=True) /
delete / has / piece / pieces / stats / compact / check_alive / put_root / get_root /
list_roots / close, blocking and thread-safe like :class:`~chunkstore.disk.store.DiskStore`:
both satisfy :class:`chunkstore.api.DiskBackend`, so the ring clients
(:meth:`chunkstore.ring.datapath.RingStore.call`) use either. Protocol:
:mod:`chunkstore.net.wire`.

Connections: a small pool of authenticated connections (at most ``max_connections`` at once;
a caller beyond that waits for one). Each call takes a connection, sends one request, reads
its answer and puts the connection back. A pooled connection found broken (the node closed an
idle connection, or restarted) is dropped and the call re-dialled once on a fresh one; every
request is idempotent, so the retry is safe.

Errors: cannot connect, connection lost, no answer within ``timeout`` seconds (per socket
operation), or the node crashed -> DiskUnavailable naming the address; the handshake failed
-> AuthError (a DiskUnavailable); an ERROR frame -> its mapped exception (ChunkNotFound,
KeyConflict, ...) with the node's address in front of the message; a malformed answer or GET
data failing its end-to-end checksum -> WireError (the connection is dropped). A GET answer
carries the checksum the disk stored with the piece, so that check also catches a piece that
rotted on disk when the node was asked not to verify it (``get(..., verify=False)``).
"""

from __future__ import annotations

import threading
from typing import Iterator, TypeVar

from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.disk.index import PieceInfo
from chunkstore.disk.records import CompactReport, DiskStats
from chunkstore.errors import AuthError, DiskUnavailable, WireError
from chunkstore.net.wire.auth import client_handshake
from chunkstore.net.wire.encode import encode_request, validate_id
from chunkstore.net.wire.frames import ERROR_CODES, Kind, Op
from chunkstore.net.wire.messages import (
    Blob,
    Check,
    Compact,
    Delete,
    ErrorReply,
    Fence,
    FenceHeld,
    Frame,
    Get,
    Has,
    MapDoc,
    MapEpoch,
    MapGet,
    MapPut,
    Piece,
    Pieces,
    Ping,
    Pong,
    Put,
    Request,
    RootFound,
    RootGet,
    RootHeld,
    RootList,
    RootPut,
    RootSeqs,
    Stats,
    StreamEnd,
)
from chunkstore.net.wire.transport import BlockingConnection
from chunkstore.protection.policy import PolicyCode
from chunkstore.roots import RootRecord, check_volume_id

T = TypeVar("T")


class RemoteDisk:
    """One disk on a remote node (see module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        disk_id: str,
        secret: bytes,
        timeout: float = 10.0,
        *,
        max_connections: int = 8,
        max_idle_age: float = 60.0,
        compact_timeout: float = 3600.0,
        epoch: int = 0,
        clock: Clock = SYSTEM_CLOCK,
        fence: tuple[bytes, int] | None = None,
    ) -> None:
        validate_id(disk_id, "disk")  # WireError for an id the wire cannot carry
        self.host = host
        self.port = port
        self.disk_id = disk_id
        self.address = f"{host}:{port}"
        self.timeout = timeout
        self.compact_timeout = max(compact_timeout, timeout)
        self.max_idle_age = max_idle_age  # seconds an idle pooled connection is reused (on clock)
        self._clock = clock
        self.node_id: str | None = None
        self._secret = secret
        self.epoch = epoch  # our cluster-map epoch, announced (PING) on every new connection
        self.node_epoch = 0  # the node's map epoch, as its last PING answer said
        # (volume id, lease token) declared (FENCE) on every new connection; None: none
        self.fence = fence
        self.node_fence = 0  # the node's token for that volume, as its last FENCE answer said
        self._lock = threading.Lock()
        self._idle: list[tuple[BlockingConnection, float]] = []
        self._slots = threading.BoundedSemaphore(max_connections)
        self._closed = False
        self._next_id = 0

    # -- connections --------------------------------------------------------------------

    def _where(self) -> str:
        return f"node {self.address} (disk {self.disk_id})"

    def _dial(self) -> BlockingConnection:
        conn = None
        try:
            conn = BlockingConnection.connect(self.host, self.port, self.timeout)
            self.node_id = client_handshake(conn, self._secret)
            conn.map_epoch = epoch = self.epoch
            if epoch:
                conn.send(encode_request(0, Ping(epoch)))
                frame = conn.receive_frame()
                if frame.kind != Kind.RESPONSE or frame.op != Op.PING:
                    raise WireError(f"expected a PING answer, got {Kind(frame.kind).name}")
                self.node_epoch = frame.expect(Pong).epoch
            fence = self.fence
            if fence is not None:
                conn.send(encode_request(0, Fence(*fence)))
                frame = conn.receive_frame()
                if frame.kind == Kind.ERROR:
                    raise frame.expect(ErrorReply).to_exception()
                # a higher token: the node refuses this connection's writes (StaleEpoch);
                # reads go on
                self.node_fence = frame.expect(FenceHeld).token
            return conn
        except AuthError as e:
            if conn is not None:
                conn.close()
            raise AuthError(f"{self._where()}: {e}") from None
        except (OSError, WireError) as e:
            if conn is not None:
                conn.close()
            raise DiskUnavailable(f"{self._where()}: cannot connect: {e or type(e).__name__}") from None

    def _checkout(self) -> tuple[BlockingConnection, bool]:
        """A connection and whether it was reused from the pool."""
        now = self._clock.monotonic()
        with self._lock:
            if self._closed:
                raise DiskUnavailable(f"{self._where()}: RemoteDisk is closed")
            while self._idle:
                conn, since = self._idle.pop()
                if now - since <= self.max_idle_age and conn.map_epoch == self.epoch:
                    return conn, True
                conn.close()
        return self._dial(), False

    def _checkin(self, conn: BlockingConnection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append((conn, self._clock.monotonic()))
                return
        conn.close()

    def _acquire_slot(self) -> None:
        if not self._slots.acquire(timeout=self.timeout):
            raise DiskUnavailable(f"{self._where()}: no free connection within {self.timeout}s")

    def _exchange(self, req: Request, timeout: float | None) -> tuple[BlockingConnection, int, Frame]:
        """Send ``req`` and read the first answer frame, re-dialling once if a pooled
        connection turns out broken. The caller owns the returned connection."""
        with self._lock:
            self._next_id = rid = (self._next_id + 1) & 0xFFFFFFFF
        parts = encode_request(rid, req)  # WireError for an invalid argument, before any I/O
        for attempt in (0, 1):
            conn, reused = self._checkout()
            try:
                conn.sock.settimeout(timeout or self.timeout)
                conn.send(parts)
                frame = conn.receive_frame()
                if frame.kind == Kind.ERROR and frame.op == Op.NONE:
                    conn.close()  # the node could not parse our frame and dropped the connection
                    self._raise_error(frame)
                if frame.req_id != rid or frame.op != req.op:
                    raise WireError(f"answer for request {frame.req_id}/{frame.op}, expected {rid}/{int(req.op)}")
                return conn, rid, frame
            except TimeoutError:
                conn.close()
                raise DiskUnavailable(f"{self._where()}: no answer within {timeout or self.timeout}s") from None
            except ConnectionError as e:
                conn.close()
                if reused and attempt == 0:
                    continue  # stale pooled connection: dial a fresh one, once
                raise DiskUnavailable(f"{self._where()}: connection lost: {e or type(e).__name__}") from None
            except OSError as e:
                conn.close()
                raise DiskUnavailable(f"{self._where()}: {e}") from None
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_error(self, frame: Frame) -> None:
        reply = frame.expect(ErrorReply)
        raise ERROR_CODES[reply.code](f"{self.address}: {reply.message}")

    def _call(self, req: Request, answer: type[T], timeout: float | None = None) -> T:
        """Send ``req`` and return its answer, which must be an ``answer`` (WireError if not)."""
        return self._response(req, timeout).expect(answer)

    def _call_optional(self, req: Request, answer: type[T]) -> T | None:
        """:meth:`_call` for an answer that may be None (PIECE, ROOT_GET)."""
        return self._response(req, None).expect_optional(answer)

    def _response(self, req: Request, timeout: float | None) -> Frame:
        self._acquire_slot()
        try:
            conn, _, frame = self._exchange(req, timeout)
            if frame.kind == Kind.RESPONSE:
                self._checkin(conn)
                return frame
            if frame.kind == Kind.ERROR:
                self._checkin(conn)
                self._raise_error(frame)
            conn.close()
            raise WireError(f"{self._where()}: unexpected {Kind(frame.kind).name} frame")
        finally:
            self._slots.release()

    # -- the DiskStore API --------------------------------------------------------------

    def put(self, key: bytes, frag_idx: int, policy_code: PolicyCode, chunk_size: int, data: bytes | memoryview) -> None:
        """Store one piece durably on the node (idempotent; KeyConflict for other bytes)."""
        self._call(Put.make(self.disk_id, key, frag_idx, policy_code, chunk_size, data), type(None))

    def get(self, key: bytes, frag_idx: int, verify: bool = True) -> bytes:
        """The piece's data (``verify``: the node checks it against its stored checksum;
        the end-to-end transfer checksum is always checked here)."""
        return bytes(self._call(Get(self.disk_id, bytes(key), frag_idx, verify), Blob).data)

    def delete(self, key: bytes, frag_idx: int, decided_at: float | None = None) -> None:
        """Tombstone the piece; conditional with ``decided_at`` (DiskStore.delete; a time by
        this client's clock, sent as how long ago it was: see DELETE in wire/frames.py)."""
        ago = None if decided_at is None else max(0.0, self._clock.time() - decided_at)
        self._call(Delete(self.disk_id, bytes(key), frag_idx, ago), type(None))

    def has(self, key: bytes, frag_idx: int) -> bool:
        return self._call(Has(self.disk_id, bytes(key), frag_idx), bool)

    def piece(self, key: bytes, frag_idx: int) -> PieceInfo | None:
        return self._call_optional(Piece(self.disk_id, bytes(key), frag_idx), PieceInfo)

    def stats(self) -> DiskStats:
        return self._call(Stats(self.disk_id), DiskStats)

    def compact(self, min_dead_ratio: float = 0.3) -> CompactReport:
        """Compaction on the node (waits up to ``compact_timeout`` for the answer)."""
        return self._call(Compact(self.disk_id, min_dead_ratio), CompactReport, timeout=self.compact_timeout)

    def check_alive(self) -> None:
        """DiskUnavailable if the node is unreachable or its disk is gone."""
        self._call(Check(self.disk_id), type(None))

    def put_root(self, volume_id: bytes, seq: int, body: bytes) -> int:
        """DiskStore.put_root on the node: the seq the disk holds afterwards."""
        rec = RootRecord(volume_id, seq, body)  # FormatError before any I/O
        return self._call(RootPut(self.disk_id, rec.volume_id, rec.seq, rec.body), RootHeld).seq

    def get_root(self, volume_id: bytes) -> RootRecord | None:
        """DiskStore.get_root on the node (ChunkCorrupt if its record does not verify)."""
        volume_id = check_volume_id(volume_id)
        found = self._call_optional(RootGet(self.disk_id, volume_id), RootFound)
        return None if found is None else RootRecord(volume_id, found.seq, found.body)

    def list_roots(self) -> list[tuple[bytes, int]]:
        """DiskStore.list_roots on the node: (volume_id, seq) of every root record."""
        return list(self._call(RootList(self.disk_id), RootSeqs).entries)

    def ping(self, epoch: int = 0) -> Pong:
        """Send our cluster-map epoch; returns the node's epoch and id."""
        return self._call(Ping(epoch), Pong)

    def set_epoch(self, epoch: int) -> None:
        """Adopt a new cluster-map epoch: connections made with the old one are not reused."""
        with self._lock:
            self.epoch = epoch
            stale, self._idle = self._idle, []
        for conn, _ in stale:
            conn.close()

    def set_fence(self, volume_id: bytes, token: int) -> int:
        """Declare a new lease token for our volume (a takeover): connections made with the
        old one are not reused; returns the highest token the node holds afterwards (ours,
        or a newer one: StaleEpoch on the next write)."""
        with self._lock:
            self.fence = (volume_id, token)
            stale, self._idle = self._idle, []
        for conn, _ in stale:
            conn.close()
        return self._call(Fence(volume_id, token), FenceHeld).token

    def get_map(self) -> bytes:
        """The node's cluster map (JSON; b"" if it has none)."""
        return self._call(MapGet(), MapDoc).doc

    def put_map(self, doc: bytes) -> int:
        """Offer a cluster map to the node; returns the node's epoch afterwards."""
        epoch = self._call(MapPut(doc), MapEpoch).epoch
        self.node_epoch = epoch
        return epoch

    def pieces(self) -> Iterator[PieceInfo]:
        """Every piece indexed on the disk, streamed in batches (a generator: errors are
        raised on iteration). Abandoning it early drops its connection."""
        self._acquire_slot()
        try:
            conn, rid, frame = self._exchange(Pieces(self.disk_id), None)
            finished = False
            try:
                count = 0
                while True:
                    if frame.req_id != rid or frame.op != Op.PIECES:
                        raise WireError(f"{self._where()}: answer for another request in a PIECES stream")
                    if frame.kind == Kind.ITEM:
                        batch = frame.expect(tuple)  # Items: a tuple of PieceInfo (the decoder built it)
                        yield from batch
                        count += len(batch)
                    elif frame.kind == Kind.END:
                        total = frame.expect(StreamEnd).count
                        if total != count:
                            raise WireError(f"{self._where()}: PIECES stream ended after {count} of {total}")
                        finished = True
                        return
                    elif frame.kind == Kind.ERROR:
                        finished = True
                        self._raise_error(frame)
                    else:
                        raise WireError(f"{self._where()}: unexpected {Kind(frame.kind).name} frame in a PIECES stream")
                    try:
                        frame = conn.receive_frame()
                    except TimeoutError:
                        raise DiskUnavailable(f"{self._where()}: PIECES stream stalled for {self.timeout}s") from None
                    except OSError as e:
                        raise DiskUnavailable(f"{self._where()}: connection lost: {e or type(e).__name__}") from None
            finally:
                if finished:
                    self._checkin(conn)
                else:
                    conn.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        """Close the pooled connections; later calls raise DiskUnavailable. Idempotent."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def __enter__(self) -> "RemoteDisk":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteDisk({self.address!r}, disk_id={self.disk_id!r})"
