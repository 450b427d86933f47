"""The storage node's server: one trio task per connection, requests against its DiskStores.

A :class:`Node` serves the disks of one server (``sofs-node``, :mod:`chunkstore.net.node`, is
the process around it). Protocol: :mod:`chunkstore.net.wire`.

A disk that cannot be opened (missing, foreign, unreadable) is logged and served as
unavailable: its requests are answered DiskUnavailable, the other disks are served.

Concurrency: one trio task reads each connection; every request runs in its own task, its
blocking DiskStore call in ``trio.to_thread.run_sync`` behind one CapacityLimiter: one
thread hop per disk request (per batch of a PIECES stream). A PUT's data is hashed once, in
that thread (the end-to-end check; the disk stores that checksum); a GET is one DiskStore
call that looks the piece up once and reads it, answered with the stored checksum.

Memory is bounded by a byte budget (:mod:`chunkstore.net.budget`): the reader reserves a
request's body length before reading it (a full budget stops it reading, so TCP pushes back
on the client) and a GET reserves the piece's length before the disk reads it (from the
worker thread, between lookup and read: see ``Node._get``); reservations are released once
the answer is sent. Root record answers (ROOT_GET at most 64 KiB, ROOT_LIST at most 1.5 MiB)
are not reserved: they are small and bounded by ``max_requests`` at once.

Stopping (:meth:`Node.request_stop`): stop accepting, stop reading new requests, let in-flight
ones finish (at most ``shutdown_grace`` seconds), close the connections.

Metrics (``sofs-node --metrics``): given a :class:`~chunkstore.net.nodemetrics.NodeMetrics`,
the node counts each answered request (op, duration, frame bytes, error class), handshake
failures, malformed frames and checksum failures into it from the trio thread, and
:meth:`Node.gauges` gives a scrape its connections, budget, map epoch and disks' usage.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping, TypeVar

import trio

from chunkstore.disk.diskmetrics import DiskReport
from chunkstore.disk.index import PieceInfo
from chunkstore.disk.store import DiskStore
from chunkstore.errors import (
    AuthError,
    ChunkCorrupt,
    ChunkStoreError,
    ClusterMismatch,
    DiskFull,
    DiskUnavailable,
    StaleEpoch,
    StaleMap,
    WireError,
)
from chunkstore.net.budget import ByteBudget, Reservation
from chunkstore.net.fences import FenceBook, fences_path
from chunkstore.net.nodeconfig import NodeConfig
from chunkstore.net.nodemetrics import NodeGauges, NodeMetrics, op_name
from chunkstore.net.wire.auth import ROLE_CLIENT, ROLE_NODE, check_proof, new_nonce, proof
from chunkstore.net.wire.decode import decode_body
from chunkstore.net.wire.encode import encode_end, encode_error, encode_exception, encode_items, encode_response
from chunkstore.net.wire.frames import HEADER_SIZE, MAX_ITEMS, MAX_MAP, Header, Kind, Op, Parts, error_code
from chunkstore.net.wire.messages import (
    DISK_REQUESTS,
    Auth,
    AuthOk,
    Blob,
    Check,
    Compact,
    Delete,
    DiskRequest,
    Fence,
    FenceHeld,
    Frame,
    Get,
    Has,
    Hello,
    HelloReply,
    MapDoc,
    MapEpoch,
    MapGet,
    MapPut,
    Piece,
    Pieces,
    Ping,
    Pong,
    Put,
    Response,
    RootFound,
    RootGet,
    RootHeld,
    RootList,
    RootPut,
    RootSeqs,
    Stats,
)
from chunkstore.net.wire.transport import TrioConnection
from chunkstore.placement.clustermap import ClusterMap

log = logging.getLogger("sofs.node")
T = TypeVar("T")


def open_disks(config: NodeConfig) -> tuple[dict[str, DiskStore], dict[str, str]]:
    """Open every configured disk: (open stores, disk id -> reason it is unavailable)."""
    stores: dict[str, DiskStore] = {}
    down: dict[str, str] = {}
    for d in config.disks:
        try:
            stores[d.id] = DiskStore(d.path, cluster_id=config.cluster_id, disk_id=d.id)
            log.info("disk %s: opened %s", d.id, d.path)
        except Exception as e:
            down[d.id] = f"{type(e).__name__}: {e}"
            log.error("disk %s: cannot open %s: %s", d.id, d.path, e)
    return stores, down


def _load_map(config: NodeConfig) -> tuple[bytes, int]:
    """The map the node kept (its bytes and epoch), or (b"", config.map_epoch)."""
    try:
        with open(config.map_file, "rb") as f:
            doc = f.read(MAX_MAP + 1)
    except FileNotFoundError:
        return b"", config.map_epoch
    except OSError as e:
        log.error("cannot read cluster map %s: %s", config.map_file, e)
        return b"", config.map_epoch
    try:
        return doc, ClusterMap.from_json(doc).epoch
    except ChunkStoreError as e:
        log.error("ignoring bad cluster map %s: %s", config.map_file, e)
        return b"", config.map_epoch


#: a conditional DELETE (its decided_ago: wire/frames.py) counts as decided this much earlier:
#: time on the way and queued (a refusal only keeps pieces a while longer)
DELETE_DELAY_MARGIN_S = 30.0


@dataclass(frozen=True)
class NodeStatistics:
    connections: int
    active_requests: int
    inflight_bytes: int
    failing_disks: dict[str, str]  # disk id -> last error, until a call succeeds again
    max_seen_epoch: int  # highest cluster-map epoch a PING carried


class _Conn:
    """State of one client connection."""

    def __init__(self, stream: trio.SocketStream, peer: str) -> None:
        self.io = TrioConnection(stream)
        self.peer = peer
        self.scope = trio.CancelScope()  # cancelled when the connection must go
        self.inflight = 0
        self.epoch = 0  # the client's cluster-map epoch (its last PING)
        self.fence: tuple[bytes, int] | None = None  # (volume id, token) its FENCE declared


class Node:
    """Serves a set of open DiskStores. Construct and run inside ``trio.run``."""

    def __init__(self, config: NodeConfig, secret: bytes, stores: Mapping[str, DiskStore],
                 down: Mapping[str, str] | None = None, metrics: NodeMetrics | None = None,
                 fences: FenceBook | None = None):
        self.config = config
        self.limits = config.limits
        self._secret = secret
        self._stores = stores
        # read, never changed here: the embedded ring's host passes live views of its disks
        self._down: Mapping[str, str] = down if down is not None else {}
        self._failing: dict[str, str] = {}
        # as many worker threads as requests in flight: a request never waits for a thread
        # another one holds (a GET's thread may wait for the byte budget, see _get)
        self._limiter = trio.CapacityLimiter(self.limits.max_requests)
        self._slots = trio.Semaphore(self.limits.max_requests)
        self._budget = ByteBudget(self.limits.max_inflight_bytes)
        self._stop = trio.Event()
        self._reader_scopes: set[trio.CancelScope] = set()
        self._nconns = 0
        self._active = 0
        self.max_seen_epoch = config.map_epoch
        self.map_doc, self.map_epoch = _load_map(config)
        # the highest lease token per volume (FENCE); ConfigError if the book is damaged
        self.fences = fences or FenceBook(fences_path(config.map_file or "clustermap.json"))
        # set when the node follows the map in etcd: refuses (raises) a map etcd does not hold
        self.map_check: Callable[[ClusterMap], None] | None = None
        self._metrics = metrics  # counted into from the trio thread only (nodemetrics)
        if metrics is not None:
            metrics.watch(self.gauges)

    def request_stop(self) -> None:
        """Begin the shutdown described in the module docstring (serve() then returns)."""
        self._stop.set()

    def statistics(self) -> "NodeStatistics":
        return NodeStatistics(
            connections=self._nconns,
            active_requests=self._active,
            inflight_bytes=self._budget.used,
            failing_disks=dict(self._failing),
            max_seen_epoch=self.max_seen_epoch,
        )

    def gauges(self) -> NodeGauges:
        """The node's state for a metrics scrape (from the metrics server's thread): the
        statistics, and each configured disk's usage or why it has none."""
        failing = dict(self._failing)
        disks = []
        for d in self.config.disks:
            ds = self._stores.get(d.id)
            if ds is None:
                disks.append(DiskReport(d.id, None, self._down.get(d.id, "not served")))
                continue
            try:
                disks.append(DiskReport(d.id, ds.stats(), failing.get(d.id)))
            except Exception as e:  # closed at shutdown, statvfs failed, ...
                disks.append(DiskReport(d.id, None, f"{type(e).__name__}: {e}"))
        return NodeGauges(connections=self._nconns, active_requests=self._active,
                          inflight_bytes=self._budget.used, map_epoch=self.map_epoch,
                          max_seen_epoch=self.max_seen_epoch, disks=disks)

    # -- accept / connections -----------------------------------------------------------

    async def serve(self, listeners: list[trio.SocketListener], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve on bound listeners until :meth:`request_stop`, then drain (see module doc)."""
        async with trio.open_nursery() as conns:
            async with trio.open_nursery() as acc:
                for listener in listeners:
                    acc.start_soon(self._accept_loop, listener, conns)
                task_status.started()
                await self._stop.wait()
                acc.cancel_scope.cancel()
            for listener in listeners:
                await listener.aclose()
            log.info("stopped accepting; %d requests in flight", self._active)
            for scope in list(self._reader_scopes):
                scope.cancel()
            with trio.move_on_after(self.limits.shutdown_grace):
                while self._active:
                    await trio.sleep(0.02)
            if self._active:
                log.warning("shutdown: abandoning %d requests still running", self._active)
            conns.cancel_scope.cancel()

    async def _accept_loop(self, listener: trio.SocketListener, conns: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as e:  # EMFILE and friends: back off instead of spinning
                log.error("accept failed: %s", e)
                await trio.sleep(0.1)
                continue
            if self._nconns >= self.limits.max_connections:
                log.warning("refusing a connection: %d open (max_connections)", self._nconns)
                await trio.aclose_forcefully(stream)
                continue
            self._nconns += 1
            conns.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            host, port = stream.socket.getpeername()[:2]
            peer = f"{host}:{port}"
        except OSError:
            peer = "?"
        c = _Conn(stream, peer)
        try:
            with c.scope:
                with trio.move_on_after(self.limits.handshake_timeout) as hs:
                    ok = await self._handshake(c)
                if hs.cancelled_caught:
                    log.warning("%s: authentication failed: handshake timed out", peer)
                    if self._metrics is not None:
                        self._metrics.auth_failures += 1
                    return
                if not ok:
                    return
                async with trio.open_nursery() as handlers:
                    await self._read_requests(c, handlers)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.debug("%s: connection lost: %s", peer, e)
        except Exception:  # a bug: log it, drop this connection, keep serving the others
            log.exception("%s: unexpected error, closing the connection", peer)
        finally:
            self._nconns -= 1
            await c.io.aclose()

    # -- handshake ----------------------------------------------------------------------

    async def _preauth_frame(self, c: _Conn, op: Op) -> Frame | None:
        try:
            header = await c.io.receive_header()
            if header is None:
                if op == Op.AUTH:
                    log.warning("%s: authentication failed: the client hung up after checking our proof "
                                "(another cluster secret?)", c.peer)
                    if self._metrics is not None:
                        self._metrics.auth_failures += 1
                else:
                    log.info("%s: closed before authenticating", c.peer)
                return None
            if header.kind != Kind.REQUEST or header.op != op:
                raise AuthError(f"expected {op.name} first, got {Kind(header.kind).name} {Op(header.op).name}")
            return decode_body(header, await c.io.receive_body(header))  # <= PREAUTH_MAX_BODY
        except (WireError, AuthError) as e:
            await self._auth_failed(c, str(e))
            return None

    async def _auth_failed(self, c: _Conn, why: str) -> None:
        log.warning("%s: authentication failed: %s", c.peer, why)
        if self._metrics is not None:
            self._metrics.auth_failures += 1
        with trio.move_on_after(1):
            try:
                await c.io.send(encode_error(0, Op.NONE, 2, "authentication failed"))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def _handshake(self, c: _Conn) -> bool:
        hello = await self._preauth_frame(c, Op.HELLO)
        if hello is None:
            return False
        nc = hello.expect(Hello).nonce  # the decoder made it a Hello: the header said HELLO
        nn = new_nonce()
        reply = HelloReply(nn, proof(self._secret, ROLE_NODE, nc, nn))
        await c.io.send(encode_response(hello.req_id, Op.HELLO, reply))
        auth = await self._preauth_frame(c, Op.AUTH)
        if auth is None:
            return False
        if not check_proof(self._secret, ROLE_CLIENT, nc, nn, auth.expect(Auth).proof):
            await self._auth_failed(c, "wrong proof (the client does not know the cluster secret)")
            return False
        await c.io.send(encode_response(auth.req_id, Op.AUTH, AuthOk(self.config.node_id)))
        log.debug("%s: authenticated", c.peer)
        return True

    # -- requests -----------------------------------------------------------------------

    async def _refuse_frame(self, c: _Conn, req_id: int, why: str) -> None:
        """Answer a frame whose header is unusable and drop the connection."""
        log.warning("%s: malformed frame, closing: %s", c.peer, why)
        if self._metrics is not None:
            self._metrics.malformed_frames += 1
        with trio.move_on_after(1):
            try:
                await c.io.send(encode_error(req_id, Op.NONE, 1, why))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def _read_requests(self, c: _Conn, handlers: trio.Nursery) -> None:
        lim = self.limits
        depth = trio.Semaphore(lim.pipeline_depth)
        scope = trio.CancelScope()
        self._reader_scopes.add(scope)
        try:
            with scope:
                while not self._stop.is_set():
                    with trio.move_on_after(lim.idle_timeout) as idle:
                        try:
                            header = await c.io.receive_header()
                        except WireError as e:
                            await self._refuse_frame(c, 0, str(e))
                            return
                    if idle.cancelled_caught:
                        if c.inflight:
                            continue
                        log.info("%s: idle for %gs, closing", c.peer, lim.idle_timeout)
                        return
                    if header is None:
                        return  # clean EOF
                    if header.kind != Kind.REQUEST:
                        await self._refuse_frame(c, header.req_id, f"a node only accepts requests, got {Kind(header.kind).name}")
                        return
                    if header.body_len > lim.max_inflight_bytes:
                        await self._refuse_frame(
                            c, header.req_id,
                            f"frame body of {header.body_len} bytes exceeds this node's limit of {lim.max_inflight_bytes}",
                        )
                        return
                    await depth.acquire()
                    held = Reservation(self._budget)
                    try:
                        await self._slots.acquire()
                        try:
                            await held.resize(header.body_len)
                            with trio.fail_after(lim.frame_timeout):
                                body = await c.io.receive_body(header)
                        except BaseException:
                            held.release()
                            self._slots.release()
                            raise
                    except BaseException:
                        depth.release()
                        raise
                    self._active += 1
                    c.inflight += 1
                    handlers.start_soon(self._handle, c, header, body, held, depth)
        except trio.TooSlowError:
            log.warning("%s: frame not received within %gs, closing", c.peer, lim.frame_timeout)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.info("%s: connection lost: %s", c.peer, e)
        finally:
            self._reader_scopes.discard(scope)

    async def _send(self, c: _Conn, parts: Parts, op: int = Op.NONE) -> None:
        """Send one frame (the answer to an OP request, for the metrics); a peer that does not
        take it in time, or a broken connection, closes the connection (never raises)."""
        if self._metrics is not None:
            self._metrics.sent(op_name(op), sum(len(p) for p in parts))
        try:
            with trio.move_on_after(self.limits.frame_timeout) as cs:
                await c.io.send(parts)
            if cs.cancelled_caught:
                log.warning("%s: answer not taken within %gs, closing", c.peer, self.limits.frame_timeout)
                c.scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.info("%s: cannot send answer: %s", c.peer, e)
            c.scope.cancel()

    async def _handle(self, c: _Conn, header: Header, body: bytearray, held: Reservation, depth: trio.Semaphore) -> None:
        started = time.perf_counter()
        error: str | None = None  # the error class answered, for the metrics
        try:
            try:
                req = decode_body(header, body, verify=False).body
                del body
                if isinstance(req, (Hello, Auth)):
                    raise WireError("the connection is already authenticated")
                if isinstance(req, Ping):
                    if req.epoch > self.max_seen_epoch:
                        self.max_seen_epoch = req.epoch
                    c.epoch = req.epoch
                    parts = encode_response(header.req_id, Op.PING, Pong(self.map_epoch, self.config.node_id))
                elif isinstance(req, Fence):
                    token = await trio.to_thread.run_sync(self.fences.raise_to, req.volume_id,
                                                          req.token)
                    c.fence = (req.volume_id, req.token)
                    parts = encode_response(header.req_id, Op.FENCE, FenceHeld(token))
                elif isinstance(req, MapGet):
                    parts = encode_response(header.req_id, Op.MAP_GET, MapDoc(self.map_doc))
                elif isinstance(req, MapPut):
                    epoch = await self._take_map(c, req.doc)
                    parts = encode_response(header.req_id, Op.MAP_PUT, MapEpoch(epoch))
                elif c.epoch < self.map_epoch:
                    raise StaleMap(f"node {self.config.node_id} has cluster map epoch {self.map_epoch}, "
                                   f"the request was made with epoch {c.epoch}: fetch the new map")
                elif isinstance(req, Pieces):
                    error = await self._stream_pieces(c, header.req_id, req.disk)
                    return
                elif isinstance(req, DISK_REQUESTS):
                    if c.fence is not None and isinstance(req, (Put, Delete, RootPut, Compact)):
                        self._check_fence(c.fence)
                    value = await self._execute(req, held, c.fence)
                    parts = encode_response(header.req_id, header.op, value)
                else:  # pragma: no cover - the header of a REQUEST frame names a request op
                    raise WireError(f"not a request: {type(req).__name__}")
            except WireError as e:
                log.warning("%s: malformed request: %s", c.peer, e)
                error = "WireError"
                parts = encode_exception(header.req_id, header.op, e)
            except ChunkStoreError as e:
                error = type(e).__name__
                parts = encode_exception(header.req_id, header.op, e)
            except Exception as e:  # a bug: answer, log, and keep serving
                log.exception("%s: internal error in %s", c.peer, Op(header.op).name)
                error = "internal"
                # no ChunkStoreError class fits a bug: answer the wire's code for "anything
                # else" (255) from the exception itself, with its class in the message
                parts = encode_error(header.req_id, header.op, error_code(e), f"internal error: {type(e).__name__}: {e}")
            await self._send(c, parts, header.op)
        finally:
            held.release()
            self._slots.release()
            depth.release()
            c.inflight -= 1
            self._active -= 1
            if self._metrics is not None:
                self._metrics.request(op_name(header.op), time.perf_counter() - started,
                                      HEADER_SIZE + header.body_len, error)

    async def _take_map(self, c: _Conn, doc: bytes) -> int:
        """MAP_PUT: keep a valid, newer map of our cluster; answer our epoch either way.
        A node that follows etcd takes only a map etcd holds (:attr:`map_check`)."""
        return await self.adopt_map(doc, c.peer, self.map_check)

    async def adopt_map(self, doc: bytes, source: str,
                        check: Callable[[ClusterMap], None] | None = None) -> int:
        """Keep ``doc`` if it is a valid, newer map of our cluster (from a MAP_PUT or the
        etcd follower, :mod:`chunkstore.net.nodeetcd`) that ``check`` (in a thread) does not
        refuse; our epoch either way."""
        def parse() -> ClusterMap:
            return ClusterMap.from_json(doc)

        new = await trio.to_thread.run_sync(parse)  # FormatError for a bad document
        if self.config.cluster_id and new.cluster_id != self.config.cluster_id:
            raise ClusterMismatch(f"map of cluster {new.cluster_id}, this node serves {self.config.cluster_id}")
        if new.epoch > self.map_epoch and check is not None:
            await trio.to_thread.run_sync(check, new)
        if new.epoch > self.map_epoch:
            await trio.to_thread.run_sync(new.save, self.config.map_file)
            self.map_doc, self.map_epoch = bytes(doc), new.epoch
            log.info("%s: cluster map epoch %d adopted", source, new.epoch)
        elif new.epoch == self.map_epoch and bytes(doc) != self.map_doc and self.map_doc:
            current = ClusterMap.from_json(self.map_doc)
            if current.fingerprint() != new.fingerprint():
                raise ClusterMismatch(f"two different cluster maps with epoch {new.epoch}")
        return self.map_epoch

    def _store(self, disk_id: str) -> DiskStore:
        ds = self._stores.get(disk_id)
        if ds is None:
            reason = self._down.get(disk_id)
            if reason is None:
                raise DiskUnavailable(f"node {self.config.node_id} serves no disk {disk_id!r}")
            raise DiskUnavailable(f"disk {disk_id} unavailable on node {self.config.node_id}: {reason}")
        return ds

    async def _run(self, disk_id: str, fn: Callable[[], T]) -> T:
        """Run a blocking DiskStore call in a worker thread; log disk state changes."""
        try:
            result = await trio.to_thread.run_sync(fn, limiter=self._limiter)
        except (DiskUnavailable, DiskFull) as e:
            self._disk_failed(disk_id, str(e))
            raise
        except ChunkCorrupt as e:
            log.warning("disk %s: %s", disk_id, e)
            if self._metrics is not None:
                self._metrics.checksum_error(disk_id)
            raise
        except ChunkStoreError:
            raise
        except Exception as e:  # the index closed under us, EIO, ...
            self._disk_failed(disk_id, f"{type(e).__name__}: {e}")
            raise DiskUnavailable(f"disk {disk_id}: {type(e).__name__}: {e}") from e
        if disk_id in self._failing:
            del self._failing[disk_id]
            log.info("disk %s: working again", disk_id)
        return result

    def _disk_failed(self, disk_id: str, why: str) -> None:
        if disk_id not in self._failing:
            log.error("disk %s: %s", disk_id, why)
        self._failing[disk_id] = why

    def _check_fence(self, fence: tuple[bytes, int]) -> None:
        newest = self.fences.held(fence[0])
        if newest > fence[1]:
            raise self._stale(fence, newest)

    def _stale(self, fence: tuple[bytes, int], newest: int) -> StaleEpoch:
        volume_id, token = fence
        return StaleEpoch(f"node {self.config.node_id}: volume {volume_id.hex()} has "
                          f"fencing token {newest}, this connection declared {token}: its "
                          "lease went to another connector; nothing was changed")

    async def _execute(self, req: DiskRequest, held: Reservation,
                       fence: tuple[bytes, int] | None = None) -> Response:
        ds = self._store(req.disk)
        disk = req.disk
        if isinstance(req, Put):

            def put() -> None:
                req.verify()  # end-to-end checksum, off the event loop: the one hash of the data
                ds.put(req.key, req.frag_idx, req.policy, req.chunk_size, req.data, checksum=req.checksum)

            return await self._run(disk, put)
        if isinstance(req, Get):
            return await self._get(ds, req, held)
        if isinstance(req, Delete):
            at = None if req.decided_ago is None else ds.clock.time() - req.decided_ago - DELETE_DELAY_MARGIN_S
            return await self._run(disk, lambda: ds.delete(req.key, req.frag_idx, decided_at=at))  # on its clock
        if isinstance(req, Has):
            return await self._run(disk, lambda: ds.has(req.key, req.frag_idx))
        if isinstance(req, Piece):
            return await self._run(disk, lambda: ds.piece(req.key, req.frag_idx))
        if isinstance(req, Stats):
            return await self._run(disk, ds.stats)
        if isinstance(req, Compact):
            log.info("disk %s: compaction (min_dead_ratio %.2f)", disk, req.min_dead_ratio)
            return await self._run(disk, lambda: ds.compact(req.min_dead_ratio))
        if isinstance(req, Check):
            return await self._run(disk, ds.check_alive)
        if isinstance(req, RootPut):
            if fence is None:
                return RootHeld(await self._run(disk, lambda: ds.put_root(req.volume_id, req.seq, req.body)))

            def fenced_put() -> int:  # checked again where it lands: none after a newer FENCE
                with self.fences.holding(*fence, refuse=lambda newest: self._stale(fence, newest)):
                    return ds.put_root(req.volume_id, req.seq, req.body)

            return RootHeld(await self._run(disk, fenced_put))
        if isinstance(req, RootGet):
            rec = await self._run(disk, lambda: ds.get_root(req.volume_id))
            return None if rec is None else RootFound(rec.seq, rec.body)
        if isinstance(req, RootList):
            return RootSeqs(tuple(await self._run(disk, ds.list_roots)))
        raise WireError(f"unexpected request {type(req).__name__}")  # pragma: no cover

    async def _get(self, ds: DiskStore, req: Get, held: Reservation) -> Blob:
        """GET: one DiskStore call, in one worker thread, that looks the piece up once and
        reads it; the answer carries the checksum stored with the piece (the client's
        end-to-end check then also catches rot on a read without ``verify``), so the data is
        hashed here only when the request asks the disk to verify it.

        The budget must hold the piece's length before the data is read into memory, and only
        the lookup knows that length. The request does not carry it, and reserving the only
        upper bound (MAX_DATA, 65 MiB) would let just a few GETs run at once however small
        their pieces (one, on a node with a small budget). So the worker thread reserves the
        exact length itself, between lookup and read, through
        trio.from_thread (DiskStore.get_piece's ``reserve`` hook; the wait happens in this
        task, so cancelling it cancels the wait). First the request body's (tiny) reservation
        is given back: nobody waits for the budget while holding part of it. A worker waiting
        there holds a limiter token, but that cannot starve the requests that would free the
        budget: requests in flight are bounded by ``_slots``, as many as there are tokens,
        and each uses one token at a time; answers being sent need no token.
        """
        held.release()

        def reserve(info: PieceInfo) -> None:
            trio.from_thread.run(held.resize, info.length)

        info, data = await self._run(req.disk, lambda: ds.get_piece(req.key, req.frag_idx, req.verify, reserve=reserve))
        return Blob(info.checksum, data)

    async def _stream_pieces(self, c: _Conn, req_id: int, disk: str) -> str | None:
        """Answer PIECES with batches of the disk's pieces, then their count; returns the
        error class answered instead, if any."""
        error = None
        try:
            ds = self._store(disk)
            it = iter(ds.pieces())
            total = 0
            while True:
                batch = await self._run(disk, lambda: list(itertools.islice(it, MAX_ITEMS)))
                if not batch:
                    break
                await self._send(c, encode_items(req_id, batch), Op.PIECES)
                total += len(batch)
            parts = encode_end(req_id, total)
        except ChunkStoreError as e:
            error = type(e).__name__
            parts = encode_exception(req_id, Op.PIECES, e)
        await self._send(c, parts, Op.PIECES)
        return error
