"""The mount process: opens the local RING and a volume, mounts it with pyfuse3, serves until
unmounted or signalled, then flushes and closes everything in order.

Run in the foreground by ``sofsctl mount --foreground`` or detached (``python -m
fuse_mount.daemon``, started by :func:`fuse_mount.control.start_background`), which reports
readiness through an inherited pipe. Teardown order is fixed: stop serving FUSE, stop the
healer (its sweep is cancelled between chunks and its thread joined before the event loop
ends), flush the volume's buffered data and metadata, close the RING, remove the run-state
file. SIGTERM, SIGINT and SIGHUP unmount cleanly; a kill -9 loses nothing that fsync or close
acknowledged, and leaves a dead mount point that ``sofsctl umount`` clears.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pyfuse3
import trio

from chunkstore import errors as cerr
from chunkstore import sdnotify
from chunkstore.clock import clock_from_env
from chunkstore.healing.healer import DEFAULT_DOWN_AFTER_S, DEFAULT_SCRUB_INTERVAL_S, Healer
from chunkstore.metricsendpoint import MetricsEndpointError, parse_address
from chunkstore.ring.datapath import RingStore
from chunkstore.ring.hosted import HostedRing, running_host
from chunkstore.ring.open import is_networked, open_ring
from sofs.errors import FsError
from sofs.fs import Filesystem
from sofs.fsck import FsckReport
from sofs.metacheckpoint import CheckpointConflict, Checkpointer, check_current, list_checkpoints
from sofs.online_check import check_mounted
from sofs.snapshot.manager import Snapshots
from sofs.volume import volume_dir

from . import ctlserver, gcgate, journaling, leaseholder, mountmetrics, ringhost, runstate, unmountreport
from .errors import MountError
from .kernelcache import KernelCacheFixer, inode_now
from .names import HIDDEN_ROOT_NAMES
from .operations import SofsOperations
from .opmetrics import FuseMetrics
from .ringops import ring_ops
from .snapshotops import snapshot_ops, snapshot_scheduler
from .trashops import trash_ops
from .wormops import autocommit_scanner, worm_ops

log = logging.getLogger("sofs.mount")

GC_INTERVAL_S = 60.0
TAKEOVER_WAIT_S = 60.0  # sofsctl volume takeover: how long to wait for the holder's lease
META_CHECKPOINT_INTERVAL_S = 600.0  # metadata checkpoints into the RING (sofs.metacheckpoint)
FIRST_CHECKPOINT_AFTER_S = 30.0
HOST_CHECK_S = 2.0  # how often a mount of an embedded ring checks that its host runs
READ_AHEAD_KB = 1024


def tune_malloc() -> None:
    """Keep glibc from mmap-ing (and page-faulting in) every multi-MiB block buffer.

    By default each 1-4 MiB buffer (fragments, payloads, blocks) is a fresh mmap that is
    faulted in page by page and unmapped on free: measured here, that halves chunk read speed.
    Serving them from the heap (threshold above the largest buffer), with a bounded number of
    arenas and free memory returned past 64 MiB, keeps resident memory bounded.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 64 << 20)
    libc.mallopt(m_arena_max, 4)


def mount_options(volume: str) -> set[str]:
    opts = set(pyfuse3.default_options)  # default_permissions: the kernel checks mode bits
    opts |= {f"fsname=sofs:{volume}", "subtype=sofs", "allow_other"}
    return opts


def _raise_read_ahead(mountpoint: str) -> None:
    """Let the kernel read 1 MiB at a time from the mount (FUSE defaults to 128 KiB)."""
    try:
        st = os.stat(mountpoint)
        path = f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/read_ahead_kb"
        with open(path, "w") as f:
            f.write(str(READ_AHEAD_KB))
    except OSError as e:
        log.info("could not raise read-ahead (%s); reads stay at 128 KiB", e)


