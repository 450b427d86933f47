"""The ``DISK`` marker file: what makes a directory a disk of a cluster.

``DISK_DIR/DISK`` holds JSON ``{"cluster_id", "disk_id", "format_version"}``, written
atomically by :func:`initialise_disk` (``DiskStore.initialise``); a DiskStore opens only a
directory whose marker it can read (:func:`read_marker`) and that names the expected cluster
and disk, and it keeps checking that the marker is still the same file (``check_alive``), so a
disk that was unmounted or replaced under a running store is noticed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

from chunkstore.atomicfile import atomic_write, fsync_dir
from chunkstore.errors import DiskUnavailable

MARKER_NAME = "DISK"
DISK_FORMAT_VERSION = 1


@dataclass(frozen=True)
class DiskMarker:
    """Contents of a disk's ``DISK`` marker file."""

    cluster_id: str
    disk_id: str
    format_version: int = DISK_FORMAT_VERSION


def read_marker(path: str | os.PathLike) -> DiskMarker:
    """Read and validate ``path/DISK``. Raises DiskUnavailable."""
    mpath = os.path.join(path, MARKER_NAME)
    try:
        with open(mpath, "rb") as f:
            doc = json.loads(f.read(4096))
        marker = DiskMarker(str(doc["cluster_id"]), str(doc["disk_id"]), int(doc["format_version"]))
    except FileNotFoundError:
        raise DiskUnavailable(f"{path}: no disk marker (not initialised or not mounted)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DiskUnavailable(f"{path}: unreadable disk marker: {e}") from e
    if marker.format_version != DISK_FORMAT_VERSION:
        raise DiskUnavailable(f"{path}: unsupported disk format version {marker.format_version}")
    return marker


def initialise_disk(path: str | os.PathLike, cluster_id: str, disk_id: str) -> DiskMarker:
    """Create the marker (and the directory if its parent exists). Idempotent for the
    same ids; DiskUnavailable for another marker or a non-empty unmarked directory."""
    path = os.fspath(path)
    marker = DiskMarker(cluster_id, disk_id)
    if os.path.exists(os.path.join(path, MARKER_NAME)):
        existing = read_marker(path)
        if existing != marker:
            raise DiskUnavailable(f"{path}: already initialised as {existing}")
        return existing
    if os.path.isdir(path):
        if os.listdir(path):
            raise DiskUnavailable(f"{path}: not empty and has no disk marker; refusing to initialise")
    else:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise DiskUnavailable(f"{path}: parent directory does not exist")
        os.mkdir(path)
    atomic_write(os.path.join(path, MARKER_NAME),
                 json.dumps(dataclasses.asdict(marker), sort_keys=True) + "\n")
    os.makedirs(os.path.join(path, "containers"), exist_ok=True)
    fsync_dir(path)
    return marker


DAMAGED_PREFIX = "damaged-"


def set_aside(path: str | os.PathLike, stamp: str) -> str:
    """Move everything of a marked disk directory but its marker (index, containers) into
    ``damaged-STAMP/`` inside it, so the disk opens empty and is rebuilt, and nothing it held
    is deleted; returns that directory. Earlier ``damaged-*`` directories stay where they are.
    The renames stay on the disk's own filesystem, and the directory is synced."""
    path = os.fspath(path)
    read_marker(path)  # DiskUnavailable unless this is a disk directory
    target = os.path.join(path, DAMAGED_PREFIX + stamp)
    os.mkdir(target)
    for name in sorted(os.listdir(path)):
        if name == MARKER_NAME or name.startswith(DAMAGED_PREFIX):
            continue
        os.rename(os.path.join(path, name), os.path.join(target, name))
    fsync_dir(target)
    fsync_dir(path)
    return target
