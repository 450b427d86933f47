"""The ring host: the one process that holds an embedded RING, so several volumes of one data
directory can be mounted at once.

``sofs-ringhost --data-dir DIR`` (``python -m fuse_mount.ringhost``), started by the first
mount of an embedded data directory (:func:`ensure_host`) or by systemd
(``sofs-ringhost@.service``, with ``--idle-exit 0``):

* opens the :class:`~chunkstore.ring.local.LocalRing` (the cluster lock, every disk store,
  the repair log) and serves its disks to the mounts over the storage nodes' wire protocol
  on 127.0.0.1 (:class:`~chunkstore.net.server.Node`, the handshake secret in
  ``run/ringhost.secret``); mounts are :class:`~chunkstore.ring.hosted.HostedRing` clients.
  The port is chosen once and kept across restarts when free (``run/ringhost.json``);
* runs the healer (repair sweeps after a change, scrubs) for the whole data directory: the
  mounts run none;
* serves the RING's admin operations (:mod:`fuse_mount.ringops`) to ``sofsctl`` at
  ``run/ring.sock``, and the repair-log forwarding of its clients (``repair-note``,
  ``repair-clear``, ``repair-deleted``) and ``host`` (its own state);
* ends when told (SIGTERM, SIGINT: ``sofsctl umount`` of the last mount does it), or by
  itself once no mount of the data directory is alive, no client is connected and no admin
  job runs for ``--idle-exit`` seconds (a mount killed with -9 leaves no host behind).

Garbage collection stays in each mount (it is the volume's); a ``disk add`` holds it off in
every mount through :mod:`fuse_mount.gcgate`. Compaction is asked by the mounts after their
GC passes, on the disks here, as before.

Exit status: 0 stopped, 1 could not start (the error is also written on ``--ready-fd``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from chunkstore import errors as cerr
from chunkstore import sdnotify
from chunkstore.atomicfile import atomic_write
from chunkstore.disk.store import DiskStore
from chunkstore.healing.healer import DEFAULT_DOWN_AFTER_S, DEFAULT_SCRUB_INTERVAL_S, Healer
from chunkstore.net.nodeconfig import DiskEntry, NodeConfig
from chunkstore.net.server import Node
from chunkstore.placement.keys import ChunkRef
from chunkstore.placement.layout import HOST_STATE_FILE
from chunkstore.protection.policy import PolicyCode
from chunkstore.ring.hosted import (
    Forward,
    HostedRing,
    HostState,
    host_state,
    make_secret,
    running_host,
    secret_path,
)
from chunkstore.ring.local import LocalRing
from chunkstore.ring.repairlog import DELETED

from . import control, ctlserver, gcgate, runstate
from .control import read_ready_line
from .errors import MountError
from .mountmetrics import GC_SCAN_LIMIT
from .ringops import ring_ops

log = logging.getLogger("sofs.ringhost")

HEAL_INTERVAL_S = 2.0  # how often the healer looks at node states and its schedule
IDLE_EXIT_S = 5.0
HOST_LOG = "log/ringhost.log"


class ServedRing(LocalRing):
    """The LocalRing of the host: a disk add also moves the served ring epoch on at once,
    so clients place by the grown ring from their next request (StaleMap, then re-read)."""

    on_new_epoch: Callable[[int], None] = staticmethod(lambda epoch: None)

    def add_disk(self, *args: Any, **kw: Any):
        added = super().add_disk(*args, **kw)
        self.on_new_epoch(self.ring.data.epoch)
        return added


class _LiveStores(Mapping[str, DiskStore]):
    """The ring's open disk stores as they are now (a disk revived, added or marked down
    since the node started is served, or not, accordingly)."""

    def __init__(self, ring: LocalRing) -> None:
        self._ring = ring

    def __getitem__(self, disk_id: str) -> DiskStore:
        try:
            ds = self._ring.disk(disk_id)
        except cerr.DiskUnavailable:
            raise KeyError(disk_id) from None
        assert isinstance(ds, DiskStore)
        return ds

    def __iter__(self) -> Iterator[str]:
        return iter(self._ring.available_disks())

    def __len__(self) -> int:
        return len(self._ring.available_disks())


class _LiveDown(Mapping[str, str]):
    """Why each unavailable disk of the ring is so, as it is now."""

    def __init__(self, ring: LocalRing) -> None:
        self._ring = ring

    def __getitem__(self, disk_id: str) -> str:
        return self._ring.unavailable_disks()[disk_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ring.unavailable_disks())

    def __len__(self) -> int:
        return len(self._ring.unavailable_disks())


def _ref(key: str, size: int, policy: str) -> ChunkRef:
    return ChunkRef(bytes.fromhex(key), int(size), PolicyCode.from_bytes(bytes.fromhex(policy)))


def healer_view(data_dir: Path) -> Callable[[], dict]:
    """For a hosted mount's metrics: the host's healer status and repair-log counts."""
    return lambda: control.call(data_dir, "healer-metrics", timeout=10)


def forwarding_ops(ring: LocalRing) -> dict[str, ctlserver.Operation]:
    """What the clients' repair logs forward (:class:`~chunkstore.ring.hosted.HostedRepairLog`)."""
    def note(progress, key: str, size: int, policy: str, kind: int) -> dict:
        ring.repair_log.note(_ref(key, size, policy), int(kind))
        return {}

    def clear(progress, key: str) -> dict:
        ring.repair_log.clear(bytes.fromhex(key))
        return {}

    def deleted(progress) -> list[dict]:
        return [{"key": e.ref.key.hex(), "size": e.ref.size,
                 "policy": e.ref.policy.to_bytes().hex()}
                for e in ring.repair_log.entries() if e.kind == DELETED]
    return {"repair-note": note, "repair-clear": clear, "repair-deleted": deleted}


