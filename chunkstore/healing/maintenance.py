"""Maintenance mode (``sofsctl maintenance on|off``), like Ceph's ``noout``: during a planned
intervention (a disk swap, a server reboot) the healer neither marks silent nodes down nor
starts sweeps (rebuilds, rebalances, scheduled scrubs), so a few minutes without a node do not
set off a rebuild of its data. Reads and writes go on, degraded where they must.

The flag is a file of the data directory (``maintenance.json``: since, reason, by whom),
written atomically and read by the healer at every round. It is this client's: on a networked
ring every client's data directory needs it (the cluster-wide flag belongs with the cluster
map's authority).
"""

from __future__ import annotations

import dataclasses
import json
import os

from chunkstore.atomicfile import atomic_write
from chunkstore.clock import SYSTEM_CLOCK, Clock
from chunkstore.placement.layout import MAINTENANCE_FILE


@dataclasses.dataclass(frozen=True)
class Maintenance:
    since: float      # wall-clock seconds
    reason: str
    by: str           # user@host that turned it on


def _path(data_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(data_dir), MAINTENANCE_FILE)


def read_maintenance(data_dir: str | os.PathLike) -> Maintenance | None:
    """The flag, or None when it is off (or its file does not parse: a flag that cannot be
    read must not silently stop the healer; ``sofsctl maintenance`` reports it)."""
    try:
        with open(_path(data_dir)) as f:
            doc = json.load(f)
        return Maintenance(float(doc["since"]), str(doc["reason"]), str(doc["by"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def set_maintenance(data_dir: str | os.PathLike, reason: str, by: str,
                    clock: Clock = SYSTEM_CLOCK) -> Maintenance:
    """Turn maintenance mode on (again: the reason and time are replaced)."""
    m = Maintenance(clock.time(), reason, by)
    atomic_write(_path(data_dir), json.dumps(dataclasses.asdict(m)))
    return m


def clear_maintenance(data_dir: str | os.PathLike) -> bool:
    """Turn it off; False if it was not on."""
    try:
        os.unlink(_path(data_dir))
    except FileNotFoundError:
        return False
    return True
