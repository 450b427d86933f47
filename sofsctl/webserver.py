"""The supervisor page's HTTP side: a plain ASGI application (:class:`SupervisorApp`) served by
hypercorn's trio worker (:func:`run`), and the cache of gathered facts (:class:`FactsCache`).

Routes (every other request, and any method but GET and HEAD, is a 404)::

    /             the page (sofsctl.webpage), refreshing itself every --refresh seconds
    /status.json  StatusFacts.to_json(): the document of ``sofsctl status --json``
    /metrics      the verdict, chunk counts, mounts and exports in Prometheus's text format
                  (:mod:`sofsctl.webmetrics`), from the same document
    /healthz      "ok": the server runs (no authentication; says nothing of the archive)

Everything but ``/healthz`` needs HTTP Basic authentication (:mod:`sofsctl.webauth`); a
request without it, or with a wrong one, gets 401 and a ``WWW-Authenticate`` challenge,
whatever its path. Pages are sent with ``Cache-Control: no-store`` and a Content Security
Policy that allows no script, frame or outside resource.

Gathering the facts asks the mount processes and reads every disk's index: it may take
seconds, so it runs in a worker thread (``trio.to_thread``), one gather at a time, and its
result is kept :data:`CACHE_S` seconds, however many browsers ask. A request that finds
older facts starts a gather and waits at most :data:`STALE_WAIT_S` for it, then gets the
older facts (the page says how old): one slow gather never holds the page up. A request
with no facts at all (the first ones) waits up to :data:`FIRST_WAIT_S`, then gets a 503 page
that tries again shortly. Nothing is gathered until a request asks: a supervisor nobody
looks at costs nothing (and takes no lock of the ring).
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import click
import hypercorn.trio
import trio
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework

from chunkstore import errors as cerr
from chunkstore import sdnotify

from . import webmetrics
from .ringarcs import load_ring_arcs
from .statusfacts import gather
from .webauth import CHALLENGE, Credentials
from .webpage import render_error_page, render_page

log = logging.getLogger("sofs.supervise")

CACHE_S = 5.0        # facts this young are served as they are
STALE_WAIT_S = 3.0   # how long a request with older facts at hand waits for fresh ones
FIRST_WAIT_S = 60.0  # how long a request with no facts at all waits for the first ones
GRACE_S = 5.0        # requests in flight at SIGTERM get this long to finish
METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
SECURITY_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
     b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ListenError(Exception):
    """The server cannot listen where it was told (address in use, not of this host, no
    permission for a port below 1024). Retrying helps only once the cause is gone."""


@dataclass(frozen=True)
class Snapshot:
    """The outcome of the last gather: the ``status --json`` document and the ring's arcs;
    when it failed, the ERROR (what ``sofsctl status`` would say) and the facts of the last
    gather that worked, if any."""

    doc: dict[str, Any] | None
    ring: dict[str, Any] | None
    error: str | None
    wall: float       # Unix time DOC was gathered
    taken: float      # trio's clock when the last gather ended (the cache's age)
    seconds: float    # how long the last gather took


@dataclass(frozen=True)
class CacheStatistics:
    gathers: int          # gathers run so far
    gathering: bool       # one is running now


Facts = tuple[dict[str, Any], dict[str, Any] | None]  # the status document, the ring's arcs
Gatherer = Callable[[], Facts]
AsyncGatherer = Callable[[], Awaitable[Facts]]


def status_gatherer(home: Path) -> Gatherer:
    """The blocking gather of HOME's facts: the status document and the ring's arcs (None
    when the ring's file cannot be read; the status says why)."""
    def run() -> Facts:
        doc = gather(home).to_json()
        try:
            ring = load_ring_arcs(home)
        except cerr.ChunkStoreError as e:
            log.warning("cannot read the ring of %s: %s", home, e)
            ring = None
        return doc, ring
    return run


def in_thread(gatherer: Gatherer) -> AsyncGatherer:
    """GATHERER run in a worker thread (abandoned, not waited for, if the server stops)."""
    async def run() -> Facts:
        return await trio.to_thread.run_sync(gatherer, abandon_on_cancel=True)
    return run


class FactsCache:
    """The last facts gathered, refreshed on demand by :meth:`run` (start it in a nursery),
    one gather at a time (see the module docstring). GATHERER must not block the event loop:
    :func:`in_thread` of a blocking one."""

    def __init__(self, gatherer: AsyncGatherer, *, max_age: float = CACHE_S,
                 stale_wait: float = STALE_WAIT_S, first_wait: float = FIRST_WAIT_S) -> None:
        self._gatherer = gatherer
        self.max_age = max_age
        self.stale_wait = stale_wait
        self.first_wait = first_wait
        self._latest: Snapshot | None = None
        self._wanted = trio.Event()
        self._done = trio.Event()
        self._gathering = False
        self._gathers = 0

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(self._gathers, self._gathering)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Gather whenever a request wants fresher facts; runs until cancelled."""
        task_status.started()
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            self._gathering = True
            try:
                self._latest = await self._gather()
            finally:
                self._gathering = False
                done, self._done = self._done, trio.Event()
                done.set()

    async def get(self) -> Snapshot | None:
        """Facts at most ``max_age`` old, or older ones if fresh ones take longer than
        ``stale_wait``; None if there are none yet after ``first_wait``."""
        latest = self._latest
        if latest is not None and trio.current_time() - latest.taken < self.max_age:
            return latest
        done = self._done
        if not self._gathering:
            self._wanted.set()
        with trio.move_on_after(self.first_wait if latest is None else self.stale_wait):
            await done.wait()
        return self._latest

    async def _gather(self) -> Snapshot:
        started = trio.current_time()
        doc = ring = error = None
        try:
            doc, ring = await self._gatherer()
        except click.ClickException as e:  # what sofsctl status would print and exit 1 for
            error = e.format_message()
        except Exception as e:  # the server's edge: report it on the page and keep serving
            log.exception("gathering the facts failed")
            error = f"gathering the facts failed: {type(e).__name__}: {e}"
        self._gathers += 1
        now = trio.current_time()
        last = self._latest
        if doc is None and last is not None and last.doc is not None:  # keep the older facts
            return Snapshot(last.doc, last.ring, error, last.wall, now, now - started)
        return Snapshot(doc, ring, error, time.time(), now, now - started)


class SupervisorApp:
    """The ASGI application of the page (see the module docstring for its routes)."""

    def __init__(self, cache: FactsCache, credentials: Credentials, refresh_s: int | None) -> None:
        self.cache = cache
        self.credentials = credentials
        self.refresh_s = refresh_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: refused
            await send({"type": "websocket.close", "code": 1008})
            return
        method, path = scope["method"], scope["path"]
        head = method == "HEAD"
        if path == "/healthz" and method in ("GET", "HEAD"):
            await _respond(send, 200, b"ok\n", b"text/plain; charset=utf-8", head=head)
            return
        if not self.credentials.check(_header(scope, b"authorization")):
            await _respond(send, 401, b"authentication required (user admin)\n",
                           b"text/plain; charset=utf-8",
                           [(b"www-authenticate", CHALLENGE.encode())], head=head)
            return
        if method not in ("GET", "HEAD") or path not in ("/", "/status.json", "/metrics"):
            await _respond(send, 404, b"not found\n", b"text/plain; charset=utf-8", head=head)
            return
        snap = await self.cache.get()
        if snap is None:
            snap = Snapshot(None, None, "still gathering the first facts: try again shortly",
                            time.time(), trio.current_time(), 0.0)
        if path == "/metrics":  # the verdict and the exports, for Prometheus (webmetrics)
            if snap.doc is None:
                await _respond(send, 503, f"# {snap.error}\n".encode(), METRICS_TYPE, head=head)
            else:
                await _respond(send, 200, webmetrics.render(snap.doc), METRICS_TYPE, head=head)
            return
        if path == "/status.json":  # as sofsctl status --json: no document when it fails
            if snap.error is not None or snap.doc is None:
                body = json.dumps({"error": snap.error}, indent=1).encode() + b"\n"
                await _respond(send, 503, body, b"application/json", head=head)
            else:
                body = json.dumps(snap.doc, indent=1).encode() + b"\n"
                await _respond(send, 200, body, b"application/json", head=head)
            return
        now = time.time()
        if snap.doc is None:
            page = render_error_page(snap.error or "no facts", now=now, refresh_s=self.refresh_s)
            await _respond(send, 503, page.encode(), b"text/html; charset=utf-8", head=head)
            return
        page = render_page(snap.doc, snap.ring, now=now, taken_at=snap.wall,
                           refresh_s=self.refresh_s, problem=snap.error)
        await _respond(send, 200, page.encode(), b"text/html; charset=utf-8", head=head)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


async def _respond(send: Send, status: int, body: bytes, content_type: bytes,
                   extra: Iterable[tuple[bytes, bytes]] = (), head: bool = False) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
               *SECURITY_HEADERS, *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# --- serving -------------------------------------------------------------------------------

def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to HOST:PORT (port 0: any free one); ListenError says why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ListenError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock


def run(app: SupervisorApp, sock: socket.socket,
        on_listening: Callable[[list[str]], None] = lambda urls: None) -> None:
    """Serve APP on the bound SOCK until SIGTERM or SIGINT: READY=1 to systemd once it
    listens (then ON_LISTENING with its URLs), STOPPING=1 when told to stop; requests in
    flight get GRACE_S seconds to finish."""
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns the socket from here
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.graceful_timeout = GRACE_S
    config.include_server_header = False
    trio.run(_serve, app, config, on_listening)


async def _serve(app: SupervisorApp, config: Config,
                 on_listening: Callable[[list[str]], None]) -> None:
    stopping = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(_stop_on_signal, stopping)
        await nursery.start(app.cache.run)
        async with trio.open_nursery() as server:
            # our scope and message dicts are what hypercorn's TypedDicts describe
            urls = await server.start(partial(hypercorn.trio.serve, cast(ASGIFramework, app),
                                              config, shutdown_trigger=stopping.wait))
            sdnotify.notify(f"READY=1\nSTATUS=supervisor page on {' '.join(urls)}")
            on_listening(urls)
        nursery.cancel_scope.cancel()  # the server has stopped: so do the cache and signals


async def _stop_on_signal(stopping: trio.Event, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Set STOPPING at the first SIGTERM or SIGINT; later ones, while requests finish, are
    ignored (the receiver stays open until the server has stopped)."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            if stopping.is_set():
                continue
            log.info("received %s: stopping", signal.Signals(signum).name)
            sdnotify.notify("STOPPING=1")
            stopping.set()