class _Activity:
    """Admin jobs in flight (the host does not end by itself while one runs)."""

    def __init__(self) -> None:
        self.running = 0
        self._lock = threading.Lock()

    def wrap(self, ops: dict[str, ctlserver.Operation]) -> dict[str, ctlserver.Operation]:
        def counted(op: ctlserver.Operation) -> ctlserver.Operation:
            def run(*a: Any, **kw: Any) -> Any:
                with self._lock:
                    self.running += 1
                try:
                    return op(*a, **kw)
                finally:
                    with self._lock:
                        self.running -= 1
            return run
        return {name: counted(op) for name, op in ops.items()}


def _listen_port(data_dir: Path) -> int:
    """The port of the host's last run (kept when free), else 0 (any)."""
    st = host_state(data_dir)
    return st.port if st is not None else 0


async def _bind(port: int) -> list[trio.SocketListener]:
    try:
        return await trio.open_tcp_listeners(port, host="127.0.0.1")
    except OSError:
        if port == 0:
            raise
        return await trio.open_tcp_listeners(0, host="127.0.0.1")


def _write_state(data_dir: Path, port: int, epoch: int, started: float,
                 idle_exit_s: float) -> None:
    atomic_write(Path(data_dir) / HOST_STATE_FILE,
                 HostState(os.getpid(), "127.0.0.1", port, epoch, started,
                           idle_exit_s).to_json())


def _idle(data_dir: Path, node: Node, activity: _Activity) -> bool:
    if any(st.alive for st in runstate.all_states(data_dir)):
        return False
    return node.statistics().connections == 0 and activity.running == 0


async def _serve(data_dir: Path, ring: ServedRing, healer: Healer, ready: "Ready",
                 idle_exit_s: float) -> None:
    secret = make_secret(data_dir)
    config = NodeConfig(
        node_id="ringhost", secret_file=secret_path(data_dir),
        disks=tuple(DiskEntry(d.id, ring.config.disk_path(str(data_dir), d.id))
                    for d in ring.config.disks),
        host="127.0.0.1", port=0, cluster_id=ring.config.cluster_id,
        map_epoch=ring.ring.data.epoch, map_file=str(Path(data_dir) / "run" / "ringhost-map.json"))
    node = Node(config, secret, _LiveStores(ring), _LiveDown(ring))
    node.map_epoch = ring.ring.data.epoch
    activity = _Activity()
    ops = activity.wrap({**ring_ops(ring, healer, gc_hold=lambda: gcgate.closed(data_dir)),
                         **forwarding_ops(ring)})
    started = time.time()
    listeners = await _bind(_listen_port(data_dir))
    port = listeners[0].socket.getsockname()[1]

    def new_epoch(epoch: int) -> None:
        node.map_epoch = epoch
        _write_state(data_dir, port, epoch, started, idle_exit_s)
        log.info("ring epoch %d served (a disk was added)", epoch)
    ring.on_new_epoch = new_epoch
    ops["healer-metrics"] = lambda progress: {
        "status": healer.status.to_dict(),
        "repair_log": ring.repair_log.counts(GC_SCAN_LIMIT)}
    ops["host"] = lambda progress: {"pid": os.getpid(), "port": port,
                                    "epoch": node.map_epoch, "started": started,
                                    "idle_exit_s": idle_exit_s,
                                    "connections": node.statistics().connections,
                                    "disks": len(ring.config.disks)}
    async with trio.open_nursery() as serving:  # the node: drained last
        await serving.start(node.serve, listeners)
        async with trio.open_nursery() as nursery:
            await nursery.start(ctlserver.serve, ctlserver.socket_path(data_dir, None), ops)
            _write_state(data_dir, port, node.map_epoch, started, idle_exit_s)
            log.info("ring host serving %d disks of %s on 127.0.0.1:%d (pid %d)",
                     len(ring.config.disks), data_dir, port, os.getpid())
            ready.say("ready")
            sdnotify.notify(f"READY=1\nSTATUS=serving the embedded ring of {data_dir} on "
                            f"127.0.0.1:{port}")
            stop = trio.Event()
            nursery.start_soon(heal_rounds, healer)
            nursery.start_soon(_watch_signals, stop)
            await _until_stopped(stop, idle_exit_s, lambda: _idle(data_dir, node, activity))
            sdnotify.notify("STOPPING=1")
            healer.cancel_nowait()  # a running sweep stops between chunks
            nursery.cancel_scope.cancel()
        node.request_stop()


