"""One admin operation on a volume, wherever it is: through its mount process when it is
mounted (its control socket), else on a Filesystem opened here for the moment of the command.

``sofsctl worm`` and ``sofsctl trash`` use it: both run the same function of the mount side
(:mod:`fuse_mount.wormops`, :mod:`fuse_mount.trashops`) in either place.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from chunkstore import errors as cerr
from fuse_mount import control, runstate
from sofs import errors as ferr
from sofs.fs import Filesystem

from .common import Failure, fail
from .jobs import open_ring_or_host, require_volume

OfflineOp = Callable[[Filesystem, str, dict[str, Any]], Any]


def volume_op(home: Path, volume: str, op: str, args: dict[str, Any], offline: OfflineOp) -> Any:
    """The answer of ``op`` on VOLUME: asked of its mount process, or ``offline(fs, op,
    args)`` on the volume opened here."""
    require_volume(home, volume)
    if any(st.alive and st.volume == volume for st in runstate.all_states(home)):
        try:
            return control.call(home, op, volume=volume, args=args)
        except control.MountError as e:
            raise fail(e) from None
    try:
        ring = open_ring_or_host(home)
    except cerr.ClusterInUse:
        raise Failure("the embedded ring is held by a volume mounted with --exclusive-ring; "
                      "unmount it first (sofsctl umount MOUNTPOINT)") from None
    except cerr.ChunkStoreError as e:
        raise fail(e) from None
    try:
        fs = Filesystem.open_volume(home, volume, ring, check_permissions=False)
        try:
            return offline(fs, op, args)
        finally:
            fs.close()
    except ferr.FsError as e:
        raise fail(e) from None
    finally:
        ring.close()
