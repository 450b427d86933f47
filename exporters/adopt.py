"""Starting on this host the exports a volume had where it was mounted before: after
``sofsctl volume takeover`` (which calls :func:`adopt`), or ``sofsctl export adopt`` once a
standby mount took a volume over.

The exports come from etcd (:mod:`exporters.exportbook`). An NFS export starts as recorded. An
SMB export's users are created here (same names and uids) and their password entries, recorded
with the export, are loaded into the export's password database first, so the same users get
in with the same passwords; an export recorded without them (etcd did not answer when it was
made) is not started, and the result says how to give them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sofs import errors as ferr
from sofs.volume import load_volume

from . import exportbook, registry
from .errors import ExportError
from .exportconfig import write_config
from .exportmount import find_mount
from .exportspec import ExportSpec
from .samba import SmbUser, ensure_posix_user, import_passwords


@dataclass(frozen=True)
class Adopted:
    """What became of one recorded export: started (``status``) or not (``problem``)."""

    kind: str
    volume: str
    status: registry.ExportStatus | None = None
    problem: str = ""


def adopt(data_dir: Path, volume: str, timeout: float = 90.0) -> list[Adopted]:
    """Start every export etcd records for VOLUME that does not run here yet. ExportError
    when the records cannot be read."""
    data_dir = Path(data_dir).absolute()
    try:
        volume_uuid = load_volume(data_dir, volume).uuid
    except ferr.FsError as e:
        raise ExportError(f"volume {volume} is not here: {e}") from None
    out = []
    for rec in exportbook.recorded(data_dir, volume_uuid):
        spec = rec.spec
        if spec.volume != volume:  # renamed since: serve it under the name it has here
            spec = ExportSpec(kind=spec.kind, volume=volume, options=spec.options,
                                       created=spec.created)
        edir = registry.export_dir(data_dir, volume, spec.kind)
        if registry.supervisor_pid(edir) is not None:
            out.append(Adopted(spec.kind, volume, problem="already running here"))
            continue
        try:
            if spec.kind == "smb" and rec.smb_passwords:
                _load_smb_users(data_dir, edir, spec, rec.smb_passwords)
            out.append(Adopted(spec.kind, volume,
                               status=registry.create_export(data_dir, spec, timeout=timeout)))
        except ExportError as e:
            hint = ""
            if spec.kind == "smb" and "no password" in str(e):
                users = " ".join(f"--user {u.name}:{u.uid}" for u in spec.smb.users)
                hint = (f"; give the passwords here: sofsctl export smb {volume} {users} "
                        "--password-file FILE")
            out.append(Adopted(spec.kind, volume, problem=f"{e}{hint}"))
    return out


def _load_smb_users(data_dir: Path, edir: Path, spec: ExportSpec, passwords: str) -> None:
    """The SMB export's POSIX users (created if missing) and their recorded password entries
    in the export's password database (its config rendered for the mount here first)."""
    for u in spec.smb.users:
        ensure_posix_user(SmbUser(u.name, "", u.uid, u.gid))
    conf = write_config(data_dir, edir, spec, find_mount(data_dir, spec.volume).mountpoint)
    import_passwords(conf, passwords)
