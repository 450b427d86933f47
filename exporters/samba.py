"""Samba 4.17 configuration for sofs volumes, its users, and the smbd service.

:func:`render_samba_config` turns an :class:`SmbShare` (or several sharing one server) into a
complete ``smb.conf`` whose state lives entirely under a run directory;
:func:`write_samba_config` also creates that layout; :func:`add_smb_users` creates the POSIX
users and their Samba passwords; :func:`samba_service` gives the supervised ``smbd``.

Run directory layout (``RUN_DIR``)::

    smb.conf                  the rendered config
    smbd.pid                  the supervisor's pidfile (pid, start time, session)
    smbd.log                  smbd's log (and stdout/stderr)
    lock/ state/ cache/ pid/ ncalrpc/ binddns/   Samba's state directories
    private/                  secrets; passdb.tdb (tdbsam) holds the users' password hashes

Users and identity
------------------
Samba authenticates a user against the tdbsam and then acts as the POSIX user of the same name:
files it creates are owned by that user's uid and primary gid, and POSIX permissions (and the
Windows ACLs kept in ``security.NTACL`` xattrs by ``acl_xattr``) are checked for that identity.
So each :class:`SmbUser` is also a POSIX user: :func:`ensure_posix_user` creates it with
``groupadd``/``useradd`` (uid and gid as given, no home, no login shell) unless it already
exists with that uid, and refuses to touch an existing user whose uid differs. Groups in
``valid users`` and the read/write lists are POSIX groups, written ``@group``.

Protocol choices
----------------
``min_protocol`` defaults to SMB2_02 because pysmb (used by tests and some scripts) speaks only
SMB 2.0.2; Windows clients and smbprotocol negotiate SMB3 anyway. Set "SMB3" (or "SMB3_11") to
refuse anything older. Signing is mandatory by default; encryption is "desired" (used when
the client supports it) and can be "required" (SMB3 clients only) or "off".

Previous versions
-----------------
Every share loads ``shadow_copy2`` over the volume's hidden ``.snapshots`` directory (at the
FUSE mount's root, :mod:`fuse_mount.snapshotview`): its snapshots named ``@GMT-YYYY.MM.DD-
HH.MM.SS`` (UTC, the default name of ``sofsctl snapshot create`` and of scheduled snapshots)
are the files' "previous versions" in Windows Explorer, read-only. A share of a subdirectory
of the volume finds the same directory inside each snapshot. Snapshots named otherwise are
not shown there (they stay reachable under ``.snapshots``).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fuse_mount.snapshotview import SNAPSHOTS_NAME
from sofs.snapshot.catalog import GMT_FORMAT

from .errors import ExportError
from .service import Service, tcp_port_answers
from .validate import check_ip, check_path, check_port, check_volume_name

# POSIX user and group names we are willing to create or name in smb.conf.
NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# Share names: a volume name, optionally with a suffix and a trailing '$' (hidden from browse lists).
SHARE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,71}\$?")
# veto files patterns: one path component, shell wildcards allowed, no separators.
VETO_RE = re.compile(r"[A-Za-z0-9._+*?~ -]{1,255}")

PROTOCOLS = ("SMB2_02", "SMB2_10", "SMB3", "SMB3_00", "SMB3_02", "SMB3_11")
SIGNING = ("mandatory", "desired", "default")
ENCRYPT = ("off", "desired", "required")

# Names the archive keeps to itself: never shown to or created by SMB clients.
DEFAULT_VETO = ("lost+found", ".sofs*")

# Previous versions (shadow_copy2): the mount's snapshot directory and their names' format.
SNAPSHOTS_DIR_NAME = SNAPSHOTS_NAME.decode()
SHADOW_FORMAT = GMT_FORMAT

STATE_DIRS = ("lock", "state", "cache", "pid", "private", "ncalrpc", "binddns", "log")


@dataclass(frozen=True)
class SmbUser:
    """A Samba user and the POSIX identity it acts as."""

    name: str
    password: str
    uid: int
    gid: int


@dataclass
class SmbShare:
    """One volume shared over SMB.

    ``valid_users`` may connect at all (empty: every Samba user); ``read_list`` users get
    read-only access and ``write_list`` users read-write access even on a read-only share.
    Entries are user names or ``@group``. ``name`` is the share's name (the volume's by
    default); a name ending in ``$`` with ``browseable=False`` is left out of share lists
    (used for the health probe's own share, see exporters.probe).
    """

    volume: str
    path: Path
    name: str = ""
    browseable: bool = True
    valid_users: list[str] = field(default_factory=list)
    read_list: list[str] = field(default_factory=list)
    write_list: list[str] = field(default_factory=list)
    read_only: bool = False
    port: int = 445
    bind: str = "0.0.0.0"
    min_protocol: str = "SMB2_02"
    signing: str = "mandatory"
    encrypt: str = "desired"
    veto: Sequence[str] = DEFAULT_VETO
    create_mask: int = 0o664
    directory_mask: int = 0o2775
    workgroup: str = "SOFS"


def _check_principals(names: Sequence[str], what: str) -> list[str]:
    out = []
    for n in names:
        bare = n[1:] if isinstance(n, str) and n.startswith("@") else n
        if not isinstance(bare, str) or not NAME_RE.fullmatch(bare):
            raise ExportError(
                f"invalid {what} entry {n!r}: a user name or @group of lower-case letters, "
                "digits, '_' or '-' (at most 32)"
            )
        out.append(n)
    return out


def _check_choice(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise ExportError(f"invalid {what} {value!r}: use one of {', '.join(choices)}")
    return value


def _check_mask(value: int, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o7777:
        raise ExportError(f"invalid {what} {value!r}: a mode from 0 to 0o7777")
    return f"{value:04o}"


def validate_share(share: SmbShare) -> dict:
    """Check every field of SHARE; the checked values, ready to render."""
    check_volume_name(share.volume)
    name = share.name or share.volume
    if not isinstance(name, str) or not SHARE_NAME_RE.fullmatch(name):
        raise ExportError(f"invalid share name {name!r}: 1-72 letters, digits, '.', '_' or '-', "
                          "optionally ending in '$'")
    path = check_path(share.path, "share path")
    if path == Path("/"):
        raise ExportError("refusing to share the root directory '/'")
    veto = []
    for v in share.veto:
        if not isinstance(v, str) or not VETO_RE.fullmatch(v) or v.strip() != v or v in (".", ".."):
            raise ExportError(f"invalid veto pattern {v!r}: one file name, wildcards * ? allowed")
        veto.append(v)
    return {
        "volume": share.volume,
        "name": name,
        "browseable": bool(share.browseable),
        "path": str(path),
        "valid_users": _check_principals(share.valid_users, "valid users"),
        "read_list": _check_principals(share.read_list, "read list"),
        "write_list": _check_principals(share.write_list, "write list"),
        "port": check_port(share.port, "SMB port"),
        "bind": check_ip(share.bind),
        "min_protocol": _check_choice(share.min_protocol, PROTOCOLS, "minimum protocol"),
        "signing": _check_choice(share.signing, SIGNING, "server signing"),
        "encrypt": _check_choice(share.encrypt, ENCRYPT, "smb encrypt"),
        "veto": veto,
        "create_mask": _check_mask(share.create_mask, "create mask"),
        "directory_mask": _check_mask(share.directory_mask, "directory mask"),
        "workgroup": _check_workgroup(share.workgroup),
        "read_only": bool(share.read_only),
    }


def _check_workgroup(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,14}", name):
        raise ExportError(f"invalid workgroup {name!r}: 1-15 letters, digits, '_' or '-'")
    return name


def render_samba_config(share: SmbShare | Sequence[SmbShare], run_dir: Path) -> str:
    """A complete smb.conf serving SHARE (or several shares of one server) with state in RUN_DIR.

    smb.conf has no trailing comments: comments are whole lines only.
    """
    shares = [share] if isinstance(share, SmbShare) else list(share)
    if not shares:
        raise ExportError("nothing to share")
    run_dir = check_path(Path(run_dir).absolute(), "run directory")
    checked = [validate_share(s) for s in shares]
    first = checked[0]
    server_keys = ("port", "bind", "min_protocol", "signing", "encrypt", "workgroup")
    names: set[str] = set()
    for c in checked:
        for key in server_keys:
            if c[key] != first[key]:
                raise ExportError(
                    f"shares {first['name']!r} and {c['name']!r} share one server but "
                    f"differ in {key}"
                )
        if c["name"].lower() in names or c["name"].lower() in ("global", "homes", "printers"):
            raise ExportError(f"share name {c['name']!r} is used twice or reserved")
        names.add(c["name"].lower())
    d = {name: run_dir / name for name in STATE_DIRS}
    encrypt = {"off": "off", "desired": "desired", "required": "required"}[first["encrypt"]]
    lines = [
        "# Samba configuration rendered by sofs (exporters.samba): do not edit,",
        "# it is rewritten at every start.",
        "[global]",
        "    server role = standalone server",
        f"    workgroup = {first['workgroup']}",
        "    netbios name = SOFS",
        "    security = user",
        "    map to guest = never",
        "    restrict anonymous = 2",
    ]
    if first["bind"] in ("0.0.0.0", "::"):
        lines.append("    bind interfaces only = no")
    else:
        lines += [f"    interfaces = {first['bind']}", "    bind interfaces only = yes"]
    lines += [
        f"    smb ports = {first['port']}",
        "    disable netbios = yes",
        f"    server min protocol = {first['min_protocol']}",
        "    server max protocol = SMB3",
        f"    server signing = {first['signing']}",
        f"    server smb encrypt = {encrypt}",
        "    ntlm auth = ntlmv2-only",
        f"    lock directory = {d['lock']}",
        f"    state directory = {d['state']}",
        f"    cache directory = {d['cache']}",
        f"    pid directory = {d['pid']}",
        f"    private dir = {d['private']}",
        f"    ncalrpc dir = {d['ncalrpc']}",
        f"    binddns dir = {d['binddns']}",
        f"    passdb backend = tdbsam:{d['private'] / 'passdb.tdb'}",
        f"    log file = {d['log'] / 'samba.%m.log'}",
        "    max log size = 10000",
        "    log level = 1",
        "    usershare path =",
        "    load printers = no",
        "    printing = bsd",
        "    printcap name = /dev/null",
        "    disable spoolss = yes",
        "    winbind enum users = no",
        "    unix password sync = no",
        "    obey pam restrictions = no",
    ]
    for c in checked:
        lines += [
            "",
            f"[{c['name']}]",
            f"    path = {c['path']}",
            f"    browseable = {'yes' if c['browseable'] else 'no'}",
            f"    read only = {'yes' if c['read_only'] else 'no'}",
        ]
        if c["valid_users"]:
            lines.append(f"    valid users = {' '.join(c['valid_users'])}")
        if c["read_list"]:
            lines.append(f"    read list = {' '.join(c['read_list'])}")
        if c["write_list"]:
            lines.append(f"    write list = {' '.join(c['write_list'])}")
        lines += [
            "    guest ok = no",
            "    store dos attributes = yes",
            "    vfs objects = acl_xattr shadow_copy2",
            f"    shadow:snapdir = {SNAPSHOTS_DIR_NAME}",
            f"    shadow:format = {SHADOW_FORMAT}",
            "    shadow:localtime = no",
            "    shadow:sort = desc",
            "    map acl inherit = yes",
            "    inherit acls = yes",
            "    ea support = yes",
            f"    create mask = {c['create_mask']}",
            f"    directory mask = {c['directory_mask']}",
            "    strict sync = yes",
        ]
        if c["veto"]:
            lines += [
                f"    veto files = /{'/'.join(c['veto'])}/",
                "    delete veto files = no",
            ]
    return "\n".join(lines) + "\n"


def write_samba_config(share: SmbShare | Sequence[SmbShare], run_dir: Path) -> Path:
    """Render the config into RUN_DIR/smb.conf, creating the state directories."""
    run_dir = Path(run_dir).absolute()
    text = render_samba_config(share, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in STATE_DIRS:
        mode = 0o700 if name == "private" else 0o755
        p = run_dir / name
        p.mkdir(mode=mode, exist_ok=True)
        p.chmod(mode)
    conf = run_dir / "smb.conf"
    tmp = conf.with_name("smb.conf.tmp")
    tmp.write_text(text)
    tmp.replace(conf)
    return conf


def ensure_posix_user(user: SmbUser) -> bool:
    """Make sure the POSIX user USER.name exists with USER.uid (creating it and its group if
    needed). True if it was created. Refuses unsafe names, uid/gid 0, and a mismatching uid."""
    name = user.name
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ExportError(
            f"invalid user name {name!r}: lower-case letters, digits, '_' or '-', at most 32, "
            "starting with a letter or '_'"
        )
    for value, what in ((user.uid, "uid"), (user.gid, "gid")):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
            raise ExportError(f"invalid {what} {value!r} for {name}: from 1 to 2^31-1 (not root)")
    try:
        existing = pwd.getpwnam(name)
    except KeyError:
        existing = None
    if existing is not None:
        if existing.pw_uid != user.uid:
            raise ExportError(
                f"user {name} exists with uid {existing.pw_uid}, not {user.uid}: "
                "use that uid or another name"
            )
        return False
    try:
        taken = pwd.getpwuid(user.uid)
        raise ExportError(f"uid {user.uid} already belongs to user {taken.pw_name}")
    except KeyError:
        pass
    try:
        grp.getgrgid(user.gid)
    except KeyError:
        group_name = name
        try:
            grp.getgrnam(group_name)
            raise ExportError(f"group {group_name} exists with another gid than {user.gid}")
        except KeyError:
            pass
        _run(["groupadd", "-g", str(user.gid), group_name])
    _run([
        "useradd", "-M", "-N", "-u", str(user.uid), "-g", str(user.gid),
        "-d", "/nonexistent", "-s", "/usr/sbin/nologin", "-c", "sofs SMB user", name,
    ])
    return True


def remove_posix_user(name: str) -> None:
    """Remove a POSIX user created by :func:`ensure_posix_user` (and its same-named group)."""
    if not NAME_RE.fullmatch(name):
        raise ExportError(f"invalid user name {name!r}")
    try:
        pwd.getpwnam(name)
        _run(["userdel", name])
    except KeyError:
        pass
    try:
        grp.getgrnam(name)
        subprocess.run(["groupdel", name], capture_output=True)
    except KeyError:
        pass


def _run(argv: list[str], input: str | None = None) -> None:
    try:
        r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportError(f"{argv[0]} failed: {exc}") from None
    if r.returncode != 0:
        raise ExportError(f"{argv[0]} failed ({r.returncode}): {(r.stderr or r.stdout).strip()}")


def add_smb_users(conf_path: Path, users: Sequence[SmbUser], create_posix: bool = True) -> None:
    """Create (or update the password of) each user in the config's tdbsam.

    With CREATE_POSIX the POSIX users are created first (:func:`ensure_posix_user`); else they
    must exist. Passwords go through stdin, never the command line.
    """
    for user in users:
        if create_posix:
            ensure_posix_user(user)
        elif not NAME_RE.fullmatch(user.name):
            raise ExportError(f"invalid user name {user.name!r}")
        pw = user.password
        if not isinstance(pw, str) or not pw or "\n" in pw or "\r" in pw or "\0" in pw:
            raise ExportError(f"invalid password for {user.name}: empty or contains a line break")
        _run(["smbpasswd", "-c", str(conf_path), "-s", "-a", user.name], input=f"{pw}\n{pw}\n")


def export_passwords(conf_path: Path, uids: dict[str, int]) -> str:
    """The smbpasswd-format lines (name, uid, NT hash, flags) of the users UIDS names (name ->
    POSIX uid) in the config's tdbsam: what another host needs to let the same users in with
    the same passwords. The hashes are password-equivalent for NTLM: keep them where only the
    cluster can read."""
    with tempfile.TemporaryDirectory(prefix="sofs-passdb-") as tmp:
        out = Path(tmp) / "smbpasswd"
        _run(["pdbedit", "-s", str(conf_path), "-e", f"smbpasswd:{out}"])
        lines = out.read_text().splitlines() if out.exists() else []
    kept = []
    for line in lines:
        fields = line.split(":")
        if len(fields) > 2 and fields[0] in uids:
            fields[1] = str(uids[fields[0]])  # tdbsam exports 0; an import needs the real uid
            kept.append(":".join(fields) + "\n")
    return "".join(kept)


def import_passwords(conf_path: Path, text: str) -> None:
    """Load smbpasswd-format lines (:func:`export_passwords`) into the config's tdbsam; their
    POSIX users must exist."""
    for line in text.splitlines():
        if not NAME_RE.fullmatch(line.split(":", 1)[0]):
            raise ExportError(f"invalid smbpasswd line for {line.split(':', 1)[0]!r}")
    with tempfile.TemporaryDirectory(prefix="sofs-passdb-") as tmp:
        src = Path(tmp) / "smbpasswd"
        fd = os.open(src, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        backend = _passdb_backend(conf_path)
        _run(["pdbedit", "-s", str(conf_path), "-i", f"smbpasswd:{src}", "-e", backend])
    if backend.startswith("tdbsam:") and not Path(backend.split(":", 1)[1]).exists():
        raise ExportError("pdbedit imported no SMB user (their POSIX users or uids differ?)")


def _passdb_backend(conf_path: Path) -> str:
    """The ``passdb backend`` the config names (pdbedit imports only into one named)."""
    for line in Path(conf_path).read_text().splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "passdb backend" and value.strip():
            return value.strip()
    raise ExportError(f"{conf_path} names no passdb backend")


def remove_smb_user(conf_path: Path, name: str) -> None:
    """Delete NAME from the config's tdbsam (the POSIX user stays)."""
    if not NAME_RE.fullmatch(name):
        raise ExportError(f"invalid user name {name!r}")
    _run(["smbpasswd", "-c", str(conf_path), "-s", "-x", name])


def _conf_listen(conf_path: Path) -> tuple[str, int]:
    bind, port = "0.0.0.0", 445
    for line in Path(conf_path).read_text().splitlines():
        s = line.strip()
        if s.startswith("interfaces ="):
            bind = s.split("=", 1)[1].split()[0]
        elif s.startswith("smb ports ="):
            port = int(s.split("=", 1)[1].split()[0])
    return bind, port


def samba_service(
    conf_path: Path, run_dir: Path, *, ready_timeout: float = 30.0, binary: str = "smbd"
) -> Service:
    """The supervised smbd serving CONF_PATH; ready when its port answers.

    smbd runs in its own session (without it, smbd's SIGTERM handling signals its whole process
    group), in the foreground, logging to stdout (RUN_DIR/smbd.log). Its worker processes stay in
    that session; the on-demand RPC helper samba-dcerpcd makes its own session (reparented to
    init) with its rpcd_* workers: it is found through RUN_DIR/pid/samba-dcerpcd.pid (trusted
    only if its command line names this config) and stopped with its session.
    """
    run_dir = Path(run_dir).absolute()
    conf_path = Path(conf_path).absolute()
    bind, port = _conf_listen(conf_path)
    argv = [binary, "-F", "--no-process-group", "--debug-stdout", "-s", str(conf_path)]
    return Service(
        "smbd",
        argv,
        pidfile=run_dir / "smbd.pid",
        logfile=run_dir / "smbd.log",
        ready_check=lambda: tcp_port_answers(bind, port, timeout=0.5),
        ready_timeout=ready_timeout,
        stop_timeout=10.0,
        helper_pidfiles=[run_dir / "pid" / "samba-dcerpcd.pid"],
        helper_match=f"--configfile={conf_path}",
    )
