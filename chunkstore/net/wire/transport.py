"""Frames over sockets: :class:`BlockingConnection` (threads, the client) and
:class:`TrioConnection` (trio streams, the node).

Both only move whole frames: they read a header, check it (:func:`~.frames.parse_header`)
and the caller's body limit before reading the body, and decode it (:mod:`.decode`). No
protocol logic lives here; the handshake is :mod:`.auth`. trio is imported only when a
TrioConnection is used, so a blocking client never loads it.
"""

from __future__ import annotations

import socket

import trio

from chunkstore.errors import WireError
from chunkstore.net.wire.decode import decode_body
from chunkstore.net.wire.frames import HEADER_SIZE, MAX_FRAME, Header, Parts, parse_header
from chunkstore.net.wire.messages import Frame


class BlockingConnection:
    """Frames over a connected blocking socket (its timeout applies to every send/receive).

    Not thread-safe: one user at a time. EOF raises ConnectionError; socket.timeout and other
    OSErrors propagate; a bad frame raises WireError.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.map_epoch = 0  # the cluster-map epoch its user announced on it (PING), if any
        self._next_id = 0

    @classmethod
    def connect(cls, host: str, port: int, timeout: float) -> "BlockingConnection":
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return cls(sock)

    def next_id(self) -> int:
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        return self._next_id

    def send(self, parts: Parts) -> None:
        if sum(len(p) for p in parts) <= 65536:
            self.sock.sendall(b"".join(parts))
        else:
            for p in parts:
                self.sock.sendall(p)

    def _recv_into(self, view: memoryview) -> None:
        while len(view):
            n = self.sock.recv_into(view)
            if n == 0:
                raise ConnectionError("connection closed by peer")
            view = view[n:]

    def receive(self, max_body: int = MAX_FRAME) -> tuple[Header, bytearray]:
        """The next frame's header and raw body (body longer than ``max_body``: WireError)."""
        hbuf = bytearray(HEADER_SIZE)
        self._recv_into(memoryview(hbuf))
        header = parse_header(hbuf)
        if header.body_len > max_body:
            raise WireError(f"frame body of {header.body_len} bytes exceeds {max_body}")
        body = bytearray(header.body_len)
        self._recv_into(memoryview(body))
        return header, body

    def receive_frame(self, *, verify: bool = True, max_body: int = MAX_FRAME) -> Frame:
        header, body = self.receive(max_body)
        return decode_body(header, body, verify=verify)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class TrioConnection:
    """Frames over a trio stream (SocketStream or any Stream). One reader task at a time;
    :meth:`send` may be called from several tasks (a lock keeps frames whole).

    Receiving is cancellation-safe between frames: bytes already read stay buffered.
    """

    def __init__(self, stream) -> None:
        self.stream = stream
        self._buf = bytearray()
        self._send_lock = trio.Lock()
        self._sock = getattr(stream, "socket", None)

    async def _fill(self, n: int) -> bool:
        """Buffer at least n bytes; False on EOF (with fewer buffered)."""
        while len(self._buf) < n:
            data = await self.stream.receive_some(65536)
            if not data:
                return False
            self._buf += data
        return True

    async def receive_header(self) -> Header | None:
        """The next header (validated), or None on a clean EOF between frames.
        ConnectionError on EOF inside a header; WireError if bad."""
        if not await self._fill(HEADER_SIZE):
            if self._buf:
                raise ConnectionError("connection closed inside a frame header")
            return None
        raw = bytes(self._buf[:HEADER_SIZE])
        del self._buf[:HEADER_SIZE]
        return parse_header(raw)

    async def receive_body(self, header: Header) -> bytearray:
        """Exactly ``header.body_len`` bytes (ConnectionError on EOF). Read straight into
        one buffer of that size: the caller decides beforehand whether it may be allocated."""
        n = header.body_len
        body = bytearray(n)
        have = min(n, len(self._buf))
        body[:have] = self._buf[:have]
        del self._buf[:have]
        view = memoryview(body)[have:]
        while len(view):
            if self._sock is not None:
                got = await self._sock.recv_into(view, len(view))
            else:
                data = await self.stream.receive_some(min(len(view), 1 << 20))
                got = len(data)
                view[:got] = data
            if got == 0:
                raise ConnectionError("connection closed inside a frame body")
            view = view[got:]
        return body

    async def receive_frame(self, *, verify: bool = True, max_body: int = MAX_FRAME) -> Frame | None:
        header = await self.receive_header()
        if header is None:
            return None
        if header.body_len > max_body:
            raise WireError(f"frame body of {header.body_len} bytes exceeds {max_body}")
        return decode_body(header, await self.receive_body(header), verify=verify)

    async def send(self, parts: Parts) -> None:
        async with self._send_lock:
            if sum(len(p) for p in parts) <= 65536:
                await self.stream.send_all(b"".join(parts))
            else:
                for p in parts:
                    await self.stream.send_all(p)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