def admin_ops(ring: RingStore, fs: Filesystem, healer: Healer | None = None,
              checkpointer: Checkpointer | None = None,
              checkpoint_interval_s: float = 0.0,
              ring_level: bool = True,
              lease: leaseholder.MountLease | None = None) -> dict[str, ctlserver.Operation]:
    """What ``sofsctl`` may ask this process to do: its volume's operations, and with
    ``ring_level`` those of the RING it serves (:mod:`.ringops`; not for a client of the
    embedded ring's host, which serves them itself)."""
    ops: dict[str, ctlserver.Operation] = {}
    if ring_level:
        ops.update(ring_ops(ring, healer, gc_hold=fs.gc_paused))
    if checkpointer is not None:
        ops["checkpoint"] = lambda progress: checkpointer.write(progress).as_dict()
        ops["checkpoint-take-over"] = lambda progress: checkpointer.write(
            progress, take_over=True).as_dict()
        ops["checkpoints"] = lambda progress: [
            c.as_dict() for c in list_checkpoints(ring, fs.config.uuid)]
    def stats(progress: ctlserver.Progress) -> dict:
        out = {**fs.statistics().as_dict(),
               **_checkpoint_stats(checkpointer, checkpoint_interval_s)}
        if lease is not None:  # a networked RING with etcd: the volume's write lease
            out["lease"] = {"token": lease.token, "lost": lease.lost}
            out["gc_stopped"] = bool(out.get("gc_stopped")) or lease.lost is not None
            out.update(journaling.stats(lease.journal, fs))
        return out

    ops["stats"] = stats
    ops["fsck"] = _online_fsck(fs, ring)
    ops.update(worm_ops(fs))
    ops.update(snapshot_ops(fs))
    ops.update(trash_ops(fs))
    return ops


def _online_fsck(fs: Filesystem, ring: RingStore) -> ctlserver.Operation:
    """The ``fsck`` admin op: fsck's progress (phase, done, total) as the control server's."""
    def run(progress: ctlserver.Progress) -> FsckReport:
        return check_mounted(fs, ring, progress=lambda phase, done, total: progress(done, total, phase))
    return run


def _checkpoint_stats(checkpointer: Checkpointer | None, interval_s: float) -> dict:
    if checkpointer is None:
        return {}
    last = checkpointer.last
    return {"checkpoint_interval_s": interval_s,  # 0: scheduled checkpoints are off
            "checkpoint_seq": last.seq if last else None,
            "checkpoint_at": last.created if last else None,
            "checkpoint_error": checkpointer.last_error,
            "gc_stopped": checkpointer.overtaken}


def checkpoint_now(checkpointer: Checkpointer, why: str) -> None:
    """One metadata checkpoint into the RING, logged; a failure is logged, not raised."""
    try:
        info = checkpointer.write()
    except Exception as e:
        log.error("metadata checkpoint (%s) failed: %s: %s", why, type(e).__name__, e)
        return
    log.info("metadata checkpoint %d (%s): %d files, %d bytes, %d sent, %d pieces reused, "
             "%.1f s", info.seq, why, info.files, info.bytes, info.sent_bytes,
             info.reused_pieces, info.took)


def _claim(checkpointer: Checkpointer, ring: RingStore, fs: Filesystem, vdir: Path,
           take_over: bool) -> None:
    """Before serving: refuse a copy of the metadata that another host has overtaken in the
    RING; with TAKE_OVER, make this copy the volume's reference (a checkpoint) instead."""
    if take_over:
        try:
            info = checkpointer.write(take_over=True)
        except (FsError, cerr.ChunkStoreError) as e:
            raise RuntimeError(f"cannot take the volume over: {e}") from None
        log.warning("took volume %s over: this copy is checkpoint %d in the RING",
                    fs.config.name, info.seq)
        return
    try:
        check_current(ring, fs.config, vdir,
                      f"sofsctl mount {fs.config.name} MOUNTPOINT --take-over")
    except CheckpointConflict as e:
        raise RuntimeError(str(e)) from None
    except (FsError, cerr.ChunkStoreError) as e:  # the RING cannot tell now: serve anyway
        log.warning("could not compare this copy of the metadata with the RING's "
                    "checkpoints (%s); mounting anyway", e)


def _collect_pass(fs: Filesystem, hosted_by: Path | None) -> int:
    """One garbage-collection pass; skipped while a disk add of the ring host holds the
    data directory's GC gate (:mod:`.gcgate`)."""
    if hosted_by is None:
        return fs.collect_garbage()
    with gcgate.pass_allowed(hosted_by) as allowed:
        return fs.collect_garbage() if allowed else 0


async def _keep_host(data_dir: Path, host_args: Sequence[str]) -> None:
    """A ring host that ended under a running mount (killed, crashed) is started again; the
    mount's ring client finds it at its next revive round."""
    while True:
        await trio.sleep(HOST_CHECK_S)
        if running_host(data_dir) is None:
            log.warning("the ring host of %s is gone: starting it again", data_dir)
            try:
                await trio.to_thread.run_sync(
                    lambda: ringhost.ensure_host(data_dir, daemon_args=host_args))
            except (MountError, OSError) as e:  # the mount serves on: its writes fail meanwhile
                log.error("cannot start the ring host again: %s; will retry", e)