async def heal_rounds(healer: Healer) -> None:
    """The healer's rounds, every HEAL_INTERVAL_S, for whichever process holds the ring (the
    ring host, or a mount of a networked or --exclusive-ring embedded ring)."""
    while True:
        await trio.sleep(HEAL_INTERVAL_S)
        try:
            # not abandoned on cancel: the teardown cancels the healer (its sweep stops
            # between chunks) and waits here for the thread to leave the RING
            await trio.to_thread.run_sync(healer.step)
        except Exception:
            log.exception("healer round failed; will retry")


async def _watch_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal %s: stopping", signal.Signals(signum).name)
            stop.set()
            return


async def _until_stopped(stop: trio.Event, idle_exit_s: float, idle: Callable[[], bool]) -> None:
    """Until a signal, or ``idle()`` has held for ``idle_exit_s`` (0: never)."""
    idle_since: float | None = None
    while not stop.is_set():
        with trio.move_on_after(1.0):
            await stop.wait()
        if stop.is_set() or idle_exit_s <= 0 or not idle():
            idle_since = None
            continue
        idle_since = idle_since or trio.current_time()
        if trio.current_time() - idle_since >= idle_exit_s:
            log.info("no mount is left and no client is connected: stopping")
            return


class Ready:
    """The readiness pipe of a starting host: one line ("ready" or "error: ..."), once."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def say(self, text: str) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(fd, text.encode() + b"\n")
        os.close(fd)


def run_host(data_dir: Path, *, ready: Ready | None = None,
             down_after_s: float = DEFAULT_DOWN_AFTER_S,
             scrub_interval_s: float = DEFAULT_SCRUB_INTERVAL_S,
             rebuild_rate: float | None = None, idle_exit_s: float = IDLE_EXIT_S) -> None:
    """Serve the embedded ring of ``data_dir`` until stopped (module docstring); blocks."""
    ring = ServedRing(data_dir)
    try:
        healer = Healer(ring, down_after_s=down_after_s, scrub_interval_s=scrub_interval_s,
                        max_bytes_per_s=rebuild_rate * 2**20 if rebuild_rate else None)
        try:
            trio.run(_serve, Path(data_dir), ring, healer, ready or Ready(None), idle_exit_s)
        finally:
            healer.close()
    finally:
        ring.close()
        st = host_state(data_dir)
        if st is not None and st.pid == os.getpid():
            with contextlib.suppress(OSError):
                # the port stays recorded for the next start; the pid says nobody serves
                atomic_write(Path(data_dir) / HOST_STATE_FILE,
                             HostState(0, st.host, st.port, st.epoch, st.started,
                                       st.idle_exit_s).to_json())
    log.info("ring host of %s stopped", data_dir)


# -- starting and stopping it (from mounts and sofsctl) ----------------------------------------


def ensure_host(data_dir: Path, *, daemon_args: Sequence[str] = (),
                timeout: float = 60.0) -> HostState:
    """The running ring host of ``data_dir``, started (detached, logging to
    ``log/ringhost.log``) if there is none. Two mounts starting at once start one host: the
    second start finds the cluster lock taken and waits for the first's state. A sofsctl job
    holding the ring is waited for until ``timeout``. MountError if it cannot start."""
    deadline = time.monotonic() + timeout
    said = False
    while True:
        st = running_host(data_dir)
        if st is not None:
            try:
                control.call(data_dir, "host", timeout=10)
                return st
            except MountError as e:  # stopping (or stuck): wait for it to end
                if time.monotonic() >= deadline:
                    raise MountError(f"the ring host of {data_dir} (pid {st.pid}) does not "
                                     f"answer: {e} (log: {Path(data_dir) / HOST_LOG})") from None
                time.sleep(0.2)
                continue
        err = _start(data_dir, daemon_args, deadline)
        if err is None:
            continue
        holder = re.search(r"in use by pid (\d+)", err)
        mounts = {st.pid: st for st in runstate.all_states(data_dir) if st.alive}
        if holder is not None and int(holder.group(1)) in mounts:
            m = mounts[int(holder.group(1))]
            raise MountError(f"volume {m.volume} is mounted at {m.mountpoint} holding the "
                             f"embedded ring itself (--exclusive-ring): unmount it first")
        if holder is None or time.monotonic() >= deadline:
            raise MountError(f"the ring host of {data_dir} did not start: {err} "
                             f"(log: {Path(data_dir) / HOST_LOG})")
        if not said and running_host(data_dir) is None:
            log.info("the RING is held by pid %s (a sofsctl job?): waiting up to %.0f s",
                     holder.group(1), deadline - time.monotonic())
            said = True
        time.sleep(0.2)  # another host starting, or a sofsctl job holding the ring


def _start(data_dir: Path, daemon_args: Sequence[str], deadline: float) -> str | None:
    """Start a host; None once it serves, else its error."""
    logf_path = Path(data_dir) / HOST_LOG
    logf_path.parent.mkdir(parents=True, exist_ok=True)
    r, w = os.pipe()
    # setsid --fork: the host is nobody's child (no zombie in a mount process, and it
    # outlives the mount that started it)
    cmd = ["setsid", "--fork", sys.executable, "-m", "fuse_mount.ringhost",
           "--data-dir", str(data_dir), "--ready-fd", str(w), *daemon_args]
    # not the mount's systemd notification socket: the host's READY=1 is not the mount's
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_PID")}
    with open(logf_path, "ab") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                pass_fds=(w,), close_fds=True, env=env)
    os.close(w)
    try:
        answer = read_ready_line(r, deadline)
    except TimeoutError:
        return "it did not become ready in time"
    finally:
        os.close(r)
        proc.wait()
    text = answer.decode(errors="replace").strip()
    if text == "ready":
        return None
    return text.removeprefix("error: ") or "the process exited"


def host_forward(data_dir: Path) -> Forward:
    """The repair-log forwarding of a hosted ring client: the host's admin socket."""
    def forward(op: str, args: dict) -> object:
        try:
            return control.call(data_dir, op, timeout=10, args=args)
        except MountError as e:
            raise cerr.RingHostDown(str(e)) from None
    return forward


