"""Run-state files of mount processes: ``DATA_DIR/run/mounts/VOLUME.json``.

Written by a mount process once it is mounted and removed when it stops; read by ``sofsctl``
to find which process serves which mount point (a file whose pid is gone is stale). Also reads
the kernel's mount table, the truth about what is mounted where.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class MountState:
    pid: int
    volume: str
    mountpoint: str
    data_dir: str

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _dir(data_dir: Path) -> Path:
    return Path(data_dir) / "run" / "mounts"


def write(data_dir: Path, state: MountState) -> None:
    d = _dir(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{state.volume}.json.tmp"
    tmp.write_text(json.dumps(dataclasses.asdict(state)))
    tmp.rename(d / f"{state.volume}.json")


def remove(data_dir: Path, state: MountState) -> None:
    path = _dir(data_dir) / f"{state.volume}.json"
    try:
        if read_file(path) == state:
            path.unlink()
    except (FileNotFoundError, ValueError):
        pass


def read_file(path: Path) -> MountState:
    return MountState(**json.loads(path.read_text()))


def all_states(data_dir: Path) -> list[MountState]:
    out = []
    d = _dir(data_dir)
    if d.is_dir():
        for p in sorted(d.glob("*.json")):
            try:
                out.append(read_file(p))
            except (ValueError, TypeError, OSError):
                continue
    return out


def find(data_dir: Path, mountpoint: str) -> MountState | None:
    real = os.path.realpath(mountpoint)
    for s in all_states(data_dir):
        if s.mountpoint == real:
            return s
    return None


@dataclasses.dataclass(frozen=True)
class KernelMount:
    """One line of a mountinfo file: the device (``major:minor``), mount point, fs type."""

    device: str
    point: str
    fstype: str


def parse_mountinfo(text: str) -> list[KernelMount]:
    """The mounts of a ``/proc/PID/mountinfo`` text (mount points unescaped: mountinfo writes
    space, tab, newline and backslash in octal); malformed lines are left out."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
            out.append(KernelMount(fields[2], fields[4].encode().decode("unicode_escape"),
                                   fields[sep + 1]))
        except (ValueError, IndexError):
            continue
    return out


def kernel_mounts() -> dict[str, str]:
    """Mount point -> filesystem type for every mount this process can see."""
    with open("/proc/self/mountinfo") as f:
        return {m.point: m.fstype for m in parse_mountinfo(f.read())}


def is_mounted(mountpoint: str) -> bool:
    return os.path.realpath(mountpoint) in kernel_mounts()
