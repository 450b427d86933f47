"""The FUSE mount an export serves: found from the mount's run state and /proc, and watched.

An export never serves a directory that is not the volume's live sofs mount: the supervisor
records the mount (its process, start time and mount id) when it starts the service, and stops
the service once :func:`mount_gone` says the mount went away.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fuse_mount import runstate

from .errors import ExportError
from .service import _proc_info, _running, process_start_time


@dataclass(frozen=True)
class MountRef:
    """The FUSE mount an export serves, as found when the export started."""

    volume: str
    pid: int
    pid_start: int | None
    mountpoint: str
    mount_id: int
    fstype: str
    source: str


def mountinfo_entry(mountpoint: str) -> tuple[int, str, str] | None:
    """(mount id, fs type, source) of the topmost mount at MOUNTPOINT, or None."""
    found = None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                try:
                    sep = fields.index("-")
                except ValueError:
                    continue
                point = fields[4].encode().decode("unicode_escape")
                if point == mountpoint:
                    found = (int(fields[0]), fields[sep + 1], fields[sep + 2])
    except OSError:
        return None
    return found


def find_mount(data_dir: Path, volume: str) -> MountRef:
    """The live FUSE mount of VOLUME; ExportError if the volume is not mounted."""
    states = [s for s in runstate.all_states(data_dir) if s.volume == volume]
    live = [s for s in states if _running(_proc_info(s.pid))]
    if not live:
        raise ExportError(
            f"volume {volume} is not mounted: mount it first (sofsctl mount {volume} "
            "MOUNTPOINT), then export it; an export never serves an unmounted directory"
        )
    s = live[0]
    entry = mountinfo_entry(s.mountpoint)
    if entry is None:
        raise ExportError(
            f"volume {volume}: its mount process (pid {s.pid}) runs but {s.mountpoint} is not "
            "a mount point"
        )
    mount_id, fstype, source = entry
    if not fstype.startswith("fuse"):
        raise ExportError(f"{s.mountpoint} is a {fstype} mount, not the sofs FUSE mount of "
                          f"volume {volume}")
    return MountRef(volume=volume, pid=s.pid, pid_start=process_start_time(s.pid),
                    mountpoint=s.mountpoint, mount_id=mount_id, fstype=fstype, source=source)


def mount_gone(ref: MountRef) -> str | None:
    """Why the mount REF is no longer served (None while it is)."""
    if process_start_time(ref.pid) != ref.pid_start or ref.pid_start is None:
        return f"the mount process (pid {ref.pid}) is gone"
    entry = mountinfo_entry(ref.mountpoint)
    if entry is None:
        return f"{ref.mountpoint} is no longer a mount point"
    if entry[0] != ref.mount_id:
        return f"{ref.mountpoint} is now another mount (mount id {entry[0]}, was {ref.mount_id})"
    return None
