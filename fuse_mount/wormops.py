"""The WORM admin operations of a mount process, and its autocommit scanner.

``sofsctl worm ...`` asks the mount process of a volume (its control socket, ops named
``worm-*``) or, for a volume that is not mounted, runs the same :func:`run_worm_op` on a
Filesystem it opens itself: one implementation for both. The scanner commits, every
``interval_s``, the domain files whose autocommit period has passed, so that ``stat`` says
the truth even of files nobody touches, and makes the kernel forget their cached attributes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import pyfuse3
import trio

from sofs.errors import InvalidArgument
from sofs.fs import Filesystem
from sofs.worm.policy import DomainPolicy

from . import ctlserver

log = logging.getLogger(__name__)

WORM_OPS = ("worm-domain-create", "worm-domains", "worm-show", "worm-hold", "worm-held",
            "worm-retained", "worm-privileged-delete")
# seconds between autocommit scans; SOFS_WORM_SCAN_INTERVAL sets it (tests of real mounts)
SCAN_INTERVAL_S = max(1.0, float(os.environ.get("SOFS_WORM_SCAN_INTERVAL") or 60.0))


def run_worm_op(fs: Filesystem, op: str, args: dict[str, Any]) -> Any:
    """One WORM admin op on ``fs``; its answer as JSON-ready data."""
    if op == "worm-domain-create":
        policy = DomainPolicy.parse(args["mode"], args["default"], args["minimum"],
                                    args["maximum"], args["autocommit"])
        return fs.worm_domain_create(args["path"], policy).as_dict()
    if op == "worm-domains":
        return [d.as_dict() for d in fs.worm_domains]
    if op == "worm-retained":
        r = fs.worm_retained()
        return {"files": r.files, "held": r.held, "last_until_ns": r.last_until_ns}
    if op == "worm-privileged-delete":
        return fs.worm_privileged_delete(args["path"], args["reason"], args["who"],
                                         args["host"]).as_dict()
    ino = int(args.get("ino") or fs.resolve(args["path"]))
    if op == "worm-show":
        return fs.worm_status(ino).as_dict()
    if op == "worm-hold":
        return {"changed": fs.worm_hold(ino, args["name"], add=bool(args["add"]),
                                        recursive=bool(args.get("recursive")))}
    if op == "worm-held":
        return [{"path": p, "holds": h} for p, h in fs.worm_held(ino)]
    raise InvalidArgument(f"unknown WORM op {op!r}")


def worm_ops(fs: Filesystem) -> dict[str, ctlserver.Operation]:
    """The ``worm-*`` ops for the mount's control server."""
    ops: dict[str, ctlserver.Operation] = {
        op: (lambda progress, _op=op, **args: run_worm_op(fs, _op, args)) for op in WORM_OPS}
    ops["worm-privileged-delete"] = lambda progress, **args: _delete_and_tell_kernel(fs, args)
    ops["worm-show"] = lambda progress, **args: _show_and_tell_kernel(fs, args)
    return ops


def _show_and_tell_kernel(fs: Filesystem, args: dict[str, Any]) -> Any:
    """``worm show`` may be what commits a file (its autocommit was due): the kernel then
    forgets the attributes it cached (write bits, atime), so that stat agrees at once."""
    shown = run_worm_op(fs, "worm-show", args)
    if shown["state"] in ("committed", "expired"):
        _forget_attributes([int(shown["ino"])])
    return shown


def _delete_and_tell_kernel(fs: Filesystem, args: dict[str, Any]) -> Any:
    """The privileged delete, then the kernel forgets the removed name (it would go on
    showing a file the mount no longer has)."""
    parent_path, _, name = args["path"].rstrip("/").rpartition("/")
    parent = fs.resolve(parent_path)
    done = run_worm_op(fs, "worm-privileged-delete", args)
    with contextlib.suppress(OSError):
        pyfuse3.invalidate_entry(parent, name.encode(), deleted=done["ino"])
    return done


def _forget_attributes(inos: list[int]) -> None:
    for ino in inos:
        with contextlib.suppress(OSError):  # not known to the kernel: nothing cached
            pyfuse3.invalidate_inode(ino, attr_only=True)


async def autocommit_scanner(fs: Filesystem, interval_s: float = SCAN_INTERVAL_S) -> None:
    """Run the autocommit scan of ``fs`` every ``interval_s`` until cancelled."""
    while True:
        await trio.sleep(interval_s)
        if not fs.worm_domains:
            continue
        try:
            inos = await trio.to_thread.run_sync(fs.worm_scan)
        except Exception:
            log.exception("WORM autocommit scan failed; will retry")
            continue
        if inos:
            log.info("WORM: %d file(s) committed since the last scan", len(inos))
            await trio.to_thread.run_sync(_forget_attributes, inos)
