"""The snapshot admin operations of a mount process (``snapshot-*`` ops), and its scheduler.

``sofsctl snapshot ...`` asks the mount process of a volume (its control socket) or, for a
volume that is not mounted, runs the same :func:`run_snapshot_op` on a Filesystem it opens
itself: one implementation for both (:mod:`sofs.snapshot.manager` does the work). A deleted
snapshot's entry under ``/.snapshots`` is dropped from the kernel's cache at once. The
scheduler applies the volume's snapshot schedule (:mod:`sofs.snapshot.schedule`, set by
``sofsctl snapshot schedule``) every ``interval_s``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import pyfuse3
import trio

from sofs.errors import InvalidArgument
from sofs.fs import Filesystem
from sofs.snapshot.manager import Snapshots
from sofs.snapshot.schedule import Keep, load_schedule, save_schedule

from . import ctlserver
from .snapshotview import SNAPDIR_INO

log = logging.getLogger(__name__)

SNAPSHOT_OPS = ("snapshot-create", "snapshot-list", "snapshot-delete", "snapshot-schedule")
SCHEDULE_INTERVAL_S = 60.0


def run_snapshot_op(snaps: Snapshots, op: str, args: dict[str, Any]) -> Any:
    """One snapshot admin op; its answer as JSON-ready data."""
    if op == "snapshot-create":
        return snaps.create(args.get("name")).as_dict()
    if op == "snapshot-list":
        return [i.as_dict() for i in snaps.ready()]
    if op == "snapshot-delete":
        return snaps.delete(str(args["name"])).as_dict()
    if op == "snapshot-schedule":  # keep: a KIND=N list to set, "off" to remove, None: show
        if args.get("keep") is not None:
            save_schedule(snaps.vdir, None if args["keep"] == "off" else Keep.parse(args["keep"]))
        keep = load_schedule(snaps.vdir)
        return None if keep is None else keep.as_dict()
    raise InvalidArgument(f"unknown snapshot op {op!r}")


def _forget(name: str) -> None:
    with contextlib.suppress(OSError):  # not known to the kernel: nothing cached
        pyfuse3.invalidate_entry(SNAPDIR_INO, name.encode())


def _delete_and_tell_kernel(snaps: Snapshots, args: dict[str, Any]) -> Any:
    done = run_snapshot_op(snaps, "snapshot-delete", args)
    _forget(str(args["name"]))
    return done


def snapshot_ops(fs: Filesystem) -> dict[str, ctlserver.Operation]:
    """The ``snapshot-*`` ops for the mount's control server."""
    snaps = Snapshots(fs)
    ops: dict[str, ctlserver.Operation] = {
        op: (lambda progress, _op=op, **args: run_snapshot_op(snaps, _op, args))
        for op in SNAPSHOT_OPS}
    ops["snapshot-delete"] = lambda progress, **args: _delete_and_tell_kernel(snaps, args)
    return ops


async def snapshot_scheduler(snaps: Snapshots, interval_s: float = SCHEDULE_INTERVAL_S,
                             forget: Callable[[str], None] = _forget) -> None:
    """Apply the schedule of ``snaps``'s volume every ``interval_s`` until cancelled; a
    failure is logged and tried again next time. ``forget(name)``: a deleted snapshot's
    entry leaves the kernel's cache."""
    while True:
        await trio.sleep(interval_s)
        try:
            run = await trio.to_thread.run_sync(snaps.run_schedule)
        except Exception:
            log.exception("scheduled snapshots of volume %s failed; will retry",
                          snaps.fs.config.name)
            continue
        if run.taken:
            log.info("scheduled snapshot %s of volume %s taken", run.taken, snaps.fs.config.name)
        for name in run.deleted:
            log.info("scheduled snapshot %s of volume %s deleted (not kept by the schedule)",
                     name, snaps.fs.config.name)
            forget(name)
