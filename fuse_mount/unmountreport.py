"""What a mount process could not store, told to ``sofsctl umount`` once the process is gone.

Written by the mount process as it ends (``DATA_DIR/run/mounts/VOLUME.unmount.json``, replaced
atomically): the files whose writes were lost during the session because the RING could not
take them (each already failed its writer's write, close or fsync: :mod:`sofs.lostwrites`), and
the error of the final flush if data still buffered at the unmount could not be stored. The
unmounting command reads the report of the pid it waited for and says it all, instead of a
plain "unmounted".
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from chunkstore.atomicfile import atomic_write
from sofs.chunkusers import paths_of
from sofs.lostwrites import LostWrite
from sofs.metadata import MetaStore

FORMAT = 1
SHOWN = 20  # files named in the text; the JSON keeps them all


@dataclasses.dataclass(frozen=True)
class LostFile:
    paths: list[str]        # every name of the file now (none: deleted since)
    kept_size: int          # as its last complete close or fsync left it
    written_size: int
    error: str
    told_opens: int         # opens that got the error (0: nobody had the file open)


@dataclasses.dataclass(frozen=True)
class UnmountReport:
    pid: int
    volume: str
    lost: list[LostFile]
    lost_total: int            # lost-write events in the session (lost holds the latest files)
    final_error: str | None    # the flush at unmount failed: data buffered then is not stored

    @property
    def clean(self) -> bool:
        return not self.lost and self.final_error is None

    def lines(self) -> list[str]:
        """Plain words for the admin (nothing when everything was stored)."""
        out = []
        if self.final_error is not None:
            out.append(f"data still buffered at the unmount could not be stored: "
                       f"{self.final_error}")
        if self.lost:
            out.append(f"{len(self.lost)} file(s) lost writes that could not be stored during "
                       "the session (their writers got the error); each is as its last "
                       "successful close or fsync left it:")
            for f in self.lost[:SHOWN]:
                name = ", ".join(f.paths) or "(deleted since)"
                out.append(f"  {name}: {f.kept_size} bytes kept of {f.written_size} written "
                           f"({f.error})")
            if len(self.lost) > SHOWN:
                out.append(f"  ... and {len(self.lost) - SHOWN} more (sofsctl umount --json)")
        return out


def _path(data_dir: Path, volume: str) -> Path:
    return Path(data_dir) / "run" / "mounts" / f"{volume}.unmount.json"


def build(pid: int, volume: str, meta: MetaStore, lost: list[LostWrite], lost_total: int,
          final_error: str | None) -> UnmountReport:
    """The report of a mount process, its metadata still open (for the files' paths)."""
    names = paths_of(meta, [r.ino for r in lost]) if lost else {}
    files = [LostFile(names.get(r.ino, []), r.kept_size, r.written_size, r.error, r.open_count)
             for r in lost]
    return UnmountReport(pid, volume, files, lost_total, final_error)


def write(data_dir: Path, report: UnmountReport) -> None:
    path = _path(data_dir, report.volume)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"format": FORMAT, **dataclasses.asdict(report)}))


def take(data_dir: Path, volume: str, pid: int) -> UnmountReport | None:
    """The report the mount process ``pid`` left, removed once read (None: it left none, or
    it is another process's, or unreadable)."""
    path = _path(data_dir, volume)
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != FORMAT or raw.get("pid") != pid:
            return None
        report = UnmountReport(
            pid=raw["pid"], volume=raw["volume"],
            lost=[LostFile(**f) for f in raw["lost"]], lost_total=raw["lost_total"],
            final_error=raw["final_error"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    path.unlink(missing_ok=True)
    return report
