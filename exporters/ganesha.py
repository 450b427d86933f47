"""NFS-Ganesha 4.3 configuration for sofs volumes, and the Ganesha service.

:func:`render_ganesha_config` turns one :class:`NfsExport` (or several sharing one server) into
a complete ``ganesha.conf``; :func:`write_ganesha_config` also creates the run directory layout;
:func:`ganesha_service` gives the supervised ``ganesha.nfsd`` for a written config.

Run directory layout (``RUN_DIR``)::

    ganesha.conf      the rendered config
    ganesha.pid       the supervisor's pidfile (pid, start time, session)
    ganesha.nfsd.pid  Ganesha's own pidfile (-p)
    ganesha.log       Ganesha's log (-L) and its stdout/stderr
    recovery/         NFSv4 client recovery data (RecoveryBackend fs, RecoveryRoot)

File handles and the pinned filesystem id
-----------------------------------------
An NFS client keeps file handles across server restarts, and Ganesha puts the export id into
every handle it hands out; NFS clients also key their view of a filesystem by the ``fsid``
attribute. Ganesha would derive the fsid of a FUSE mount from its device number, which changes
at every mount, so every export pins both, derived only from the volume's UUID:

* ``Filesystem_id = MAJOR.MINOR`` where, with ``d = sha256(b"sofs-nfs-fsid\\0" + uuid.bytes)``,
  ``MAJOR = int.from_bytes(d[0:4], "big") % 0xFFFFFFFE + 1`` and
  ``MINOR = int.from_bytes(d[4:8], "big") % 0xFFFFFFFE + 1`` (both 32-bit and non-zero, so the
  NFSv3 single 64-bit fsid, MAJOR << 32 | MINOR, keeps all of it);
* ``Export_Id`` (when not given) ``= int.from_bytes(d[8:10], "big") % 65535 + 1`` (1..65535;
  0 is Ganesha's pseudo root). Two volumes served by one Ganesha must not collide: that is
  checked, and ``export_id`` can be set explicitly.

The same UUID always gives the same ids, on any host, whatever else is in the config.

NFSv4.2
-------
Served only with ``v42=True``. It brings ALLOCATE and DEALLOCATE (fallocate on the mount, which
sofs supports), SEEK and READ_PLUS; a Linux client offered 4.2 uses it by default, and 4.2 is
the newest and least exercised part of Ganesha 4.3's protocol code, so an archive opts in per
export after testing its clients, instead of every PACS moving to it on the next remount.

NFSv3
-----
NFSv4 (4.0 and 4.1) needs nothing but the NFS port. With ``v3=True`` the server also serves
NFSv3 and its MOUNT protocol (on ``mount_port``, default NFS port + 1); NFSv3 clients find
MOUNT through rpcbind (portmapper, port 111), which must run and be reachable at the socket
``/run/rpcbind.sock`` when Ganesha starts, or be told the port (``mountport=`` for nfs-rs and
libnfs, ``mountport=`` mount option for the kernel). Without rpcbind Ganesha 4.3 exits at
start ("Cannot register NFS V3 on TCP", status 2), which :class:`Service.start` reports with
the log. rpcbind always binds 0.0.0.0:111 here:
run it in its own network namespace where that matters (see exports-notes.md). NLM is off:
NFSv3 clients must mount with ``nolock`` (locks are held by the local kernel on the FUSE
mount, which has no lock handlers, so they would not be shared anyway).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ExportError
from .service import Service, tcp_port_answers
from .validate import check_cidr, check_ip, check_path, check_port, check_uuid, check_volume_name

ACCESS_TYPES = ("RW", "RO", "None")

# Our squash names -> Ganesha's.
SQUASH = {
    "root_squash": "Root_Squash",
    "no_root_squash": "No_Root_Squash",
    "all_squash": "All_Squash",
    "root_id_squash": "Root_Id_Squash",
}

MAX_GRACE_S = 180  # Ganesha's range for Grace_Period
MAX_LEASE_S = 120  # and for Lease_Lifetime


@dataclass(frozen=True)
class ClientRule:
    """Who may use an export: a network (CIDR or single address) and its access.

    ``access`` is "RW", "RO" or "None" (explicitly refused); ``squash`` overrides the export's
    squash for these clients. Rules are matched in order, first match wins; a client matching no
    rule is refused.
    """

    cidr: str
    access: str = "RW"
    squash: str | None = None


@dataclass
class NfsExport:
    """One volume exported over NFS. See the module docstring for the derived ids."""

    volume: str
    volume_uuid: str
    mountpoint: Path
    clients: list[ClientRule]
    read_only: bool = False
    squash: str = "root_squash"
    nfs_port: int = 2049
    bind: str = "0.0.0.0"
    v3: bool = False
    v42: bool = False
    graceless: bool = False
    grace_s: int = 90
    export_id: int | None = None
    lease_s: int = 60
    mount_port: int | None = None
    anonymous_uid: int = 65534
    anonymous_gid: int = 65534
    # Seconds Ganesha trusts cached attributes and directory entries. 0 keeps NFS clients
    # coherent with writers through SMB and the FUSE mount itself (close-to-open holds across
    # protocols), at the cost of more calls into the FUSE filesystem: FSAL VFS opens a file
    # or directory by handle for every attribute refresh, so an NFS create costs about 80 FUSE
    # requests with 0 and about 33 with caching (measured: 6.8 ms against 4.6 ms per small
    # file). Worth it for a volume that only NFS writes (a PACS's own store).
    attr_cache_s: int = 0


def _digest(volume_uuid: str) -> bytes:
    return hashlib.sha256(b"sofs-nfs-fsid\0" + check_uuid(volume_uuid).bytes).digest()


def filesystem_id(volume_uuid: str) -> tuple[int, int]:
    """The pinned (major, minor) Filesystem_id of a volume (see the module docstring)."""
    d = _digest(volume_uuid)
    major = int.from_bytes(d[0:4], "big") % 0xFFFFFFFE + 1
    minor = int.from_bytes(d[4:8], "big") % 0xFFFFFFFE + 1
    return major, minor


def default_export_id(volume_uuid: str) -> int:
    """The Export_Id a volume gets when none is given (1..65535)."""
    return int.from_bytes(_digest(volume_uuid)[8:10], "big") % 65535 + 1


def _check_int(value, lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ExportError(f"invalid {what} {value!r}: must be an integer from {lo} to {hi}")
    return value


def _check_squash(value: str) -> str:
    if value not in SQUASH:
        raise ExportError(f"invalid squash {value!r}: use one of {', '.join(SQUASH)}")
    return SQUASH[value]


@dataclass(frozen=True)
class _Checked:
    export: NfsExport
    export_id: int
    fsid: tuple[int, int]
    mountpoint: Path
    clients: list[tuple[str, str, str | None]]
    squash: str
    bind: str
    mount_port: int | None


def validate_export(export: NfsExport) -> _Checked:
    """Check every field of EXPORT; raise ExportError for the first bad one."""
    check_volume_name(export.volume)
    check_uuid(export.volume_uuid)
    mountpoint = check_path(export.mountpoint, "mount point")
    if mountpoint == Path("/"):
        raise ExportError("refusing to export the root directory '/'")
    check_port(export.nfs_port, "NFS port")
    bind = check_ip(export.bind)
    squash = _check_squash(export.squash)
    _check_int(export.grace_s, 0, MAX_GRACE_S, "grace period (s)")
    _check_int(export.lease_s, 1, MAX_LEASE_S, "lease lifetime (s)")
    _check_int(export.anonymous_uid, 0, 2**32 - 1, "anonymous uid")
    _check_int(export.anonymous_gid, 0, 2**32 - 1, "anonymous gid")
    _check_int(export.attr_cache_s, 0, 3600, "attribute cache time (s)")
    export_id = export.export_id
    if export_id is None:
        export_id = default_export_id(export.volume_uuid)
    _check_int(export_id, 1, 65535, "export id")
    mount_port = None
    if export.v3:
        mount_port = export.mount_port if export.mount_port is not None else export.nfs_port + 1
        check_port(mount_port, "MOUNT port")
        if mount_port == export.nfs_port:
            raise ExportError("the MOUNT port must differ from the NFS port")
    elif export.mount_port is not None:
        raise ExportError("mount_port is only used with v3=True")
    if not export.clients:
        raise ExportError(
            f"export of {export.volume!r} has no client rules: nobody could use it "
            "(allow everyone explicitly with 0.0.0.0/0 if that is really meant)"
        )
    clients = []
    for rule in export.clients:
        if not isinstance(rule, ClientRule):
            raise ExportError(f"client rules must be ClientRule objects, got {rule!r}")
        cidr = check_cidr(rule.cidr)
        _check_ganesha_reads(cidr)
        if rule.access not in ACCESS_TYPES:
            raise ExportError(f"invalid access {rule.access!r} for {cidr}: use RW, RO or None")
        access = "RO" if export.read_only and rule.access == "RW" else rule.access
        rule_squash = _check_squash(rule.squash) if rule.squash is not None else None
        clients.append((cidr, access, rule_squash))
    return _Checked(
        export=export,
        export_id=export_id,
        fsid=filesystem_id(export.volume_uuid),
        mountpoint=mountpoint,
        clients=clients,
        squash=squash,
        bind=bind,
        mount_port=mount_port,
    )


def _q(value: str) -> str:
    # Values reaching here were validated: no quotes, backslashes, control characters.
    return f'"{value}"'


def _bool(value: bool) -> str:
    return "true" if value else "false"


def render_ganesha_config(export: NfsExport | Sequence[NfsExport], run_dir: Path) -> str:
    """A complete NFS-Ganesha 4.3 config serving EXPORT (or several exports on one server).

    Several exports must agree on the server-wide settings (bind, ports, v3, grace) and have
    distinct volume names, export ids and mount points' pseudo paths.
    """
    exports = [export] if isinstance(export, NfsExport) else list(export)
    if not exports:
        raise ExportError("nothing to export")
    run_dir = check_path(Path(run_dir).absolute(), "run directory")
    checked = [validate_export(e) for e in exports]
    first = checked[0]
    server_keys = ("nfs_port", "bind", "v3", "v42", "graceless", "grace_s", "lease_s",
                   "mount_port")
    for c in checked[1:]:
        for key in server_keys:
            if getattr(c.export, key) != getattr(first.export, key):
                raise ExportError(
                    f"exports {first.export.volume!r} and {c.export.volume!r} share one server "
                    f"but differ in {key}"
                )
    seen_ids: dict[int, str] = {}
    seen_names: set[str] = set()
    for c in checked:
        if c.export.volume in seen_names:
            raise ExportError(f"volume {c.export.volume!r} is exported twice")
        seen_names.add(c.export.volume)
        if c.export_id in seen_ids:
            raise ExportError(
                f"volumes {seen_ids[c.export_id]!r} and {c.export.volume!r} have the same "
                f"export id {c.export_id}: set export_id explicitly on one of them"
            )
        seen_ids[c.export_id] = c.export.volume
    e = first.export
    protocols = "3, 4" if e.v3 else "4"
    lines = [
        "# NFS-Ganesha configuration rendered by sofs (exporters.ganesha): do not edit,",
        "# it is rewritten at every start.",
        "",
        "NFS_CORE_PARAM {",
        f"    Bind_Addr = {first.bind};",
        f"    NFS_Port = {e.nfs_port};",
        f"    Protocols = {protocols};",
    ]
    if e.v3:
        lines += [
            "    # NFSv3: MOUNT on its own port, registered with rpcbind (/run/rpcbind.sock) when",
            "    # it runs; clients without rpcbind pass mountport explicitly. NLM is off: mount",
            "    # with nolock.",
            f"    MNT_Port = {first.mount_port};",
            "    mount_path_pseudo = true;",
        ]
    lines += [
        "    Enable_NLM = false;",
        "    Enable_RQUOTA = false;",
        "    Enable_UDP = false;",
        "}",
        "",
        "NFSV4 {",
        f"    Graceless = {_bool(e.graceless)};",
        f"    Grace_Period = {e.grace_s};",
        f"    Lease_Lifetime = {e.lease_s};",
        f"    Minor_Versions = {'0, 1, 2' if e.v42 else '0, 1'};",
        "    RecoveryBackend = fs;",
        f"    RecoveryRoot = {_q(str(run_dir / 'recovery'))};",
        "    Allow_Numeric_Owners = true;",
        "    Only_Numeric_Owners = true;",
        "}",
        "",
        "NFS_KRB5 {",
        "    Active_krb5 = false;",
        "}",
        "",
        "LOG {",
        "    Default_Log_Level = EVENT;",
        "}",
    ]
    for c in checked:
        x = c.export
        major, minor = c.fsid
        lines += [
            "",
            f"# volume {x.volume} (uuid {check_uuid(x.volume_uuid)})",
            "EXPORT {",
            f"    Export_Id = {c.export_id};",
            f"    Path = {_q(str(c.mountpoint))};",
            f"    Pseudo = {_q('/' + x.volume)};",
            f"    Tag = {_q(x.volume)};",
            f"    Filesystem_id = {major}.{minor};",
            "    Access_Type = None;",
            f"    Squash = {c.squash};",
            f"    Anonymous_Uid = {x.anonymous_uid};",
            f"    Anonymous_Gid = {x.anonymous_gid};",
            "    SecType = sys;",
            f"    Protocols = {protocols};",
            "    Transports = TCP;",
            f"    Attr_Expiration_Time = {x.attr_cache_s};",
        ]
        for cidr, access, rule_squash in c.clients:
            lines += [
                "    CLIENT {",
                f"        Clients = {_ganesha_client(cidr)};",
                f"        Access_Type = {access};",
            ]
            if rule_squash is not None:
                lines.append(f"        Squash = {rule_squash};")
            lines.append("    }")
        lines += [
            "    FSAL {",
            "        Name = VFS;",
            "    }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def write_ganesha_config(export: NfsExport | Sequence[NfsExport], run_dir: Path) -> Path:
    """Render the config into RUN_DIR/ganesha.conf (creating the run directory layout)."""
    run_dir = Path(run_dir).absolute()
    text = render_ganesha_config(export, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recovery").mkdir(mode=0o700, exist_ok=True)
    conf = run_dir / "ganesha.conf"
    tmp = conf.with_name("ganesha.conf.tmp")
    tmp.write_text(text)
    tmp.replace(conf)
    return conf


def _conf_listen(conf_path: Path) -> tuple[str, int]:
    """(Bind_Addr, NFS_Port) of a config this module rendered."""
    bind, port = "0.0.0.0", 2049
    for line in Path(conf_path).read_text().splitlines():
        s = line.strip().rstrip(";")
        if s.startswith("Bind_Addr ="):
            bind = s.split("=", 1)[1].strip()
        elif s.startswith("NFS_Port ="):
            port = int(s.split("=", 1)[1])
    return bind, port


def ganesha_service(
    conf_path: Path, run_dir: Path, *, ready_timeout: float = 30.0, binary: str = "ganesha.nfsd"
) -> Service:
    """The supervised ``ganesha.nfsd`` serving CONF_PATH; ready when its NFS port answers."""
    run_dir = Path(run_dir).absolute()
    conf_path = Path(conf_path).absolute()
    bind, port = _conf_listen(conf_path)
    logfile = run_dir / "ganesha.log"

    def ready() -> bool:
        # Ganesha starts (and opens its port) even when blocks of the config are invalid, just
        # without those exports: refuse that, and wait for the end of its initialisation.
        new = _read_from(logfile, service.log_start)
        errors = [ln for ln in new.splitlines() if ":CONFIG :CRIT :" in ln]
        if errors:
            raise ExportError("NFS-Ganesha rejected its configuration:\n" + "\n".join(errors[:10]))
        return "NFS SERVER INITIALIZED" in new and tcp_port_answers(bind, port, timeout=0.5)

    argv = [
        binary,
        "-F",
        "-f", str(conf_path),
        "-L", str(logfile),
        "-p", str(run_dir / "ganesha.nfsd.pid"),
        "-N", "NIV_EVENT",
    ]
    service = Service(
        "nfs-ganesha",
        argv,
        pidfile=run_dir / "ganesha.pid",
        logfile=logfile,
        ready_check=ready,
        ready_timeout=ready_timeout,
        stop_timeout=15.0,
    )
    return service


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _check_ganesha_reads(cidr: str) -> None:
    """ExportError for a network NFS-Ganesha's config parser cannot read (an IPv6 prefix of
    three digits other than a single address), before anything is saved or started."""
    prefix = int(cidr.rpartition("/")[2])
    if ":" in cidr and 100 <= prefix < 128:
        raise ExportError(f"client network {cidr}: NFS-Ganesha cannot read an IPv6 prefix of "
                          "100 to 127 bits; give a shorter prefix (such as /96) or single "
                          "addresses")


def _ganesha_client(cidr: str) -> str:
    """A client network as Ganesha's CLIENT block takes it: bare (validated by ipaddress); a
    /0 network, which Ganesha reads as no client at all, is its wildcard ``*`` (every client,
    IPv4 and IPv6); a single IPv6 address without its /128, which Ganesha cannot parse."""
    if cidr.endswith("/0"):
        return "*"
    return cidr.removesuffix("/128") if ":" in cidr else cidr