def _host_args(scrub_interval_s: float, rebuild_rate: float | None) -> list[str]:
    """The healer settings of this mount, for the ring host it starts."""
    out = ["--scrub-interval", str(scrub_interval_s)]
    if rebuild_rate:
        out += ["--rebuild-rate", str(rebuild_rate)]
    return out


def compact_disks(ring: RingStore) -> None:
    """Give back the space of deleted chunks: rewrite containers that are mostly dead."""
    for disk_id in ring.available_disks():
        try:
            report = ring.call(disk_id, lambda ds: ds.compact())
        except Exception as e:  # one bad disk must not stop the others
            log.warning("compaction of disk %s failed: %s", disk_id, e)
            continue
        if report.containers_removed:
            log.info("disk %s: compacted %d containers, %d bytes reclaimed", disk_id,
                     report.containers_removed, report.bytes_reclaimed)


async def _serve(fs: Filesystem, ring: RingStore, mountpoint: str, ready_fd: int | None,
                 controls: list[tuple[Path, dict]] | None = None,
                 gc_interval_s: float = GC_INTERVAL_S, healer: Healer | None = None,
                 checkpointer: Checkpointer | None = None,
                 checkpoint_interval_s: float = META_CHECKPOINT_INTERVAL_S,
                 take_over: bool = False, metrics: tuple[str, int] | None = None,
                 fuse_metrics: FuseMetrics | None = None, hosted_by: Path | None = None,
                 host_args: Sequence[str] = (),
                 lease: leaseholder.MountLease | None = None) -> None:
    # bound before anything serves: a port in use fails the mount (RuntimeError)
    endpoint = None if metrics is None else mountmetrics.serve(
        metrics, fs, ring, healer, checkpointer, fuse_metrics,
        host_view=None if hosted_by is None else ringhost.healer_view(hosted_by))
    async with trio.open_nursery() as nursery:
        if endpoint is not None:
            nursery.start_soon(mountmetrics.close_at_exit, endpoint)
        for control in controls or ():
            await nursery.start(ctlserver.serve, *control)
        if hosted_by is not None:
            nursery.start_soon(_keep_host, hosted_by, host_args)
        nursery.start_soon(autocommit_scanner, fs)
        if fs is not None:  # (a test serves a ring without a volume)
            nursery.start_soon(snapshot_scheduler, Snapshots(fs))

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
                async for signum in sigs:
                    log.info("signal %s: unmounting", signal.Signals(signum).name)
                    pyfuse3.terminate()
                    return

        async def collect_garbage() -> None:
            fenced = False
            while True:
                await trio.sleep(gc_interval_s)
                if checkpointer is not None and checkpoint_interval_s > 0 \
                        and not checkpointer.overtaken:
                    # a takeover elsewhere is noticed within a GC interval, not a checkpoint's
                    await trio.to_thread.run_sync(checkpointer.verify_current)
                if lease is not None and lease.lost is not None:
                    continue  # another host may hold the volume: its chunks are not ours
                if checkpointer is not None and checkpointer.overtaken:
                    if not fenced:
                        log.error("this copy of the volume is read-only and its garbage "
                                  "collection stopped: another host wrote newer checkpoints "
                                  "of this volume, and its copy may still use chunks this one "
                                  "no longer does (%s)", checkpointer.last_error)
                    fenced = True
                    continue
                fenced = False
                try:
                    n = await trio.to_thread.run_sync(_collect_pass, fs, hosted_by)
                    if n:
                        log.info("garbage collector deleted %d unreferenced chunks", n)
                        await trio.to_thread.run_sync(compact_disks, ring)
                except Exception:
                    log.exception("garbage collection pass failed; will retry")

        async def checkpoints(checkpointer: Checkpointer) -> None:
            await trio.sleep(min(FIRST_CHECKPOINT_AFTER_S, checkpoint_interval_s))
            while True:
                await trio.to_thread.run_sync(checkpoint_now, checkpointer, "scheduled")
                await trio.sleep(checkpoint_interval_s)

        async def announce() -> None:
            await trio.to_thread.run_sync(_raise_read_ahead, mountpoint)
            if ready_fd is not None:
                os.write(ready_fd, b"ready\n")
                os.close(ready_fd)
            sdnotify.notify(f"READY=1\nSTATUS=serving {mountpoint}")
            log.info("serving %s", mountpoint)

        nursery.start_soon(watch_signals)
        nursery.start_soon(collect_garbage)
        nursery.start_soon(announce)
        if healer is not None:
            nursery.start_soon(ringhost.heal_rounds, healer)
        if lease is not None:
            nursery.start_soon(leaseholder.keep, lease, fs)
            if lease.journal is not None and checkpointer is not None:
                nursery.start_soon(journaling.keep, lease.journal, fs, checkpointer)
        if checkpointer is not None and checkpoint_interval_s > 0:
            nursery.start_soon(checkpoints, checkpointer)
        try:
            await pyfuse3.main()
        finally:
            if healer is not None:  # its sweep (a round's or an admin repair's) stops soon
                healer.cancel_nowait()
            nursery.cancel_scope.cancel()


