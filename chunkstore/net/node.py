"""``sofs-node``: the storage node daemon, serving the DiskStores of one server over TCP.

Run: ``python -m chunkstore.net.node --config node.json [--state-file state.json]
[--metrics HOST:PORT]`` (or the ``sofs-node`` console script, which calls :func:`main`). Protocol: :mod:`chunkstore.net.wire`;
the server itself (connections, requests, budget): :mod:`chunkstore.net.server`.

Config file: JSON, described (and parsed) in :mod:`chunkstore.net.nodeconfig`.

``--metrics HOST:PORT`` serves Prometheus metrics there (:mod:`chunkstore.net.nodemetrics`,
from a thread: :mod:`chunkstore.metricsendpoint`); off by default.

With an etcd binding beside the config (``etcd.json``, :mod:`chunkstore.authority.binding`)
the node follows the cluster map in etcd and keeps a liveness lease there
(:mod:`chunkstore.net.nodeetcd`).

Shutdown on SIGTERM or SIGINT: stop accepting, stop reading new requests, let in-flight ones
finish (at most ``shutdown_grace`` seconds), close the connections and the DiskStores, remove
the state file, exit 0. Exit status 2: could not start (config, secret, disks, bind).

Logs go to stderr in plain words: start, listening address, disks, stop, authentication
failures, malformed frames, disk errors.
By hand::

    python -c 'from chunkstore.disk.store import DiskStore as D; D.initialise("/srv/sofs/d0", "c1", "d0")'
    head -c 32 /dev/urandom | base64 > /etc/sofs/cluster.secret; chmod 600 /etc/sofs/cluster.secret
    sofs-node --config /etc/sofs/node.json --state-file /run/sofs-node.json   # Ctrl-C stops it
    python -c 'from chunkstore.net.client import RemoteDisk; from chunkstore.net.wire import load_secret;
               print(RemoteDisk("127.0.0.1", 7700, "d0", load_secret("/etc/sofs/cluster.secret")).stats())'
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import sys

import trio

from chunkstore import sdnotify
from chunkstore.atomicfile import atomic_write
from chunkstore.authority import binding
from chunkstore.authority.etcd import EtcdClient
from chunkstore.authority.liveness import NodeLease
from chunkstore.disk.store import DiskStore
from chunkstore.errors import AuthError, ConfigError
from chunkstore.metricsendpoint import MetricsEndpoint, MetricsEndpointError, new_registry, parse_address, serve_metrics
from chunkstore.net.fences import FenceBook, fences_path
from chunkstore.net.nodeconfig import NodeConfig
from chunkstore.net.nodeetcd import MapFollower, etcd_holds, keep_alive
from chunkstore.net.nodemetrics import NodeMetrics
from chunkstore.net.server import Node, open_disks
from chunkstore.net.wire.auth import load_secret

log = logging.getLogger("sofs.node")


# -- process ------------------------------------------------------------------------------


def _write_state(path: str, port: int, host: str, node_id: str, metrics_port: int | None = None) -> None:
    state: dict[str, object] = {"pid": os.getpid(), "host": host, "port": port, "node_id": node_id}
    if metrics_port is not None:  # only with --metrics
        state["metrics_port"] = metrics_port
    atomic_write(path, json.dumps(state))


def _remove_state(path: str) -> None:
    try:
        with open(path) as f:
            if json.load(f).get("pid") != os.getpid():
                return
        os.unlink(path)
    except (OSError, ValueError):
        pass


async def _amain(
    config: NodeConfig, secret: bytes, stores: dict[str, DiskStore], down: dict[str, str], state_file: str | None,
    metrics: NodeMetrics | None = None, metrics_port: int | None = None,
    etcd: EtcdClient | None = None, fences: FenceBook | None = None,
) -> None:
    node = Node(config, secret, stores, down, metrics, fences)
    following = trio.CancelScope()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        listeners = await trio.open_tcp_listeners(config.port, host=config.host)  # OSError: cannot bind
        port = listeners[0].socket.getsockname()[1]
        log.info("node %s listening on %s:%d", config.node_id, config.host, port)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.serve, listeners)
            if etcd is not None and config.cluster_id:
                node.map_check = etcd_holds(etcd, config.cluster_id)
                follower = MapFollower(etcd, config.cluster_id, node.adopt_map)
                lease = NodeLease(etcd, config.cluster_id, config.node_id,
                                  f"{config.host}:{port}", config.lease_ttl)

                async def in_etcd() -> None:
                    with following:
                        async with trio.open_nursery() as duties:
                            duties.start_soon(follower.run)
                            duties.start_soon(keep_alive, lease)

                nursery.start_soon(in_etcd)
            if state_file:
                _write_state(state_file, port, config.host, config.node_id, metrics_port)
            sdnotify.notify(f"READY=1\nSTATUS=node {config.node_id} serving {len(stores)} disks "
                            f"on {config.host}:{port}")
            async for signum in signals:
                log.info("received %s: shutting down", signal.Signals(signum).name)
                sdnotify.notify("STOPPING=1")
                node.request_stop()
                following.cancel()
                break


def _fix_mmap_threshold() -> None:
    """Have glibc serve every allocation of 1 MiB and more with mmap, and unmap it on free.

    By default glibc raises that threshold each time a large block is freed, after which
    piece-sized buffers come from per-thread heaps that do not shrink: the node's resident
    size would then track the worst moment of its past, not what it holds now. No-op off
    glibc."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _metrics_address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except MetricsEndpointError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _serve_metrics(metrics: NodeMetrics, host: str, port: int) -> MetricsEndpoint:
    registry = new_registry()
    registry.register(metrics)
    return serve_metrics(registry, host, port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sofs-node", description="Serve disk stores to the sofs RING over TCP.")
    parser.add_argument("--config", required=True, help="node config file (JSON, see chunkstore.net.node)")
    parser.add_argument("--state-file", help="write {pid, host, port, node_id} here once listening")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--metrics", metavar="HOST:PORT", type=_metrics_address,
                        help="serve Prometheus metrics on HOST:PORT (/metrics); default: off")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, args.log_level),
        format="%(asctime)s sofs-node[%(process)d] %(levelname)s %(message)s",
    )
    try:
        config = NodeConfig.load(args.config)
        secret = load_secret(config.secret_file)
        fences = FenceBook(fences_path(config.map_file))
        etcd = binding.client(os.path.dirname(os.path.abspath(args.config)))
        if etcd is not None and not config.cluster_id:
            raise ConfigError(f"{args.config} names no cluster_id: a node that follows the "
                              "map in etcd must know its cluster")
    except (ConfigError, AuthError) as e:
        log.error("cannot start: %s", e)
        return 2
    log.info("node %s starting with %d disks", config.node_id, len(config.disks))
    metrics, endpoint = None, None
    if args.metrics is not None:
        metrics = NodeMetrics(config.node_id)
        try:
            endpoint = _serve_metrics(metrics, *args.metrics)
        except MetricsEndpointError as e:
            log.error("cannot start: %s", e)
            return 2
    _fix_mmap_threshold()
    stores, down = open_disks(config)
    try:
        trio.run(_amain, config, secret, stores, down, args.state_file, metrics,
                 endpoint.port if endpoint is not None else None, etcd, fences)
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, e)
        return 2
    finally:
        if endpoint is not None:  # before the disks close: a scrape reads their usage
            endpoint.close()
        for disk_id, ds in stores.items():
            try:
                ds.close()
            except Exception as e:
                log.error("disk %s: close failed: %s", disk_id, e)
        if args.state_file:
            _remove_state(args.state_file)
    log.info("node %s stopped", config.node_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
