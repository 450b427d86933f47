"""The Prometheus endpoint of a sofs process (``sofs-node --metrics``, the mount's
``--metrics``): parsing its HOST:PORT, a registry of its own, and the HTTP server.

Each process builds one :class:`~prometheus_client.CollectorRegistry` (:func:`new_registry`,
never the library's global one, so tests can hold several), registers its collectors
(:mod:`chunkstore.net.nodemetrics`, :mod:`fuse_mount.mountmetrics`) and serves it with
:func:`serve_metrics`: prometheus_client's own WSGI server, in a daemon thread. A thread, not
a task of the process's trio loop, because a scrape then costs the loop nothing: the collectors
read state that is already kept (counters, the disks' usage, the healer's progress) from the
server's thread, and a slow scrape (a disk's statvfs, the GC queue) never delays a FUSE reply
or a disk request. Every path of the server answers the text exposition format; ``/metrics``
is the one to scrape.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import re
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, start_http_server

log = logging.getLogger("sofs.metrics")

# seconds: from a cached lookup (tens of microseconds) to a rebuild-sized fsync (seconds)
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_ADDRESS_RE = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+)):(?P<port>[0-9]{1,5})")


class MetricsEndpointError(Exception):
    """The metrics endpoint cannot be set up: an address that is not HOST:PORT, or one this
    process cannot listen on (not an address of this host, a port in use)."""


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); port 0 takes any free port.
    MetricsEndpointError when it is neither."""
    m = _ADDRESS_RE.fullmatch(text.strip())
    port = int(m["port"]) if m else -1
    if m is None or not 0 <= port <= 65535:
        raise MetricsEndpointError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:9710, "
                                   "0.0.0.0:9710 or [::1]:9710)")
    if m["v6"] is not None:
        try:
            ipaddress.IPv6Address(m["v6"])
        except ValueError:
            raise MetricsEndpointError(f"{m['v6']!r} is not an IPv6 address") from None
        return m["v6"], port
    return m["host"], port


def format_address(host: str, port: int) -> str:
    """The HOST:PORT text :func:`parse_address` reads back (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def new_registry() -> CollectorRegistry:
    """A registry of this process's own, with the standard ``process_*`` (CPU, memory, open
    files) and ``python_info`` metrics already in it."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


@dataclass
class MetricsEndpoint:
    """A running metrics HTTP server; :meth:`close` stops it."""

    host: str
    port: int  # the bound port (the kernel's choice when asked for 0)
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{format_address(self.host, self.port)}/metrics"

    def close(self) -> None:
        """Stop serving and close the socket (a scrape in progress is finished first)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Serve REGISTRY on HOST:PORT from a daemon thread; MetricsEndpointError says why not."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            why = f"port {port} on {host} is already in use"
        elif e.errno == errno.EADDRNOTAVAIL:
            why = f"{host} is not an address of this host (see: ip -brief address)"
        else:
            why = e.strerror or str(e)
        raise MetricsEndpointError(f"cannot serve metrics on {format_address(host, port)}: "
                                   f"{why}") from None
    endpoint = MetricsEndpoint(host, server.server_address[1], server, thread)
    log.info("metrics on %s", endpoint.url)
    return endpoint