def _fix_kernel_cache_on_lost_writes(stack: contextlib.ExitStack, fs: Filesystem) -> None:
    """Once mounted: lost writes also leave the kernel's cache (:mod:`.kernelcache`)."""
    fixer = KernelCacheFixer(inode_now(fs.getattr))
    fs.lost_writes.listeners.append(fixer.lost)
    fixer.start()
    stack.callback(fixer.stop)


RING_WAIT_S = 20.0  # how long a mount waits for a sofsctl job (status, df...) holding the ring


def _open_ring_waiting(data_dir: Path, instance: str | None,
                       wait_s: float = RING_WAIT_S) -> RingStore:
    """Open the RING; while another process holds the embedded one, wait up to ``wait_s``
    for it: a ``sofsctl status`` or ``df`` holds it for a moment, and a mount started then
    must not fail. A mount process holding it does not let go: refused at once."""
    deadline = time.monotonic() + wait_s
    said = False
    while True:
        try:
            return open_ring(data_dir, instance=instance)
        except cerr.ClusterInUse as e:
            holder = e.pid
            mounts = {st.pid for st in runstate.all_states(data_dir) if st.alive}
            if holder in mounts or time.monotonic() >= deadline:
                raise
            if not said:
                log.info("the RING is held by pid %s (a sofsctl job?): waiting up to %.0f s",
                         holder, wait_s)
                said = True
            time.sleep(0.2)


UNSYNCED_ENV = "SOFS_BENCH_UNSYNCED_CLOSE"


def _synced_acks() -> bool:
    """False only when the benchmark asks (``SOFS_BENCH_UNSYNCED_CLOSE=1``, tests/bench): the
    behaviour before issue 13, where a close left its metadata commit in the page cache."""
    if os.environ.get(UNSYNCED_ENV) == "1":
        log.warning("%s=1: closes and namespace changes are NOT synced (benchmark only): a "
                    "power cut loses files whose close returned", UNSYNCED_ENV)
        return False
    return True


def _close_volume(fs: Filesystem) -> None:
    """Close the volume at the end of the mount process; data it cannot store is said, not
    raised (the files are as their last close left them, and the unmount report names them)."""
    try:
        fs.close()
    except FsError as e:
        log.error("closing the volume: data could not be stored: %s", e)


