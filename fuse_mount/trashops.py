"""The trash admin operations of a mount process (``sofsctl trash ...``).

``sofsctl trash`` asks the mount process of a volume (its control socket, ops named
``trash-*``) or, for a volume that is not mounted, runs the same :func:`run_trash_op` on a
Filesystem it opens itself. After a restore through the mount, the kernel is told to look the
name up again (it may remember that it did not exist).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pyfuse3

from sofs.errors import FsError, InvalidArgument
from sofs.fs import Filesystem

from . import ctlserver

TRASH_OPS = ("trash-list", "trash-restore", "trash-purge")


def run_trash_op(fs: Filesystem, op: str, args: dict[str, Any]) -> Any:
    """One trash admin op on ``fs``; its answer as JSON-ready data."""
    if op == "trash-list":
        return [e.as_dict() for e in fs.trash_list()]
    if op == "trash-restore":
        return {"path": fs.trash_restore(int(args["ino"]), args.get("to"))}
    if op == "trash-purge":
        inos = args.get("inos")
        return {"purged": fs.trash_purge([int(i) for i in inos] if inos is not None else None,
                                         before_ns=args.get("before_ns"))}
    raise InvalidArgument(f"unknown trash op {op!r}")


def trash_ops(fs: Filesystem) -> dict[str, ctlserver.Operation]:
    """The ``trash-*`` ops for the mount's control server."""
    ops: dict[str, ctlserver.Operation] = {
        op: (lambda progress, _op=op, **args: run_trash_op(fs, _op, args)) for op in TRASH_OPS}
    ops["trash-restore"] = lambda progress, **args: _restore_and_tell_kernel(fs, args)
    return ops


def _restore_and_tell_kernel(fs: Filesystem, args: dict[str, Any]) -> Any:
    done = run_trash_op(fs, "trash-restore", args)
    parent_path, _, name = done["path"].rpartition("/")
    with contextlib.suppress(OSError, FsError):
        pyfuse3.invalidate_entry(fs.resolve(parent_path), name.encode())
    return done
