"""Rendering and validation of the Ganesha and Samba configs (no daemons started)."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from exporters import exportconfig, exportspec
from exporters.errors import ExportError
from exporters.ganesha import (
    ClientRule,
    NfsExport,
    default_export_id,
    filesystem_id,
    render_ganesha_config,
    write_ganesha_config,
)
from exporters.samba import (
    SmbShare,
    SmbUser,
    ensure_posix_user,
    render_samba_config,
    write_samba_config,
)

UUID1 = "0b9a3c1e-7f0d-4c55-9f3e-2a7d1c9b8e01"
UUID2 = "5d2f8a94-1c3b-4e6f-8a0d-9b7c6e5f4a32"
RUN = Path("/run/sofs-test/exports/pacs")


def nfs(**kw) -> NfsExport:
    base = dict(
        volume="pacs",
        volume_uuid=UUID1,
        mountpoint=Path("/mnt/pacs"),
        clients=[ClientRule("10.0.0.0/8"), ClientRule("192.168.1.7", access="RO")],
    )
    base.update(kw)
    return NfsExport(**base)


def blocks_balanced(text: str) -> bool:
    depth = 0
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.endswith("{"):
            depth += 1
        elif s == "}":
            depth -= 1
            if depth < 0:
                return False
        elif not s.endswith(";"):
            return False
    return depth == 0


# --- Ganesha -------------------------------------------------------------------------------


def test_ganesha_complete_config():
    text = render_ganesha_config(nfs(), RUN)
    assert blocks_balanced(text)
    for needle in [
        "NFS_CORE_PARAM {",
        "Bind_Addr = 0.0.0.0;",
        "NFS_Port = 2049;",
        "Protocols = 4;",
        "Enable_UDP = false;",
        "NFSV4 {",
        "Graceless = false;",
        "Grace_Period = 90;",
        "RecoveryBackend = fs;",
        f'RecoveryRoot = "{RUN}/recovery";',
        "EXPORT {",
        f"Export_Id = {default_export_id(UUID1)};",
        'Path = "/mnt/pacs";',
        'Pseudo = "/pacs";',
        "Access_Type = None;",
        "Squash = Root_Squash;",
        "Transports = TCP;",
        "Name = VFS;",
        "Clients = 10.0.0.0/8;",
        "Clients = 192.168.1.7/32;",
    ]:
        assert needle in text, needle
    major, minor = filesystem_id(UUID1)
    assert f"Filesystem_id = {major}.{minor};" in text
    # ordered access list: RW for the /8, RO for the single host
    rules = re.findall(r"Clients = (\S+);\n\s+Access_Type = (\w+);", text)
    assert rules == [("10.0.0.0/8", "RW"), ("192.168.1.7/32", "RO")]
    assert "MNT_Port" not in text


def test_filesystem_id_stable_and_distinct():
    assert filesystem_id(UUID1) == filesystem_id(UUID1.upper())
    assert filesystem_id(UUID1) == filesystem_id("{" + UUID1 + "}")
    assert filesystem_id(UUID1) != filesystem_id(UUID2)
    # the same for any host, mount point, port or other volume in the config
    a = render_ganesha_config(nfs(), RUN)
    b = render_ganesha_config(nfs(mountpoint=Path("/srv/other"), nfs_port=3049), Path("/x"))
    fsid = re.compile(r"Filesystem_id = (\d+\.\d+);")
    assert fsid.findall(a) == fsid.findall(b)
    many = {filesystem_id(str(uuid.uuid4())) for _ in range(2000)}
    assert len(many) == 2000
    for major, minor in many:
        assert 1 <= major < 2**32 and 1 <= minor < 2**32
    assert 1 <= default_export_id(UUID1) <= 65535
    assert default_export_id(UUID1) == default_export_id(UUID1)


def test_ganesha_options():
    text = render_ganesha_config(
        nfs(read_only=True, squash="no_root_squash", graceless=True, grace_s=30, nfs_port=20049,
            bind="127.0.0.1", export_id=7,
            clients=[ClientRule("10.1.0.0/16", squash="all_squash"), ClientRule("10.2.0.0/16", "None")]),
        RUN,
    )
    assert "Graceless = true;" in text and "Grace_Period = 30;" in text
    assert "Bind_Addr = 127.0.0.1;" in text and "NFS_Port = 20049;" in text
    assert "Export_Id = 7;" in text
    assert "Squash = No_Root_Squash;" in text and "Squash = All_Squash;" in text
    rules = re.findall(r"Clients = (\S+);\n\s+Access_Type = (\w+);", text)
    assert rules == [("10.1.0.0/16", "RO"), ("10.2.0.0/16", "None")]  # read_only caps RW


def test_ganesha_v3():
    text = render_ganesha_config(nfs(v3=True, nfs_port=20049), RUN)
    assert text.count("Protocols = 3, 4;") == 2
    assert "MNT_Port = 20050;" in text
    assert "mount_path_pseudo = true;" in text
    assert "Enable_NLM = false;" in text
    assert blocks_balanced(text)
    with pytest.raises(ExportError, match="MOUNT port"):
        render_ganesha_config(nfs(v3=True, nfs_port=2049, mount_port=2049), RUN)
    with pytest.raises(ExportError, match="v3"):
        render_ganesha_config(nfs(mount_port=20050), RUN)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"volume": 'pacs"; } EXPORT { Path = "/'}, "volume name"),
        ({"volume": "pacs\nEXPORT"}, "volume name"),
        ({"volume": "../etc"}, "volume name"),
        ({"volume": ""}, "volume name"),
        ({"volume": "x" * 65}, "volume name"),
        ({"mountpoint": Path('/mnt/a"; Path = "/')}, "not allowed"),
        ({"mountpoint": Path("/mnt/a\n}")}, "not allowed"),
        ({"mountpoint": Path("/mnt/a;b")}, "not allowed"),
        ({"mountpoint": Path("/mnt/$HOME")}, "not allowed"),
        ({"mountpoint": Path("/mnt/a\\")}, "not allowed"),
        ({"mountpoint": Path("mnt/a")}, "absolute"),
        ({"mountpoint": Path("/mnt/../etc")}, "normalised"),
        ({"mountpoint": Path("/")}, "root directory"),
        ({"volume_uuid": "not-a-uuid"}, "UUID"),
        ({"clients": []}, "no client rules"),
        ({"clients": [ClientRule("10.0.0.1/8")]}, "host bits"),
        ({"clients": [ClientRule("300.1.1.1")]}, "client network"),
        ({"clients": [ClientRule("10.0.0.0/8; }")]}, "client network"),
        ({"clients": [ClientRule("*")]}, "client network"),
        ({"clients": [ClientRule("10.0.0.0/8", access="MDONLY")]}, "access"),
        ({"clients": [ClientRule("2001:db8:1:2::/120")]}, "IPv6 prefix of 100 to 127"),
        ({"clients": [ClientRule("10.0.0.0/8", squash="nope")]}, "squash"),
        ({"clients": ["10.0.0.0/8"]}, "ClientRule"),
        ({"squash": "Root_Squash; Access_Type = RW"}, "squash"),
        ({"nfs_port": 0}, "port"),
        ({"nfs_port": 65536}, "port"),
        ({"nfs_port": True}, "port"),
        ({"nfs_port": "2049"}, "port"),
        ({"bind": "0.0.0.0; NFS_Port = 1"}, "bind address"),
        ({"bind": "localhost"}, "bind address"),
        ({"grace_s": 181}, "grace"),
        ({"grace_s": -1}, "grace"),
        ({"export_id": 0}, "export id"),
        ({"export_id": 65536}, "export id"),
    ],
)
def test_ganesha_rejects(kw, match):
    with pytest.raises(ExportError, match=match):
        render_ganesha_config(nfs(**kw), RUN)


def test_ganesha_ipv6_and_run_dir_checked():
    text = render_ganesha_config(nfs(clients=[ClientRule("2001:db8::/32")], bind="::1"), RUN)
    assert "Clients = 2001:db8::/32;" in text
    with pytest.raises(ExportError, match="run directory"):
        render_ganesha_config(nfs(), Path('/run/x"y'))


def test_ganesha_client_forms_it_can_parse():
    """What Ganesha's parser cannot read is written the way it can: a /0 network (Ganesha
    reads 0.0.0.0/0 as no client) as its wildcard, a single IPv6 address without /128."""
    text = render_ganesha_config(nfs(clients=[
        ClientRule("0.0.0.0/0", access="RO"), ClientRule("::/0"), ClientRule("2001:db8::1"),
        ClientRule("2001:db8::/64"), ClientRule("10.1.2.3")]), RUN)
    rules = re.findall(r"Clients = (\S+);\n\s+Access_Type = (\w+);", text)
    assert rules == [("*", "RO"), ("*", "RW"), ("2001:db8::1", "RW"), ("2001:db8::/64", "RW"),
                     ("10.1.2.3/32", "RW")]


def test_ganesha_several_exports():
    a = nfs()
    b = nfs(volume="research", volume_uuid=UUID2, mountpoint=Path("/mnt/research"))
    text = render_ganesha_config([a, b], RUN)
    assert text.count("EXPORT {") == 2 and blocks_balanced(text)
    assert 'Pseudo = "/research";' in text
    with pytest.raises(ExportError, match="same export id"):
        render_ganesha_config([a, replace(b, export_id=default_export_id(UUID1))], RUN)
    with pytest.raises(ExportError, match="differ in nfs_port"):
        render_ganesha_config([a, replace(b, nfs_port=3049)], RUN)
    with pytest.raises(ExportError, match="twice"):
        render_ganesha_config([a, replace(a, export_id=9)], RUN)


def test_write_ganesha_config(tmp_path):
    conf = write_ganesha_config(nfs(), tmp_path / "run")
    assert conf == tmp_path / "run" / "ganesha.conf"
    assert (tmp_path / "run" / "recovery").is_dir()
    assert f'RecoveryRoot = "{tmp_path}/run/recovery";' in conf.read_text()


# --- Samba ---------------------------------------------------------------------------------


def smb(**kw) -> SmbShare:
    base = dict(volume="pacs", path=Path("/mnt/pacs"), valid_users=["alice", "@radiology"],
                read_list=["@radiology"], write_list=["alice"])
    base.update(kw)
    return SmbShare(**base)


def parse_smbconf(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    cur = None
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("["):
            assert s.endswith("]"), s
            cur = sections.setdefault(s[1:-1], {})
            continue
        key, _, value = s.partition("=")
        assert cur is not None and _ and key.strip() not in cur, s
        cur[key.strip()] = value.strip()
    return sections


def test_samba_complete_config():
    text = render_samba_config(smb(port=14450, bind="127.0.0.1"), RUN)
    conf = parse_smbconf(text)
    g, share = conf["global"], conf["pacs"]
    assert g["interfaces"] == "127.0.0.1" and g["bind interfaces only"] == "yes"
    assert g["smb ports"] == "14450" and g["disable netbios"] == "yes"
    for key, sub in [("lock directory", "lock"), ("state directory", "state"),
                     ("cache directory", "cache"), ("pid directory", "pid"),
                     ("private dir", "private"), ("ncalrpc dir", "ncalrpc"),
                     ("binddns dir", "binddns")]:
        assert g[key] == f"{RUN}/{sub}"
    assert g["passdb backend"] == f"tdbsam:{RUN}/private/passdb.tdb"
    assert g["log file"].startswith(f"{RUN}/log/")
    assert g["server min protocol"] == "SMB2_02"
    assert g["server signing"] == "mandatory"
    assert g["server smb encrypt"] == "desired"
    assert share["path"] == "/mnt/pacs"
    assert share["valid users"] == "alice @radiology"
    assert share["read list"] == "@radiology" and share["write list"] == "alice"
    assert share["store dos attributes"] == "yes"
    assert share["vfs objects"] == "acl_xattr shadow_copy2"
    assert share["shadow:snapdir"] == ".snapshots"
    assert share["shadow:format"] == "@GMT-%Y.%m.%d-%H.%M.%S"
    assert share["shadow:localtime"] == "no"
    assert share["map acl inherit"] == "yes" and share["ea support"] == "yes"
    assert share["veto files"] == "/lost+found/.sofs*/"
    assert share["read only"] == "no"
    assert share["create mask"] == "0664" and share["directory mask"] == "2775"
    # smb.conf rejects comments at the end of a value line
    for line in text.splitlines():
        if "=" in line:
            assert "#" not in line and ";" not in line, line


def test_samba_options():
    conf = parse_smbconf(render_samba_config(
        smb(min_protocol="SMB3_11", signing="desired", encrypt="required", read_only=True,
            veto=["Thumbs.db", "*.tmp"], valid_users=[]), RUN))
    g, share = conf["global"], conf["pacs"]
    assert g["server min protocol"] == "SMB3_11" and g["server signing"] == "desired"
    assert g["server smb encrypt"] == "required"
    assert "interfaces" not in g and g["bind interfaces only"] == "no"
    assert share["read only"] == "yes" and "valid users" not in share
    assert share["veto files"] == "/Thumbs.db/*.tmp/"


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"volume": "pacs]\n[global"}, "volume name"),
        ({"volume": "pa cs"}, "volume name"),
        ({"path": Path("/mnt/pacs\n[evil]")}, "not allowed"),
        ({"path": Path("/mnt/%U")}, "not allowed"),
        ({"path": Path("/mnt/pacs\\")}, "not allowed"),
        ({"path": Path("/mnt/pacs ")}, "white space"),
        ({"path": Path("relative")}, "absolute"),
        ({"valid_users": ["alice\nroot"]}, "valid users"),
        ({"valid_users": ["Alice"]}, "valid users"),
        ({"valid_users": ["alice, root"]}, "valid users"),
        ({"read_list": ["%U"]}, "read list"),
        ({"write_list": ["@"]}, "write list"),
        ({"veto": ["a/b"]}, "veto"),
        ({"veto": ["x\n[y]"]}, "veto"),
        ({"veto": [".."]}, "veto"),
        ({"min_protocol": "NT1"}, "minimum protocol"),
        ({"signing": "off"}, "signing"),
        ({"encrypt": "maybe"}, "encrypt"),
        ({"port": 0}, "port"),
        ({"bind": "127.0.0.1 10.0.0.1"}, "bind address"),
        ({"create_mask": 0o17777}, "create mask"),
        ({"workgroup": "A B"}, "workgroup"),
    ],
)
def test_samba_rejects(kw, match):
    with pytest.raises(ExportError, match=match):
        render_samba_config(smb(**kw), RUN)


def test_samba_several_shares_and_reserved_names():
    text = render_samba_config([smb(), smb(volume="research", path=Path("/mnt/r"))], RUN)
    assert set(parse_smbconf(text)) == {"global", "pacs", "research"}
    with pytest.raises(ExportError, match="reserved"):
        render_samba_config(smb(volume="global"), RUN)
    with pytest.raises(ExportError, match="differ in port"):
        render_samba_config([smb(), smb(volume="r", port=1445)], RUN)


def test_samba_config_passes_testparm(tmp_path):
    if shutil.which("testparm") is None:
        pytest.skip("testparm not installed (apt samba-common-bin, with samba)")
    conf = write_samba_config(smb(port=14450, bind="127.0.0.1"), tmp_path / "run")
    assert (tmp_path / "run" / "private").stat().st_mode & 0o777 == 0o700
    r = subprocess.run(["testparm", "-s", "--suppress-prompt", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Unknown parameter" not in r.stderr and "Ignoring" not in r.stderr, r.stderr
    assert "[pacs]" in r.stdout


@pytest.mark.parametrize(
    "user, match",
    [
        (SmbUser("root", "pw", 0, 0), "uid"),
        (SmbUser("alice;rm", "pw", 61000, 61000), "user name"),
        (SmbUser("-o", "pw", 61000, 61000), "user name"),
        (SmbUser("Alice", "pw", 61000, 61000), "user name"),
        (SmbUser("bob", "pw", 61000, 0), "gid"),
    ],
)
def test_posix_user_checks(user, match):
    with pytest.raises(ExportError, match=match):
        ensure_posix_user(user)


def test_posix_user_uid_mismatch():
    # 'root' exists with uid 0: asking for it with another uid must be refused, not changed.
    with pytest.raises(ExportError, match="exists with uid 0"):
        ensure_posix_user(SmbUser("root", "pw", 61000, 61000))


def test_export_spec_attr_cache_reaches_ganesha():
    vol_uuid = str(uuid.uuid4())
    spec = exportspec.ExportSpec("nfs", "vol", exportspec.NfsOptions(
        clients=(exportspec.NfsClient("10.0.0.0/8", "RW"),)))
    assert exportconfig.nfs_export_of(spec, vol_uuid, "/mnt/x").attr_cache_s == 0  # coherent
    text = render_ganesha_config(exportconfig.nfs_export_of(spec, vol_uuid, "/mnt/x"), RUN)
    assert "Attr_Expiration_Time = 0;" in text
    spec = replace(spec, options=replace(spec.nfs, attr_cache=5))
    text = render_ganesha_config(exportconfig.nfs_export_of(spec, vol_uuid, "/mnt/x"), RUN)
    assert "Attr_Expiration_Time = 5;" in text
    spec = replace(spec, options=replace(spec.nfs, attr_cache=7200))
    with pytest.raises(ExportError, match="attribute cache"):
        render_ganesha_config(exportconfig.nfs_export_of(spec, vol_uuid, "/mnt/x"), RUN)


def test_nfs_v42_is_opt_in_and_survives_the_spec_file():
    vol_uuid = str(uuid.uuid4())
    spec = exportspec.ExportSpec("nfs", "vol", exportspec.NfsOptions(
        clients=(exportspec.NfsClient("10.0.0.0/8", "RW"),)))
    text = render_ganesha_config(exportconfig.nfs_export_of(spec, vol_uuid, "/mnt/x"), RUN)
    assert "Minor_Versions = 0, 1;" in text
    spec = replace(spec, options=replace(spec.nfs, v42=True))
    again = exportspec.NfsOptions.from_json(spec.nfs.to_json())
    assert again.v42 and exportspec.NfsOptions.from_json(
        {k: v for k, v in spec.nfs.to_json().items() if k != "v42"}).v42 is False  # older file
    text = render_ganesha_config(exportconfig.nfs_export_of(spec, vol_uuid, "/mnt/x"), RUN)
    assert "Minor_Versions = 0, 1, 2;" in text
