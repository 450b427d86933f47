"""``sofsctl volume checkpoint`` and ``sofsctl volume restore``: a volume's metadata kept in the
RING (sofs.metacheckpoint), written now, listed, and restored onto a host that lost it."""

from __future__ import annotations

import datetime
import json
import shutil
import time
from pathlib import Path

import click

from chunkstore import errors as cerr
from fuse_mount import control, runstate
from sofs import errors as ferr
from sofs import metacheckpoint as mc
from sofs.metadata import MetaStore
from sofs.volume import list_volume_names, load_volume, save_volume, volume_dir

from .common import Failure, fail, human, pass_home, table
from .jobs import open_ring_or_host, require_volume, ring_job
from .progress import BYTES, ProgressLine


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _open_ring(home: Path):
    try:
        return open_ring_or_host(home)
    except cerr.ClusterInUse:
        raise Failure("the embedded ring is held by a volume mounted with --exclusive-ring; "
                      "unmount it first (sofsctl umount MOUNTPOINT)") from None
    except cerr.ChunkStoreError as e:
        raise fail(e) from None


def _mounted(home: Path, name: str):
    return next((st for st in runstate.all_states(home) if st.alive and st.volume == name), None)


def _call_mount(home: Path, op: str, name: str, progress=None):
    try:
        return control.call(home, op, progress or (lambda *a: None), volume=name)
    except control.MountError as e:
        raise fail(e) from None


def _print_list(rows: list[dict]) -> None:
    if not rows:
        click.echo("no checkpoints in the RING yet")
        return
    out = [("SEQ", "TAKEN", "FILES", "SIZE", "HOST", "MANIFEST")]
    for c in rows:
        out.append((c["seq"], _when(c["created"]), c["files"], human(c["bytes"]), c["host"],
                    c["manifest"][2:18]))
    table(out)


@click.command("checkpoint")
@click.argument("name")
@click.option("--list", "list_only", is_flag=True,
              help="List the checkpoints kept in the RING instead of writing one.")
@click.option("--take-over", is_flag=True,
              help="Write it even though another host wrote newer checkpoints of this volume "
                   "(this copy of the metadata becomes the one a restore brings back).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the checkpoint written (or the --list) as JSON (schema in sofsctl(8)).")
@pass_home
def volume_checkpoint(home: Path, name: str, list_only: bool, take_over: bool,
                      as_json: bool) -> None:
    """Checkpoint volume NAME's metadata into the RING now (or --list the kept ones).

    A mounted volume checkpoints itself every 10 minutes and when unmounted (sofsctl mount
    --checkpoint-interval); its mount process runs this one. The RING keeps the last 3; on a
    host that lost the metadata, `sofsctl volume restore NAME` brings the volume back.
    """
    require_volume(home, name)
    try:
        config = load_volume(home, name)
    except ferr.VolumeError as e:
        raise fail(e) from None
    mounted = _mounted(home, name)
    if list_only:
        # here, or in the mount process that holds the ring (whichever volume it mounts)
        rows = ring_job(home, "volume-checkpoints",
                        lambda ring, p: [c.as_dict() for c in mc.list_checkpoints(ring, config.uuid)],
                        args={"uuid": config.uuid})
        if as_json:
            click.echo(json.dumps(rows, indent=1))
        else:
            _print_list(rows)
        return
    with ProgressLine("checkpoint", BYTES) as line:  # progress(bytes done, bytes total)
        if mounted is not None:
            info = _call_mount(home, "checkpoint-take-over" if take_over else "checkpoint",
                               name, lambda done, total, *rest, phase="": line.update(done, total))
        else:
            ring = _open_ring(home)
            try:
                meta = MetaStore(volume_dir(home, name) / "meta")
            except Exception as e:  # rocksdb: locked by another process, unreadable
                ring.close()
                raise Failure(f"cannot open the metadata of volume {name}: {e}") from None
            try:
                info = mc.Checkpointer(meta, ring, config, volume_dir(home, name)).write(
                    line.update, take_over=take_over).as_dict()
            except (cerr.ChunkStoreError, ferr.FsError) as e:
                raise fail(e) from None
            finally:
                meta.close()
                ring.close()
    if as_json:
        click.echo(json.dumps(info, indent=1))
        return
    click.echo(f"volume {name}: checkpoint {info['seq']} in the RING: {info['files']} files, "
               f"{human(info['bytes'])} of metadata, {human(info['sent_bytes'])} sent "
               f"({info['reused_pieces']} pieces already stored), {info['took']:.1f} s")