def open_client(data_dir: Path, instance: str) -> HostedRing:
    """A client of the running ring host, forwarding its repair-log notes to it."""
    return HostedRing.open(data_dir, instance, forward=host_forward(data_dir))


def stop_host(data_dir: Path, timeout: float = 60.0) -> bool:
    """Stop the ring host if it runs (SIGTERM, then wait); True if one was stopped."""
    st = running_host(data_dir)
    if st is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(st.pid, signal.SIGTERM)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not st.alive:
            return True
        time.sleep(0.05)
    raise MountError(f"the ring host (pid {st.pid}) did not stop in {timeout:.0f} s; see "
                     f"{Path(data_dir) / HOST_LOG}")


def stop_if_unused(data_dir: Path) -> bool:
    """After an unmount: stop the host when no mount of the data directory is left, so the
    ring is free at once for offline commands (it would end by itself a little later). A
    host that never ends by itself (``--idle-exit 0``: systemd's) is left running."""
    if any(st.alive for st in runstate.all_states(data_dir)):
        return False
    st = running_host(data_dir)
    if st is None or st.idle_exit_s <= 0:
        return False
    return stop_host(data_dir)


def add_healer_options(p: argparse.ArgumentParser) -> None:
    """The healer's options, of the ring host and of a mount process alike."""
    p.add_argument("--scrub-interval", type=float, default=DEFAULT_SCRUB_INTERVAL_S,
                   help="seconds between full sweeps that re-read and verify every piece")
    p.add_argument("--rebuild-rate", type=float, default=None,
                   help="MiB/s cap on rebuild, rebalance and scrub traffic (default: none)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sofs-ringhost",
                                description="Serve an embedded sofs RING to the mounts of its "
                                            "data directory.")
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--ready-fd", type=int)
    p.add_argument("--down-after", type=float, default=DEFAULT_DOWN_AFTER_S,
                   help=argparse.SUPPRESS)  # networked rings only; accepted for symmetry
    add_healer_options(p)
    p.add_argument("--idle-exit", type=float, default=IDLE_EXIT_S,
                   help="end this many seconds after the last mount and client left "
                        "(0: never; default %(default)s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s")
    ready = Ready(args.ready_fd)
    try:
        run_host(args.data_dir, ready=ready, down_after_s=args.down_after,
                 scrub_interval_s=args.scrub_interval, rebuild_rate=args.rebuild_rate,
                 idle_exit_s=args.idle_exit)
    except (cerr.ChunkStoreError, OSError) as e:
        log.error("ring host failed: %s", e)
        ready.say(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

