"""``sofsctl chunk which KEY`` and ``sofsctl file info PATH``: from a chunk key (as ``repair``
and ``status`` print them) to the volumes and paths that use it, and from a file to its inode,
blocks, chunks and the disks holding each piece. Thin: the reading is
:mod:`sofs.chunkusers` (metadata) and :mod:`sofs.ringview` (the RING, here or in the mount
process that holds it)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import click

from chunkstore import errors as cerr
from chunkstore.placement.keys import KEY_SIZE, REF_SIZE, ChunkRef
from fuse_mount import runstate
from sofs import errors as ferr
from sofs.chunkusers import (
    chunk_uses,
    file_blocks,
    has_metadata,
    inode_of,
    paths_of,
    reading_volume,
    resolve,
)
from sofs.ringview import ring_view
from sofs.volume import VolumeConfig

from .common import fail, human, pass_home, table
from .jobs import ring_job, volumes


def _parse_key(text: str) -> tuple[bytes, ChunkRef | None]:
    """A chunk key in hex (40 digits), or a whole ref (58 digits) and its key."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not hex") from None
    if len(raw) == KEY_SIZE:
        return raw, None
    if len(raw) == REF_SIZE:
        try:
            ref = ChunkRef.from_bytes(raw)
        except cerr.FormatError as e:
            raise click.BadParameter(f"{text!r}: {e}") from None
        return ref.key, ref
    raise click.BadParameter(f"{text!r}: a chunk key has {2 * KEY_SIZE} hex digits")


def _ring_facts(home: Path, keys: list[bytes], refs: dict[bytes, ChunkRef],
                vols: list[VolumeConfig]) -> dict[bytes, dict]:
    """What the RING says of ``keys`` (:func:`sofs.ringview.ring_view`), by key."""
    uuids = [v.uuid for v in vols]
    found = ring_job(
        home, "chunks",
        lambda ring, progress: [c.as_dict() for c in ring_view(ring, keys, refs, uuids)],
        args={"keys": [k.hex() for k in keys], "volumes": uuids,
              "refs": {k.hex(): r.to_bytes().hex() for k, r in refs.items()}})
    return {bytes.fromhex(c["key"]): c for c in found}


# ------------------------------------------------------------------------------ chunk which

@click.group()
def chunk() -> None:
    """Look up chunks of the RING."""


@chunk.command("which")
@click.argument("keys", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema in sofsctl(8)).")
@pass_home
def chunk_which(home: Path, keys: tuple[str, ...], as_json: bool) -> None:
    """Show which volumes and files use the chunks KEYS (hex, as repair and status print
    them), and where their pieces are.

    Exit status: 0 every chunk is readable or used by nothing; 3 a chunk some file or
    checkpoint uses cannot be read.
    """
    parsed = [_parse_key(k) for k in keys]
    wanted = list(dict.fromkeys(key for key, _ in parsed))
    vols = volumes(home)
    users: dict[bytes, list[dict]] = {k: [] for k in wanted}
    refs: dict[bytes, ChunkRef] = {key: ref for key, ref in parsed if ref is not None}
    for v in vols:
        if not has_metadata(home, v.name):
            continue  # created, never mounted: no files
        try:
            with reading_volume(home, v.name) as meta:
                uses = chunk_uses(meta, wanted)
                paths = paths_of(meta, {ino for u in uses.values() for ino, _ in u.blocks})
        except ferr.FsError as e:
            click.echo(f"warning: volume {v.name} not searched: {e}", err=True)
            continue
        for key, use in uses.items():
            if use.ref is not None:
                refs.setdefault(key, use.ref)
            users[key].append({
                "volume": v.name, "refcount": use.refcount,
                "blocks": [{"inode": ino, "block": index, "paths": paths.get(ino, [])}
                           for ino, index in use.blocks]})
    ring = _ring_facts(home, wanted, refs, vols)
    names = {v.uuid: v.name for v in vols}
    report: list[dict[str, Any]] = []
    for key in wanted:
        facts = ring.get(key, {})
        report.append({"key": key.hex(), "volumes": users[key],
                       "checkpoint_of": [names.get(u, u) for u in facts.get("checkpoint_of", [])],
                       "repair_log": facts.get("logged"), "places": facts.get("places"),
                       "error": facts.get("error")})
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for item in report:
            _print_chunk(item)
    lost = [r for r in report if (r["volumes"] or r["checkpoint_of"]) and
            (r["places"] is None or r["places"]["state"] == "unrecoverable")]
    if lost:
        raise SystemExit(3)


def _print_chunk(item: dict) -> None:
    places = item["places"]
    used = bool(item["volumes"] or item["checkpoint_of"])
    if places is None:
        state = "UNKNOWN: no volume, repair-log entry or disk has it"
    else:
        state = (f"{places['state'].upper()} ({places['policy']}: {places['pieces_found']} of "
                 f"{len(places['pieces'])} pieces on the disks, {places['pieces_needed']} needed)")
    click.echo(f"chunk {item['key']}: {state}")
    for vol in item["volumes"]:
        click.echo(f"  volume {vol['volume']}: refcount {vol['refcount']}, "
                   f"{len(vol['blocks'])} block(s)")
        for b in vol["blocks"][:50]:
            where = ", ".join(b["paths"]) or "(no name: unlinked while open, or detached)"
            click.echo(f"    {where}  (inode {b['inode']}, block {b['block']})")
        if len(vol["blocks"]) > 50:
            click.echo(f"    ... and {len(vol['blocks']) - 50} more")
    for name in item["checkpoint_of"]:
        click.echo(f"  volume {name}: a piece of its metadata checkpoints")
    if places is not None:
        for p in places["pieces"]:
            where = " ".join(p["found_on"]) or "MISSING"
            moved = "" if not p["found_on"] or p["owner"] in p["found_on"] else \
                f" (placed on {p['owner']})"
            click.echo(f"  piece {p['index']}: {where}{moved}")
        if places["disks_not_asked"]:
            click.echo(f"  disks not asked (down or unreachable): "
                       f"{' '.join(places['disks_not_asked'])}")
    if item["repair_log"]:
        click.echo(f"  repair log: {item['repair_log']}")
    if item["error"]:
        click.echo(f"  error: {item['error']}")
    if not used:
        click.echo("  used by no volume or checkpoint of this data directory: losing it "
                   "loses no data")


