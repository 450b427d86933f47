"""From an export's spec to its server's config and Service: ganesha.conf or smb.conf.

Renders into the export's run directory (``DATA_DIR/exports/VOLUME-KIND/run/``), adds the rules
and the hidden share the supervisor's health probe needs (exporters.probe), and builds the
:class:`~exporters.service.Service` that runs ganesha.nfsd or smbd on it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

from sofs.volume import load_volume

from .errors import ExportError
from .exportspec import ExportSpec
from .ganesha import ClientRule, NfsExport, ganesha_service, render_ganesha_config, write_ganesha_config
from .probe import PROBE_USER, SMB_PROBE_DIR, probe_host, smb_probe_share
from .samba import SmbShare, render_samba_config, samba_service, write_samba_config
from .service import Service


def run_dir(edir: Path) -> Path:
    return Path(edir) / "run"


def nfs_export_of(spec: ExportSpec, volume_uuid: str, mountpoint: str) -> NfsExport:
    o = spec.nfs
    grace = o.grace
    clients = [ClientRule(c.cidr, c.access) for c in o.clients]
    probe = _probe_client_rule(o.bind, clients, o.read_only)
    if probe is not None:
        clients.append(probe)
    return NfsExport(
        volume=spec.volume,
        volume_uuid=volume_uuid,
        mountpoint=Path(mountpoint),
        clients=clients,
        read_only=o.read_only,
        squash=o.squash,
        nfs_port=o.port,
        bind=o.bind,
        v3=o.v3,
        v42=o.v42,
        mount_port=o.mount_port,
        graceless=grace == 0,
        grace_s=grace if grace > 0 else 90,
        lease_s=min(60, grace) if grace > 0 else 60,
        attr_cache_s=o.attr_cache,
    )


def _probe_client_rule(bind: str, clients: list[ClientRule],
                       read_only: bool) -> ClientRule | None:
    """The rule letting the supervisor's health probe in (exporters.probe), or None when the
    administrator's rules already decide about the probe's address (first match wins).

    The probe connects from the host itself to the bind address (loopback for a wildcard). The
    rule is added last and squashes everyone to 65534 (all_squash), so that a local user
    claiming uid 0 over NFS gets no more than nobody's rights, whatever the export's squash."""
    try:
        addr = ipaddress.ip_address(probe_host(bind))
    except ValueError:
        return None
    for rule in clients:
        try:
            if addr in ipaddress.ip_network(rule.cidr, strict=False):
                return None
        except ValueError:
            continue  # refused by the renderer with its reason
    bits = 32 if addr.version == 4 else 128
    return ClientRule(f"{addr}/{bits}", "RO" if read_only else "RW", squash="all_squash")


def smb_share_of(spec: ExportSpec, mountpoint: str) -> SmbShare:
    o = spec.smb
    users = [u.name for u in o.users]
    if users and PROBE_USER not in users:
        users.append(PROBE_USER)  # the supervisor's health probe account (exporters.probe)
    return SmbShare(
        volume=spec.volume,
        path=Path(mountpoint),
        valid_users=users,
        read_only=o.read_only,
        port=o.port,
        bind=o.bind,
        min_protocol=o.min_protocol,
        signing=o.signing,
        encrypt=o.encrypt,
    )


def smb_shares_of(spec: ExportSpec, mountpoint: str) -> list[SmbShare]:
    """The shares one SMB export's smbd serves: the volume's, and the health probe's own
    hidden share ``VOLUME-probe$`` on ``MOUNTPOINT/.sofs-probe-smb`` (sofs-probe its only
    user; read-only like the export; see exporters.probe)."""
    main = smb_share_of(spec, mountpoint)
    probe_share = replace(
        main, name=smb_probe_share(spec.volume), path=Path(mountpoint) / SMB_PROBE_DIR,
        valid_users=[PROBE_USER], browseable=False)
    return [main, probe_share]


def write_config(data_dir: Path, edir: Path, spec: ExportSpec, mountpoint: str) -> Path:
    """Render the service's config for the mount at MOUNTPOINT into the run directory.

    NFS exports pin Ganesha's Filesystem_id (and Export_Id) to the volume's UUID, so clients'
    file handles survive remounts and restarts."""
    rdir = run_dir(edir)
    if spec.kind == "nfs":
        try:
            volume_uuid = load_volume(data_dir, spec.volume).uuid
        except Exception as exc:  # sofs.errors.VolumeError and friends
            raise ExportError(str(exc)) from None
        return write_ganesha_config(nfs_export_of(spec, volume_uuid, mountpoint), rdir)
    return write_samba_config(smb_shares_of(spec, mountpoint), rdir)


def validate_spec(data_dir: Path, spec: ExportSpec) -> None:
    """Check every option of SPEC (as a config for a stand-in mount point) without writing
    anything: bad input is reported before the mount is looked for."""
    placeholder = "/sofs-validate/" + spec.volume
    if spec.kind == "nfs":
        try:
            volume_uuid = load_volume(data_dir, spec.volume).uuid
        except Exception as exc:
            raise ExportError(str(exc)) from None
        render_ganesha_config(nfs_export_of(spec, volume_uuid, placeholder), Path("/run/x"))
    else:
        render_samba_config(smb_shares_of(spec, placeholder), Path("/run/x"))


def service_of(spec: ExportSpec, edir: Path) -> Service | None:
    """The Service for the config already written in EDIR's run directory (None if none)."""
    rdir = run_dir(edir)
    conf = rdir / ("ganesha.conf" if spec.kind == "nfs" else "smb.conf")
    if not conf.exists():
        return None
    if spec.kind == "nfs":
        return ganesha_service(conf, rdir)
    return samba_service(conf, rdir)
