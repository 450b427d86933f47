"""Who else holds a FUSE mount: the mount namespaces (and their processes) that have a copy of
it, read from ``/proc/*/mountinfo``.

A FUSE session ends only when its last mount is gone, in every mount namespace. A container,
or a daemon started with ``ip netns exec`` or ``unshare -m``, keeps a copy of every mount that
existed when its namespace was made; after ``fusermount3 -u`` here, such a copy keeps the
session (and the mount process) alive. ``sofsctl umount`` uses :func:`holders` to name them
instead of waiting in vain. Reads only /proc.
"""

from __future__ import annotations

import dataclasses
import os

from .runstate import parse_mountinfo


@dataclasses.dataclass(frozen=True)
class Holder:
    """One other mount namespace holding the mount: its id, the mount point as seen there,
    and some of its processes (pid, command name)."""

    namespace: str
    mountpoint: str
    processes: tuple[tuple[int, str], ...]

    def describe(self) -> str:
        shown = ", ".join(f"{pid} {comm}" for pid, comm in self.processes[:5])
        more = f" and {len(self.processes) - 5} more" if len(self.processes) > 5 else ""
        return f"mount namespace {self.namespace} (pids {shown}{more}) at {self.mountpoint}"

    def clear_command(self) -> str:
        return f"nsenter -t {self.processes[0][0]} -m umount -l {self.mountpoint}"


def _fuse_mounts(mountinfo: str) -> dict[str, str]:
    """Device (``major:minor``) -> mount point, for the FUSE mounts of one mountinfo file."""
    return {m.device: m.point for m in parse_mountinfo(mountinfo) if m.fstype.startswith("fuse")}


def device_of(mountpoint: str, proc: str = "/proc") -> str | None:
    """The FUSE device (``major:minor``) mounted at ``mountpoint`` in our namespace."""
    real = os.path.realpath(mountpoint)
    try:
        with open(f"{proc}/self/mountinfo") as f:
            mounts = _fuse_mounts(f.read())
    except OSError:
        return None
    return next((dev for dev, point in mounts.items() if point == real), None)


def holders(device: str | None, mountpoint: str, proc: str = "/proc") -> list[Holder]:
    """The mount namespaces other than ours that still have FUSE device ``device`` mounted
    (when the device is not known any more, a FUSE mount at ``mountpoint``)."""
    try:
        own = os.readlink(f"{proc}/self/ns/mnt")
    except OSError:
        own = None
    by_ns: dict[str, list[tuple[int, str]]] = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            ns = os.readlink(f"{proc}/{entry}/ns/mnt")
            with open(f"{proc}/{entry}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        if ns != own:
            by_ns.setdefault(ns, []).append((int(entry), comm))
    found = []
    for ns, procs in sorted(by_ns.items()):
        mounts = _namespace_mounts(procs, proc)
        point = mounts.get(device) if device is not None else (
            mountpoint if mountpoint in mounts.values() else None)
        if point is not None:
            found.append(Holder(ns, point, tuple(sorted(procs))))
    return found


def _namespace_mounts(procs: list[tuple[int, str]], proc: str) -> dict[str, str]:
    """The FUSE mounts of a namespace, read through the first of its processes still there."""
    for pid, _ in procs:
        try:
            with open(f"{proc}/{pid}/mountinfo") as f:
                return _fuse_mounts(f.read())
        except OSError:
            continue
    return {}
