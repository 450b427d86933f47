"""The mount's metadata journal in the RING, and a volume taken over from the RING.

On a networked RING with etcd, the mount holds its volume's write lease
(:mod:`.leaseholder`). Under that lease:

* :func:`start` writes a first checkpoint that records the journal's position for the lease's
  token (``token/1``), then attaches the journal (:mod:`sofs.journal`) to the volume's
  metadata: from then on every answer that acknowledges a change (close of a written file,
  fsync, rename, unlink, mkdir, setattr...) waits until the change is in the journal, on a
  majority of its disks. Without that checkpoint the mount fails: changes it acknowledged
  could not be replayed by another host.
* :func:`keep` appends commits that no request made durable yet (xattrs, atimes) within a
  second, and writes a checkpoint early when the journal is half full.
* :func:`take_over` is the other side: before mounting, with ``sofsctl volume takeover`` or a
  standby (``sofsctl mount --standby``), wait for the volume's lease (the old holder's runs
  out), declare the new token to the nodes (the old holder can write nothing more), set any
  local copy of the metadata aside, restore the newest checkpoint and replay the journal
  written after it: the volume as of its last acknowledged change.

A cluster without etcd has no lease and no journal: checkpoints alone, as before.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import trio

from chunkstore import errors as cerr
from chunkstore.ring.datapath import RingStore
from sofs.errors import FsError
from sofs.fs import Filesystem
from sofs.journal import JournalWriter, width_for
from sofs.metacheckpoint import Checkpointer, CheckpointInfo, find_volumes, restore
from sofs.volume import load_volume, save_volume, volume_dir

from . import leaseholder

log = logging.getLogger("sofs.mount.journal")

FLUSH_S = 1.0          # commits nobody made durable reach the journal within this
SUPERSEDED_DIR = "superseded"  # in the data directory: local copies a takeover set aside


def start(fs: Filesystem, checkpointer: Checkpointer,
          lease: leaseholder.MountLease | None) -> JournalWriter | None:
    """Begin journaling under LEASE (None without a lease: nothing)."""
    if lease is None:
        return None
    writer = JournalWriter(checkpointer.store, fs.config.uuid, lease.token,
                           width=width_for(fs.protection))
    checkpointer.journal = writer
    try:
        info = checkpointer.write()
    except (FsError, cerr.ChunkStoreError) as e:
        checkpointer.journal = None
        raise RuntimeError(
            f"volume {fs.config.name}: the checkpoint that starts its journal under fencing "
            f"token {lease.token} could not be written ({type(e).__name__}: {e}); without it "
            "another host could not replay what this mount acknowledges") from None
    fs.meta.attach_journal(writer.append)
    log.info("volume %s: metadata journal started at %s (checkpoint %d)", fs.config.name,
             info.journal, info.seq)
    return writer


def stats(writer: JournalWriter | None, fs: Filesystem) -> dict:
    """The journal's part of the mount's ``stats`` (schema in sofsctl(8))."""
    if writer is None:
        return {}
    pos = writer.position()
    return {"journal": {"token": pos.token, "next": pos.next, "backlog": writer.backlog(),
                        "slots": writer.slots, "width": writer.width, "groups": writer.groups,
                        "entries": writer.entries, "bytes": writer.bytes,
                        "queued": fs.meta.journal_queued}}


async def keep(writer: JournalWriter, fs: Filesystem, checkpointer: Checkpointer) -> None:
    """Until cancelled: flush commits nobody made durable; checkpoint when half full."""
    failing = False
    while True:
        await trio.sleep(FLUSH_S)
        if fs.meta.fenced is not None:
            continue
        try:
            if fs.meta.journal_queued:
                await trio.to_thread.run_sync(fs.meta.make_durable)
            if writer.backlog() > writer.slots // 2:
                info = await trio.to_thread.run_sync(checkpointer.write)
                log.info("volume %s: journal half full: checkpoint %d written, journal from "
                         "%s", fs.config.name, info.seq, info.journal)
            if failing:
                log.info("volume %s: the journal takes appends again", fs.config.name)
            failing = False
        except Exception as e:  # noqa: BLE001 - logged; the mount serves on (reads, EIO)
            if not failing:
                log.error("volume %s: journal: %s: %s", fs.config.name, type(e).__name__, e)
            failing = True


def take_over(ring: RingStore, data_dir: Path, volume: str, ttl_s: int, *,
              wait_s: float | None, on_wait: Callable[[], None] | None = None,
              ) -> tuple[leaseholder.MountLease, CheckpointInfo]:
    """Before opening VOLUME here: its lease (waiting up to WAIT_S for the holder's to end,
    None: for ever), then its metadata from the RING (newest checkpoint plus journal). Any
    local copy is moved to ``superseded/`` in DATA_DIR first. RuntimeError when it cannot."""
    volume_uuid = _which(ring, data_dir, volume)
    lease = leaseholder.take(ring, volume, volume_uuid, str(data_dir), ttl_s, wait_s=wait_s,
                             on_wait=on_wait)
    if lease is None:
        raise RuntimeError("taking a volume over needs a networked cluster with etcd "
                           "(sofsctl cluster create --etcd): without a lease the old host "
                           "could go on writing")
    try:
        vdir = volume_dir(data_dir, volume)
        if vdir.exists():
            aside = Path(data_dir) / SUPERSEDED_DIR / \
                f"{volume}.{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.{os.getpid()}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.rename(vdir, aside)
            log.warning("volume %s: the local copy of its metadata was set aside in %s",
                        volume, aside)
        vdir.mkdir(parents=True)
        try:
            config, info = restore(ring, volume_uuid, vdir / "meta")
        except BaseException:
            shutil.rmtree(vdir, ignore_errors=True)
            raise
        save_volume(data_dir, config)
    except (FsError, cerr.ChunkStoreError, OSError) as e:
        lease.release()
        raise RuntimeError(f"volume {volume}: cannot take it over: {type(e).__name__}: "
                           f"{e}") from None
    except BaseException:
        lease.release()
        raise
    log.warning("volume %s taken over: checkpoint %d of %s, then %d journal groups (%d "
                "entries) replayed", volume, info.seq, info.host or "an unknown host",
                info.replayed_groups, info.replayed_entries)
    return lease, info


def _which(ring: RingStore, data_dir: Path, volume: str) -> str:
    """The UUID of the volume named VOLUME in the RING (this data directory's, if it has
    one of that name)."""
    try:
        found = [v for v in find_volumes(ring) if v.name == volume]
    except (FsError, cerr.ChunkStoreError) as e:
        raise RuntimeError(f"cannot list the volumes in the RING: {e}") from None
    try:
        local = load_volume(data_dir, volume).uuid
    except FsError:
        local = None
    if local is not None and any(v.uuid == local for v in found):
        return local
    if not found:
        raise RuntimeError(f"the RING holds no checkpoint of a volume named {volume!r}: "
                           "there is nothing to take over")
    if len({v.uuid for v in found}) > 1:
        raise RuntimeError(f"several volumes named {volume!r} have checkpoints in the RING "
                           f"({', '.join(sorted({v.uuid for v in found}))})")
    return found[0].uuid