# ------------------------------------------------------------------------------ file info

@click.group("file")
def file_group() -> None:
    """Look inside files of a volume."""


def locate_path(home: Path, path: str) -> tuple[str, str, int | None]:
    """(volume, path within it, inode from the mount or None) for PATH on a mount, or
    VOLUME:/PATH."""
    if ":" in path and not os.path.exists(path):
        volume, _, inner = path.partition(":")
        return volume, "/" + inner.lstrip("/"), None
    real = os.path.realpath(path)
    for st in runstate.all_states(home):
        mp = os.path.realpath(st.mountpoint)
        if st.alive and (real == mp or real.startswith(mp.rstrip("/") + "/")):
            try:
                ino = os.lstat(path).st_ino
            except OSError as e:
                raise fail(f"{path}: {e.strerror}") from None
            return st.volume, "/" + os.path.relpath(real, mp).removeprefix("."), ino
    raise fail(f"{path} is not on a sofs mount of {home}; name a file of an unmounted volume "
               f"as VOLUME:/path/in/volume")


def _kind(mode: int) -> str:
    return {stat.S_IFREG: "regular file", stat.S_IFDIR: "directory",
            stat.S_IFLNK: "symlink"}.get(stat.S_IFMT(mode), "special file")


@file_group.command("info")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema in sofsctl(8)).")
@pass_home
def file_info(home: Path, path: str, as_json: bool) -> None:
    """Show a file's inode, size, blocks and chunks, and the disks holding each piece.

    PATH is a file on a mounted volume, or VOLUME:/path for any volume. A mounted volume is
    read as its mount process last stored it: data still being written may not show yet.
    Exit status: 0; 1 no such file; 3 a block's chunk cannot be read.
    """
    volume, inner, ino = locate_path(home, path)
    vols = {v.name: v for v in volumes(home)}
    if volume not in vols:
        raise fail(f"no volume {volume!r}; volumes: {', '.join(sorted(vols)) or 'none'}")
    try:
        with reading_volume(home, volume) as meta:
            if ino is None:
                ino = resolve(meta, inner)
            node = inode_of(meta, ino)
            blocks = file_blocks(meta, ino)
            names = paths_of(meta, {ino})[ino]
    except ferr.NoSuchEntry as e:
        raise fail(f"{path}: not stored in volume {volume} ({e}); a file just written is "
                   "stored when it is closed or synced") from None
    except ferr.FsError as e:
        raise fail(e) from None
    refs = {b.ref.key: b.ref for b in blocks}
    try:
        ring = _ring_facts(home, list(refs), refs, []) if refs else {}
    except click.ClickException as e:
        click.echo(f"warning: piece places unknown: {e.message}", err=True)
        ring = {}
    info: dict[str, Any] = {
        "volume": volume, "path": inner, "inode": ino, "type": _kind(node.mode),
        "mode": f"{stat.S_IMODE(node.mode):04o}", "uid": node.uid, "gid": node.gid,
        "nlink": node.nlink, "size": node.size, "mtime": node.mtime_ns / 1e9, "paths": names,
        "blocks": [{"index": b.index, "bytes": b.length, "key": b.ref.hex,
                    "chunk_size": b.ref.size, "policy": b.ref.policy.policy().spec(),
                    "places": ring.get(b.ref.key, {}).get("places")} for b in blocks]}
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        _print_file(info)
    if any(b["places"] is not None and b["places"]["state"] == "unrecoverable"
           for b in info["blocks"]):
        raise SystemExit(3)


def _print_file(info: dict) -> None:
    click.echo(f"{info['path']}  (volume {info['volume']}, inode {info['inode']})")
    stored = sum(b["chunk_size"] for b in info["blocks"])
    click.echo(f"  {info['type']}, {human(info['size'])} ({info['size']} bytes), mode "
               f"{info['mode']}, uid {info['uid']} gid {info['gid']}, {info['nlink']} link(s), "
               f"modified {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['mtime']))}")
    click.echo(f"  names: {', '.join(info['paths']) or '(none: unlinked while open)'}")
    click.echo(f"  {len(info['blocks'])} stored block(s), {human(stored)} in chunks "
               "(after compression; holes and all-zero blocks take none)")
    if not info["blocks"]:
        return
    rows = [("block", "bytes", "chunk", "policy", "state", "pieces (index: disk)")]
    for b in info["blocks"]:
        p = b["places"]
        if p is None:
            state, pieces = "?", ""
        else:
            state = p["state"]
            pieces = " ".join(f"{x['index']}:{','.join(x['found_on']) or 'MISSING'}"
                              for x in p["pieces"])
        rows.append((b["index"], human(b["bytes"]), b["key"][:16], b["policy"], state, pieces))
    table(rows)