@click.command("restore")
@click.argument("name", required=False)
@click.option("--checkpoint", "which", type=click.IntRange(1, mc.KEEP), default=1,
              show_default=True, metavar="N",
              help="Which kept checkpoint: 1 the newest, 2 the one before, ...")
@click.option("--uuid", "volume_uuid", default=None, metavar="UUID",
              help="The volume's UUID, when volumes of other hosts have the same name "
                   "(see --list).")
@click.option("--list", "list_only", is_flag=True,
              help="List the volumes that have checkpoints in the RING, and stop.")
@click.option("--json", "as_json", is_flag=True, help="With --list: print JSON (schema in sofsctl(8)).")
@pass_home
def volume_restore(home: Path, name: str | None, which: int, volume_uuid: str | None,
                   list_only: bool, as_json: bool) -> None:
    """Restore volume NAME's metadata from its checkpoint in the RING.

    For a host that lost the volume's metadata (a failed disk, a rebuilt server): the data
    directory must reach the RING (the embedded ring's disks, or the networked cluster) and
    must not hold the volume any more. The volume comes back as of the checkpoint: files
    written after it are missing. Run `sofsctl fsck NAME` afterwards.

    \b
    A client of a networked cluster that lost its whole data directory: copy cluster.secret
    and clustermap.json from the admin directory (an old map is refreshed from the nodes),
    then:  sofsctl volume restore --list;  sofsctl volume restore NAME
    """
    if name is None and not list_only:
        raise click.UsageError("give the volume's NAME (or --list)")
    ring = _open_ring(home)
    try:
        found = mc.find_volumes(ring)
        if list_only:
            rows: list[tuple[object, ...]] = [("VOLUME", "UUID", "CHECKPOINTS", "NEWEST", "BY HOST", "HERE")]
            local = {}
            for vname in list_volume_names(home):
                try:
                    local[vname] = load_volume(home, vname).uuid
                except ferr.VolumeError:
                    continue
            if as_json:
                click.echo(json.dumps([{"name": v.name, "uuid": v.uuid, "seq": v.seq,
                                        "created": v.created, "host": v.host,
                                        "here": local.get(v.name) == v.uuid} for v in found],
                                      indent=1))
                return
            for v in found:
                rows.append((v.name, v.uuid, v.seq, _when(v.created), v.host or "?",
                             "yes" if local.get(v.name) == v.uuid else "-"))
            if len(rows) == 1:
                click.echo("no volume has a checkpoint in the RING")
            else:
                table(rows)
            return
        matches = [v for v in found if v.name == name
                   and (volume_uuid is None or v.uuid == volume_uuid)]
        if not matches:
            known = ", ".join(sorted({v.name for v in found})) or "none"
            raise Failure(f"the RING holds no checkpoint of a volume named {name!r}"
                          + (f" with UUID {volume_uuid}" if volume_uuid else "")
                          + f" (volumes with checkpoints: {known})")
        if len(matches) > 1:
            lines = "\n".join(f"  --uuid {v.uuid}  (newest checkpoint {_when(v.created)} on "
                              f"{v.host or 'an unknown host'})" for v in matches)
            raise Failure(f"{len(matches)} volumes named {name!r} have checkpoints in the RING "
                          f"(volumes of other hosts may share a name); choose one:\n{lines}")
        chosen = matches[0]
        vdir = volume_dir(home, chosen.name)
        if (vdir / "volume.json").exists() or (vdir / "meta").exists():
            raise Failure(f"volume {name} exists in {home}: restoring would replace its "
                          f"metadata. Move {vdir} away first if it is really lost or damaged")
        vdir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        try:
            with ProgressLine("restore", BYTES) as line:  # progress(bytes read, bytes total)
                config, info = mc.restore(ring, chosen.uuid, vdir / "meta", which=which - 1,
                                          progress=line.update)
        except (cerr.ChunkStoreError, ferr.FsError) as e:
            shutil.rmtree(vdir, ignore_errors=True)
            raise fail(e) from None
        try:
            MetaStore(vdir / "meta").close()  # rocksdb opens what was restored
        except Exception as e:
            shutil.rmtree(vdir, ignore_errors=True)
            raise Failure(f"the restored metadata does not open: {e}") from None
        save_volume(home, config)
    finally:
        ring.close()
    click.echo(f"volume {name} restored from checkpoint {info.seq} taken {_when(info.created)} "
               f"on {info.host or 'an unknown host'}: {info.files} files, {human(info.bytes)} "
               f"in {time.monotonic() - t0:.1f} s")
    click.echo(f"check it before use: sofsctl fsck {name}")
