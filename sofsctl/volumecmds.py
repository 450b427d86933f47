"""``sofsctl volume delete NAME`` and ``sofsctl volume set NAME KEY=VALUE``: a volume's end and
what may change after its creation. Thin: the deletion's steps are
:mod:`sofs.volumedelete`'s; the checks (not mounted, not exported) are made here first."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from chunkstore import errors as cerr
from chunkstore.ring import mapadmin
from chunkstore.ring.open import is_networked
from exporters.registry import list_exports
from fuse_mount import runstate
from sofs import errors as ferr
from sofs import volumedelete
from sofs.volume import VolumeConfig, save_volume
from sofs.worm.policy import format_duration

from .common import Failure, fail, human, pass_home
from .jobs import require_volume, ring_job
from .trashcmds import trash_seconds
from .wormcmds import retained_line


@click.command("delete")
@click.argument("name", required=False)
@click.option("--yes", is_flag=True, help="Do not ask (scripts); otherwise type the name.")
@click.option("--finish", "finish_only", is_flag=True,
              help="Finish deletions a crash or an error interrupted, and stop.")
@pass_home
def volume_delete(home: Path, name: str | None, yes: bool, finish_only: bool) -> None:
    """Delete volume NAME: its files, its metadata, its chunks in the RING and its metadata
    checkpoints. Refused while it is mounted or has exports (sofsctl export remove)."""
    if finish_only:
        tombs = volumedelete.unfinished(home)
        if not tombs:
            click.echo("no unfinished volume deletion")
        for tomb in tombs:
            _finish(home, tomb)
        return
    if name is None:
        raise click.UsageError("give the volume's NAME (or --finish)")
    config = require_volume(home, name)
    mount = next((s for s in runstate.all_states(home) if s.alive and s.volume == name), None)
    if mount is not None:
        raise Failure(f"volume {name} is mounted at {mount.mountpoint}: unmount it first "
                      f"(sofsctl umount {name})")
    exports = [e for e in list_exports(home) if e.volume == name]
    if exports:
        kinds = ", ".join(sorted({e.kind for e in exports}))
        raise Failure(f"volume {name} has exports ({kinds}): stop and remove them first "
                      f"(sofsctl export stop {name}; sofsctl export remove {name})")
    if (why := retained_line(home, name)) is not None:
        raise Failure(why)
    if not yes:
        if not sys.stdin.isatty():
            raise Failure("not confirmed: nothing deleted (give --yes where nobody can type "
                          "the name)")
        click.echo(f"This deletes volume {name} ({config.uuid}) and every file in it, for good.")
        typed = click.prompt("Type the volume's name to confirm", default="", show_default=False)
        if typed != name:
            raise Failure("not confirmed: nothing deleted")
    try:
        tomb = volumedelete.begin(home, name)
    except (ferr.FsError, OSError) as e:
        raise fail(e) from None
    _finish(home, tomb)


def _finish(home: Path, tomb: Path) -> None:
    uuid = tomb.name.removeprefix(volumedelete.DELETING_PREFIX)
    try:
        report = ring_job(home, "volume-delete",
                          lambda ring, p: volumedelete.finish(tomb, ring, progress_sized=p),
                          label="delete", record=True, args={"uuid": uuid})
    except click.ClickException as e:
        raise Failure(f"{e.message}; the deletion is unfinished: sofsctl volume delete --finish "
                      "once the ring can be reached") from None
    click.echo(f"volume {report['name']} deleted: {report['chunks_deleted']} chunks removed "
               "from the RING")
    if not report["chunks_failed"] and is_networked(home):
        try:  # its width no longer bounds map changes
            mapadmin.forget_volume(home, uuid)
        except cerr.ChunkStoreError as e:
            click.echo(f"warning: its width stays recorded in etcd ({e}): map changes are held "
                       "to it until it is removed", err=True)
    if report["chunks_failed"]:
        raise Failure(f"{report['chunks_failed']} chunks could not be deleted now: run "
                      "sofsctl volume delete --finish later (the volume is gone already)")


SETTABLE = {"compression": "zstd:LEVEL (1..22) or none: for blocks written from the next mount "
                           "on (stored blocks keep theirs)",
            "trash": "DURATION (7d, 12h) or 0: how long deleted files stay in the trash, from "
                     "the next mount on"}


@click.command("set")
@click.argument("name")
@click.argument("settings", nargs=-1, required=True, metavar="KEY=VALUE...")
@pass_home
def volume_set(home: Path, name: str, settings: tuple[str, ...]) -> None:
    """Change what can change after creation: compression=zstd:LEVEL|none, trash=DURATION|0
    (how long deleted files stay in the trash). The block size
    and the protection policies shape the stored data and are fixed. A mounted volume takes
    the change at its next mount."""
    config = require_volume(home, name)
    changes: dict[str, object] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or key not in SETTABLE:
            raise Failure(f"{item!r}: settable: " + "; ".join(f"{k}={v}" for k, v in SETTABLE.items()))
        if key == "trash":
            try:
                changes["trash_s"] = trash_seconds(value)
            except ferr.FsError as e:
                raise Failure(f"trash={value}: {e}") from None
        elif value == "none":
            changes["zstd_level"] = 0
        else:
            level = value.removeprefix("zstd:")
            if not level.isdigit() or not 1 <= int(level) <= 22:
                raise Failure(f"compression={value}: give zstd:1 .. zstd:22, or none")
            changes["zstd_level"] = int(level)
    new: VolumeConfig = dataclasses.replace(config, **changes)  # type: ignore[arg-type]
    try:
        new.validate()
        save_volume(home, new)
    except (ferr.FsError, cerr.ChunkStoreError, OSError) as e:
        raise fail(e) from None
    mounted = any(s.alive and s.volume == name for s in runstate.all_states(home))
    trash_time = format_duration(new.trash_s * 10**9) if new.trash_s else "off"
    click.echo(f"volume {name}: compression {new.compression} (blocks of {human(new.block_size)}"
               f"), trash {trash_time}" + ("; the mount takes it at its next mount"
                                           if mounted else ""))