def run_mount(data_dir: Path, volume: str, mountpoint: str, *, ready_fd: int | None = None,
              gc_grace_s: float = 3600.0, gc_interval_s: float = GC_INTERVAL_S,
              down_after_s: float = DEFAULT_DOWN_AFTER_S,
              scrub_interval_s: float = DEFAULT_SCRUB_INTERVAL_S,
              rebuild_rate: float | None = None,
              checkpoint_interval_s: float = META_CHECKPOINT_INTERVAL_S,
              take_over: bool = False, metrics: tuple[str, int] | None = None,
              exclusive_ring: bool = False,
              lease_ttl: int = leaseholder.LEASE_TTL_S, takeover: bool = False,
              standby: bool = False, takeover_wait_s: float = TAKEOVER_WAIT_S) -> None:
    """Mount ``volume`` at ``mountpoint`` and serve until unmounted; blocks.

    On an embedded data directory the disks are served by its ring host
    (:mod:`.ringhost`, started if it does not run), so other volumes can be mounted at the
    same time; with EXCLUSIVE_RING this process holds the embedded ring itself (and runs its
    healer) instead, and no other volume of the data directory can be mounted meanwhile.

    Every CHECKPOINT_INTERVAL_S (0: never; the first one 30 s after mounting) and at a clean
    unmount, the volume's metadata is checkpointed into the RING (sofs.metacheckpoint).
    A copy of the metadata that another host has overtaken there is not mounted (it would
    fork the volume) unless TAKE_OVER, which first writes a checkpoint of this copy.
    METRICS (host, port): serve Prometheus metrics there (fuse_mount.mountmetrics).
    On a networked RING with etcd the mount holds the volume's write lease of LEASE_TTL
    seconds (fuse_mount.leaseholder): refused while another host holds it; read-only once it
    cannot be renewed in time; every acknowledged change is journaled into the RING
    (fuse_mount.journaling). TAKEOVER: wait up to TAKEOVER_WAIT_S for the lease, then mount
    the volume as the RING has it (newest checkpoint plus journal), setting any local copy
    aside; STANDBY: the same, waiting for the lease as long as it takes (the ready pipe
    says "standby" meanwhile)."""
    mountpoint = os.path.realpath(mountpoint)
    tune_malloc()
    host_args = _host_args(scrub_interval_s, rebuild_rate)
    with contextlib.ExitStack() as stack:
        networked = is_networked(data_dir)
        hosted = not networked and not exclusive_ring
        if hosted:  # the data directory's ring host serves the disks (fuse_mount.ringhost)
            ringhost.ensure_host(data_dir, daemon_args=host_args)
            ring: RingStore = HostedRing.open(data_dir, volume,
                                             forward=ringhost.host_forward(data_dir))
        else:
            ring = _open_ring_waiting(data_dir, volume if networked else None)
        stack.callback(ring.close)
        lease = None
        if takeover or standby:
            ready = [ready_fd]

            def waiting() -> None:  # a standby: sofsctl mount returns now
                if standby and ready[0] is not None:
                    # left open (its reader goes): a late error written there gets EPIPE,
                    # never lands in a file that reused the number
                    with contextlib.suppress(OSError):
                        os.write(ready[0], b"standby\n")
                    ready[0] = None

            lease, _ = journaling.take_over(ring, Path(data_dir), volume, lease_ttl,
                                            wait_s=None if standby else takeover_wait_s,
                                            on_wait=waiting)
            ready_fd = ready[0]
            stack.callback(lease.release)
        # default_permissions: the kernel checks permissions before every request
        fs = Filesystem.open_volume(data_dir, volume, ring, gc_grace_s=gc_grace_s,
                                    check_permissions=False, clock=clock_from_env(),
                                    untrashed=HIDDEN_ROOT_NAMES, synced_acks=_synced_acks())
        stack.callback(_close_volume, fs)
        healer = None
        if not hosted:  # the host heals and scrubs an embedded ring it serves
            healer = Healer(ring, down_after_s=down_after_s, scrub_interval_s=scrub_interval_s,
                            max_bytes_per_s=rebuild_rate * 2**20 if rebuild_rate else None,
                            min_placing=fs.protection.max_width())
            stack.callback(healer.close)
        if lease is None:  # networked, with etcd: the volume's write lease
            lease = leaseholder.take(ring, fs.config.name, fs.config.uuid, str(data_dir),
                                     lease_ttl)
            if lease is not None:
                stack.callback(lease.release)
        checkpointer = Checkpointer(fs.meta, ring, fs.config, volume_dir(data_dir, volume),
                                    protection=fs.protection)
        _claim(checkpointer, ring, fs, volume_dir(data_dir, volume), take_over)
        if lease is not None:
            lease.journal = journaling.start(fs, checkpointer, lease)
        ops = SofsOperations(fs, metrics=FuseMetrics() if metrics is not None else None)
        stack.callback(ops.snapshots.close)
        pyfuse3.init(ops, mountpoint, mount_options(volume))
        _fix_kernel_cache_on_lost_writes(stack, fs)
        unmount = [True]
        stack.callback(lambda: pyfuse3.close(unmount=unmount[0]))
        state = runstate.MountState(pid=os.getpid(), volume=volume, mountpoint=mountpoint,
                                    data_dir=str(data_dir))
        runstate.write(data_dir, state)
        stack.callback(runstate.remove, data_dir, state)
        log.info("volume %s mounted at %s (pid %d)", volume, mountpoint, os.getpid())
        admin = admin_ops(ring, fs, healer, checkpointer, checkpoint_interval_s,
                          ring_level=not hosted, lease=lease)
        controls = [(ctlserver.socket_path(data_dir, volume), admin)]
        if not networked and not hosted:  # it holds the embedded ring: sofsctl asks it
            controls.append((ctlserver.socket_path(data_dir, None), admin))
        if lease is not None:  # leaseholder.keep renews it from now on
            lease.stop_renewing()
        trio.run(_serve, fs, ring, mountpoint, ready_fd, controls, gc_interval_s, healer,
                 checkpointer, checkpoint_interval_s, take_over, metrics, ops.metrics,
                 Path(data_dir) if hosted else None, host_args, lease)
        log.info("FUSE session ended; flushing and closing")
        sdnotify.notify("STOPPING=1\nSTATUS=flushing and closing")
        final_error = None
        try:
            fs.flush_all()
        except FsError as e:  # those files are as their last close left them (sofs.fileio)
            final_error = str(e)
            log.error("data buffered at the unmount could not be stored: %s", e)
        if checkpoint_interval_s > 0:
            checkpoint_now(checkpointer, "unmount")
        unmountreport.write(data_dir, unmountreport.build(
            os.getpid(), volume, fs.meta, fs.lost_writes.records(), fs.lost_writes.total,
            final_error))


