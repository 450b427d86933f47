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


def kernel_mounts() -> dict[str, str]:
    """Mount point -> filesystem type for every mount this process can see."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = fields[4].encode().decode("unicode_escape")
            out[point] = fields[sep + 1]
    return out


def is_mounted(mountpoint: str) -> bool:
    return os.path.realpath(mountpoint) in kernel_mounts()
