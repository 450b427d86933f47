"""What several sofsctl commands share: running a job that needs the RING (here, or in the
mount process that holds it) and reading the volumes of a data directory."""

from __future__ import annotations

import difflib
from pathlib import Path

import click

from chunkstore import errors as cerr
from chunkstore.ring.open import is_networked, open_ring
from fuse_mount import control
from fuse_mount.ctlserver import to_jsonable
from sofs import errors as ferr
from sofs.volume import VolumeConfig, list_volume_names, load_volume

from .common import fail, progress_bar


def ring_job(home: Path, op: str, run_local, label: str | None = None,
             args: dict | None = None):
    """Run a job that needs the RING: here (``run_local(ring, progress)``), or as admin op
    ``op`` (with ``args``) in the mount process that holds it."""
    progress, finish = progress_bar(label)
    try:
        try:
            ring = open_ring(home, instance="sofsctl")
        except cerr.ClusterInUse as e:
            if is_networked(home):
                raise fail(f"another sofsctl job holds this data directory: {e}") from None
            try:  # a mount process serves the RING: it runs the job for us
                return control.call(home, op, progress, args=args)
            except control.MountError as e:
                raise fail(e) from None
        except cerr.ChunkStoreError as e:
            raise fail(e) from None
        try:
            return to_jsonable(run_local(ring, progress))
        finally:
            ring.close()
    finally:
        finish()


def volumes(home: Path) -> list[VolumeConfig]:
    """Volume configs; an unreadable one is reported and skipped, not fatal."""
    out = []
    for name in list_volume_names(home):
        try:
            out.append(load_volume(home, name))
        except ferr.VolumeError as e:
            click.echo(f"warning: {e}", err=True)
    return out


def require_volume(home: Path, name: str) -> VolumeConfig:
    """Volume ``name``'s config, or the command fails naming the volumes there are and the
    closest to what was typed."""
    vols = {v.name: v for v in volumes(home)}
    if name in vols:
        return vols[name]
    names = sorted(vols)
    close = difflib.get_close_matches(name, names, n=1) or [
        n for n in names if n.lower() == name.lower()]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise fail(f"no volume {name!r}; volumes: {', '.join(names) or 'none'}{hint}")