def _metrics_address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except MetricsEndpointError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuse_mount.daemon",
                                description="Serve one sofs volume on a FUSE mount point.")
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--ready-fd", type=int)
    p.add_argument("--gc-grace", type=float, default=3600.0,
                   help="seconds an unreferenced chunk is kept before deletion")
    p.add_argument("--gc-interval", type=float, default=GC_INTERVAL_S,
                   help="seconds between garbage-collection passes")
    p.add_argument("--down-after", type=float, default=DEFAULT_DOWN_AFTER_S,
                   help="networked RING: seconds a node may be unreachable before it is "
                        "marked down and its data rebuilt elsewhere")
    ringhost.add_healer_options(p)
    p.add_argument("--checkpoint-interval", type=float, default=META_CHECKPOINT_INTERVAL_S,
                   help="seconds between checkpoints of the volume's metadata into the RING "
                        "(0: none, not even at unmount)")
    p.add_argument("--take-over", action="store_true",
                   help="mount this copy of the metadata even though another host wrote newer "
                        "checkpoints of the volume, and make it the volume's reference")
    p.add_argument("--lease-ttl", type=int, default=leaseholder.LEASE_TTL_S,
                   help="networked RING with etcd: seconds of the volume's write lease")
    p.add_argument("--takeover", action="store_true",
                   help="networked RING with etcd: wait for the volume's lease, then mount it "
                        "as the RING has it (newest checkpoint and journal)")
    p.add_argument("--standby", action="store_true",
                   help="like --takeover, waiting as long as another host holds the lease")
    p.add_argument("--takeover-wait", type=float, default=TAKEOVER_WAIT_S,
                   help="--takeover: seconds to wait for the holder's lease to end")
    p.add_argument("--metrics", metavar="HOST:PORT", type=_metrics_address,
                   help="serve Prometheus metrics on HOST:PORT (/metrics); default: off")
    p.add_argument("--exclusive-ring", action="store_true",
                   help="embedded ring: hold it in this process instead of using the data "
                        "directory's ring host (no other volume can be mounted meanwhile)")
    p.add_argument("volume")
    p.add_argument("mountpoint")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        run_mount(args.data_dir, args.volume, args.mountpoint, ready_fd=args.ready_fd,
                  gc_grace_s=args.gc_grace, gc_interval_s=args.gc_interval,
                  down_after_s=args.down_after, scrub_interval_s=args.scrub_interval,
                  rebuild_rate=args.rebuild_rate,
                  checkpoint_interval_s=args.checkpoint_interval,
                  take_over=args.take_over, metrics=args.metrics,
                  exclusive_ring=args.exclusive_ring, lease_ttl=args.lease_ttl,
                  takeover=args.takeover, standby=args.standby,
                  takeover_wait_s=args.takeover_wait)
    except Exception as e:
        log.error("mount failed: %s", e, exc_info=not isinstance(e, (OSError, RuntimeError)))
        if args.ready_fd is not None:
            with contextlib.suppress(OSError):
                os.write(args.ready_fd, f"error: {e}\n".encode())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
