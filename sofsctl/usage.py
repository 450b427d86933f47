"""``sofsctl df`` and ``sofsctl volume show NAME``: what each volume holds and costs, what each
disk holds, and one volume's whole picture (settings, mount, exports, checkpoints, usage).
Thin: the figures are :func:`sofs.usage.volume_usage` (metadata, read beside a mount process
when mounted) and :func:`chunkstore.ring.diskusage.disk_usage` (the disks, through the mount
process when it holds the ring)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from chunkstore.ring.diskusage import disk_usage
from exporters.registry import list_exports
from fuse_mount import runstate
from sofs import errors as ferr
from sofs.chunkusers import has_metadata, reading_volume
from sofs.metacheckpoint import list_checkpoints
from sofs.usage import VolumeUsage, volume_usage
from sofs.volume import VolumeConfig

from .common import fail, human, pass_home, table
from .jobs import require_volume, ring_job, volumes


def _usage(home: Path, v: VolumeConfig) -> VolumeUsage | None:
    if not has_metadata(home, v.name):
        return None
    with reading_volume(home, v.name) as meta:
        return volume_usage(meta)


def _ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema in sofsctl(8)).")
@pass_home
def df(home: Path, as_json: bool) -> None:
    """Show what each volume holds and costs (files, logical, stored and raw bytes,
    compression and dedup, reclaimable) and what each disk holds.

    Volumes are read from their metadata (beside the mount process when mounted); disks
    are asked through the RING.
    """
    vol_rows: list[dict[str, Any]] = []
    for v in volumes(home):
        try:
            u = _usage(home, v)
        except ferr.FsError as e:
            click.echo(f"warning: volume {v.name}: {e}", err=True)
            continue
        vol_rows.append({"name": v.name, **(u.as_dict() if u is not None else {})})
    disks = ring_job(home, "disks", lambda ring, p: [d.as_dict() for d in disk_usage(ring)])
    if as_json:
        click.echo(json.dumps({"format": 1, "volumes": vol_rows, "disks": disks}, indent=1))
        return
    rows: list[tuple[object, ...]] = [("VOLUME", "FILES", "LOGICAL", "STORED", "RAW",
                                       "COMPRESSION", "DEDUP", "RECLAIMABLE")]
    for r in vol_rows:
        if "files" not in r:
            rows.append((r["name"], 0, "-", "-", "-", "-", "-", "-"))
            continue
        rows.append((r["name"], r["files"], human(r["logical_bytes"]), human(r["stored_bytes"]),
                     human(r["raw_bytes"]), _ratio(r["compression_ratio"]),
                     _ratio(r["dedup_ratio"]), human(r["reclaimable_bytes"])))
    table(rows)
    click.echo()
    drows: list[tuple[object, ...]] = [("DISK", "USED BY SOFS", "PIECES", "LIVE", "DEAD",
                                        "FS USE", "CHECKSUM ERRORS")]
    for d in disks:
        if d["error"]:
            drows.append((d["id"], "-", "-", "-", "-", "-", d["error"][:60]))
            continue
        total = d["fs_total_bytes"]
        use = f"{100 * (total - d['fs_free_bytes']) / total:.0f}%" if total else "-"
        drows.append((d["id"], human(d["used_bytes"]), d["live_pieces"], human(d["live_bytes"]),
                      human(d["dead_bytes"]), use, d["checksum_errors"]))
    table(drows)
    bad = [d["id"] for d in disks if d.get("checksum_errors")]
    if bad:
        click.echo(f"\nchecksum errors were seen on {', '.join(bad)} (pieces that did not verify; "
                   "repair rebuilt or rebuilds them): a disk whose count keeps growing is "
                   "failing; see DISK/errors.json for the last one")


@click.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema in sofsctl(8)).")
@pass_home
def volume_show(home: Path, name: str, as_json: bool) -> None:
    """Show volume NAME: UUID, policies, creation, mount, exports, checkpoints, usage."""
    v = require_volume(home, name)
    mount = next((s for s in runstate.all_states(home) if s.volume == name and s.alive), None)
    exports = [e for e in list_exports(home) if e.volume == name]
    try:
        checkpoints = ring_job(home, "volume-checkpoints",
                               lambda ring, p: [c.as_dict() for c in list_checkpoints(ring, v.uuid)],
                               args={"uuid": v.uuid})
        cp_error = None
    except click.ClickException as e:
        checkpoints, cp_error = [], e.message
    try:
        usage = _usage(home, v)
    except ferr.FsError as e:
        raise fail(e) from None
    doc = {"format": 1, "name": v.name, "uuid": v.uuid, "created": v.created,
           "large_policy": v.large_policy, "small_policy": v.small_policy,
           "threshold": v.threshold, "compression": v.compression, "block_size": v.block_size,
           "mount": None if mount is None else {"mountpoint": mount.mountpoint, "pid": mount.pid},
           "exports": [{"kind": e.kind, "state": e.state, "bind": e.bind, "port": e.port,
                        "clients": e.who} for e in exports],
           "checkpoints": [{"seq": c["seq"], "created": c["created"], "host": c["host"],
                            "files": c["files"], "bytes": c["bytes"]} for c in checkpoints],
           "checkpoints_error": cp_error,
           "usage": usage.as_dict() if usage is not None else None}
    if as_json:
        click.echo(json.dumps(doc, indent=1))
        return
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.created))
    click.echo(f"volume {v.name}")
    click.echo(f"  uuid:        {v.uuid}")
    click.echo(f"  created:     {created}")
    click.echo(f"  protection:  {v.large_policy} for blocks of {human(v.threshold)} and more, "
               f"{v.small_policy} below")
    click.echo(f"  blocks:      {human(v.block_size)}, compression {v.compression}")
    click.echo("  mount:       " + (f"{mount.mountpoint} (pid {mount.pid})" if mount else
                                    "not mounted"))
    for x in exports:
        click.echo(f"  export:      {x.kind} on {x.bind}:{x.port}, {x.state}, for {x.who}")
    if cp_error:
        click.echo(f"  checkpoints: unknown ({cp_error})")
    elif not checkpoints:
        click.echo("  checkpoints: none in the RING")
    for c in checkpoints:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c["created"]))
        click.echo(f"  checkpoint:  {c['seq']} at {at} from {c['host'] or '?'}, "
                   f"{c['files']} files, {human(c['bytes'])}")
    if usage is None:
        click.echo("  usage:       never mounted: no files")
        return
    click.echo(f"  files:       {usage.files} ({usage.directories} directories, "
               f"{usage.other} other)")
    click.echo(f"  logical:     {human(usage.logical_bytes)}")
    click.echo(f"  stored:      {human(usage.stored_bytes)} in {usage.chunks} chunks "
               f"(compression {_ratio(usage.compression_ratio)}, dedup "
               f"{_ratio(usage.dedup_ratio)})")
    click.echo(f"  raw:         {human(usage.raw_bytes)} on the disks")
    click.echo(f"  reclaimable: {human(usage.reclaimable_bytes)} "
               f"({usage.reclaimable_chunks} chunks waiting for the collector)")

