"""The exporters' records: spec.json and state.json as typed dataclasses, read strictly.

Files written by the code before the records were typed (the literal documents below, as that
code wrote them) still load, and are written back the same; unknown fields and wrong types
are refused with an ExportError naming the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from exporters import exportmount, registry
from exporters.errors import ExportError
from exporters.exportspec import ExportSpec, NfsClient, NfsOptions, SmbAccount, SmbOptions
from exporters.exportstate import ExportState
from exporters.probe import ProbeResult
from exporters.supervisor import Supervisor
from sofsctl.exports import export

# spec.json as registry.save_spec wrote it before the options were dataclasses (byte for byte)
OLD_NFS_SPEC = """\
{
 "created": 1718000000.25,
 "kind": "nfs",
 "options": {
  "attr_cache": 0,
  "bind": "0.0.0.0",
  "clients": [
   [
    "10.1.2.0/24",
    "RW"
   ],
   [
    "10.1.9.7",
    "RO"
   ]
  ],
  "grace": 0,
  "mount_port": null,
  "port": 2049,
  "read_only": false,
  "squash": "root_squash",
  "v3": false
 },
 "volume": "pacs"
}
"""
OLD_SMB_SPEC = """\
{
 "created": 1718000001.5,
 "kind": "smb",
 "options": {
  "bind": "0.0.0.0",
  "encrypt": "desired",
  "min_protocol": "SMB2_02",
  "port": 445,
  "read_only": false,
  "signing": "mandatory",
  "users": [
   [
    "radiology",
    2001,
    2001
   ]
  ]
 },
 "volume": "pacs"
}
"""
# state.json as the supervisor wrote it (after a probe), and as `export stop` wrote it for an
# export whose supervisor never wrote one
OLD_STATE = """\
{
 "bind": "0.0.0.0",
 "kind": "nfs",
 "message": "",
 "mount_pid": 1,
 "mountpoint": "/mnt/pacs",
 "pid": 24631,
 "pid_start": 231919,
 "port": 2049,
 "probe_at": 1718000003.5,
 "probe_failures": 0,
 "probe_message": "wrote, read back and removed .sofs-probe/nfs-probe over NFSv4.1",
 "probe_ok": true,
 "probe_took": 0.123,
 "restarts": 0,
 "service": "nfs-ganesha",
 "service_pid": 4242,
 "started": 1718000002.0,
 "state": "running",
 "updated": 1718000003.6,
 "volume": "pacs"
}
"""
OLD_STOPPED_STATE = """\
{
 "message": "stopped by sofsctl export stop",
 "pid": null,
 "service_pid": null,
 "state": "stopped",
 "updated": 1718000009.0
}
"""
LIST_JSON_KEYS = ["volume", "kind", "bind", "port", "state", "pid", "service_pid", "restarts", "who",
                  "mountpoint", "started", "message", "export_dir", "probe_ok", "probe_at",
                  "probe_message"]


def _edir(tmp_path: Path, spec: str, state: str | None = None) -> Path:
    kind = json.loads(spec)["kind"]
    edir = tmp_path / "exports" / f"pacs-{kind}"
    edir.mkdir(parents=True)
    (edir / "spec.json").write_text(spec)
    if state is not None:
        (edir / "state.json").write_text(state)
    return edir


# --- old files load, and are written back the same ---------------------------------------------

def test_an_old_nfs_spec_loads_and_is_written_back_byte_for_byte(tmp_path):
    edir = _edir(tmp_path, OLD_NFS_SPEC)
    spec = registry.load_spec(edir)
    assert spec == ExportSpec("nfs", "pacs", NfsOptions(
        clients=(NfsClient("10.1.2.0/24", "RW"), NfsClient("10.1.9.7", "RO")), grace=0),
        created=1718000000.25)
    assert spec.options.bind == "0.0.0.0" and spec.nfs.squash == "root_squash"
    registry.save_spec(edir, spec)
    assert (edir / "spec.json").read_text() == OLD_NFS_SPEC


def test_an_old_smb_spec_loads_and_is_written_back_byte_for_byte(tmp_path):
    edir = _edir(tmp_path, OLD_SMB_SPEC)
    spec = registry.load_spec(edir)
    assert spec == ExportSpec("smb", "pacs", SmbOptions(
        users=(SmbAccount("radiology", 2001, 2001),)), created=1718000001.5)
    registry.save_spec(edir, spec)
    assert (edir / "spec.json").read_text() == OLD_SMB_SPEC


def test_options_missing_from_an_older_spec_take_their_defaults():
    doc = json.loads(OLD_NFS_SPEC)
    del doc["options"]["attr_cache"], doc["options"]["mount_port"], doc["created"]
    spec = ExportSpec.from_json(doc, "spec.json")
    assert spec.nfs.attr_cache == 0 and spec.nfs.mount_port is None and spec.created == 0.0
    assert ExportSpec.from_json({"kind": "smb", "volume": "v", "options": {}}).options == SmbOptions()


def test_an_old_state_loads_and_is_written_back_with_the_same_keys(tmp_path):
    edir = _edir(tmp_path, OLD_NFS_SPEC, OLD_STATE)
    st = registry.read_state(edir)
    assert st == ExportState(
        state="running", pid=24631, pid_start=231919, kind="nfs", volume="pacs",
        service="nfs-ganesha", service_pid=4242, bind="0.0.0.0", port=2049,
        mountpoint="/mnt/pacs", mount_pid=1, started=1718000002.0, updated=1718000003.6,
        probe_ok=True, probe_at=1718000003.5, probe_took=0.123,
        probe_message="wrote, read back and removed .sofs-probe/nfs-probe over NFSv4.1")
    assert st.to_json() == json.loads(OLD_STATE)
    registry.write_state(edir, st)
    again = json.loads((edir / "state.json").read_text())
    assert again.keys() == json.loads(OLD_STATE).keys() and again["updated"] != 1718000003.6
    assert registry.read_state(edir) == replace(st, updated=again["updated"])


def test_an_old_stopped_state_and_a_missing_one_read_as_stopped(tmp_path):
    edir = _edir(tmp_path, OLD_NFS_SPEC, OLD_STOPPED_STATE)
    st = registry.read_state(edir)
    assert st == ExportState(state="stopped", message="stopped by sofsctl export stop",
                             updated=1718000009.0)
    assert st.probe_ok is None and "probe_ok" not in st.to_json()  # no probe ran: no probe keys
    assert registry.read_state(tmp_path / "nothing") == ExportState()
    assert registry.supervisor_pid(edir) is None


def test_export_list_json_keeps_its_keys_for_old_files(tmp_path):
    _edir(tmp_path, OLD_NFS_SPEC, OLD_STATE)
    _edir(tmp_path, OLD_SMB_SPEC)
    res = CliRunner().invoke(export, ["list", "--json"], obj=tmp_path)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [list(r) for r in rows] == [LIST_JSON_KEYS, LIST_JSON_KEYS]
    nfs, smb = rows
    assert nfs["who"] == "10.1.2.0/24:rw,10.1.9.7:ro" and nfs["port"] == 2049
    assert nfs["state"] == "dead"  # running, says the file, but its supervisor is not there
    assert nfs["probe_ok"] is True and nfs["mountpoint"] == "/mnt/pacs"
    assert smb["who"] == "radiology" and smb["state"] == "stopped" and smb["restarts"] == 0


def test_the_supervisor_writes_the_keys_it_always_wrote(tmp_path):
    class FakeService:
        pid = 4242

    sup = Supervisor(tmp_path / "data", tmp_path)
    sup.spec = ExportSpec("nfs", "pacs", NfsOptions(clients=(NfsClient("10.0.0.0/8"),)))
    sup.mount = exportmount.MountRef("pacs", 1, 1, "/mnt/pacs", 7, "fuse.sofs", "sofs:pacs")
    sup.service = FakeService()
    sup._state("starting")
    first = json.loads((tmp_path / "state.json").read_text())
    assert set(first) == set(json.loads(OLD_STATE)) - {"probe_ok", "probe_at", "probe_took",
                                                        "probe_message"}
    sup.last_probe = ProbeResult(True, 1718000003.5, 0.1234567, "fine")
    sup._state("running")
    st = json.loads((tmp_path / "state.json").read_text())
    assert set(st) == set(json.loads(OLD_STATE))
    assert st["probe_took"] == 0.123 and st["service_pid"] == 4242 and st["state"] == "running"


# --- strict: unknown fields and wrong types are refused, naming the file and the field ----------

def _spec_with(**options: object) -> dict:
    doc = json.loads(OLD_NFS_SPEC)
    doc["options"].update(options)
    return doc


@pytest.mark.parametrize("doc, message", [
    ({**json.loads(OLD_NFS_SPEC), "owner": "x"}, "has unknown field(s): owner"),
    (_spec_with(sqush="no_root_squash"), "options has unknown field(s): sqush"),
    (_spec_with(port="2049"), "options.port must be an integer, not the string '2049'"),
    (_spec_with(port=True), "options.port must be an integer, not true"),
    (_spec_with(port=2049.0), "options.port must be an integer, not the number 2049.0"),
    (_spec_with(grace=None), "options.grace must be an integer, not null"),
    (_spec_with(read_only=1), "options.read_only must be true or false, not the number 1"),
    (_spec_with(mount_port=False), "options.mount_port must be an integer or null, not false"),
    (_spec_with(clients="10.0.0.0/8"), "options.clients must be an array"),
    (_spec_with(clients=[["10.0.0.0/8", "RW"], ["10.1.0.0/16"]]),
     "options.clients[1] must be a [CIDR, access] pair"),
    (_spec_with(bind=None), "options.bind must be a string, not null"),
    ({**json.loads(OLD_NFS_SPEC), "created": True}, "created must be a number, not true"),
    ({**json.loads(OLD_NFS_SPEC), "kind": "afp"}, "kind must be nfs or smb, not 'afp'"),
    ({**json.loads(OLD_NFS_SPEC), "volume": "a/b"}, "volume is invalid"),
    ({**json.loads(OLD_NFS_SPEC), "options": []}, "options must be a JSON object, not an array"),
    ({k: v for k, v in json.loads(OLD_NFS_SPEC).items() if k != "volume"}, "volume is missing"),
    ([], "must be a JSON object, not an array"),
])
def test_a_bad_spec_is_refused_naming_the_file_and_field(doc, message):
    with pytest.raises(ExportError) as ei:
        ExportSpec.from_json(doc, "/d/exports/pacs-nfs/spec.json")
    assert str(ei.value).startswith("/d/exports/pacs-nfs/spec.json: "), ei.value
    assert message in str(ei.value), ei.value


@pytest.mark.parametrize("users, message", [
    ([["radiology", True, 2001]], "options.users[0] must be a [name, uid, gid] triple"),
    ([["radiology", 2001]], "options.users[0] must be a [name, uid, gid] triple"),
    ([["radiology", 2001, 2001.5]], "options.users[0] must be a [name, uid, gid] triple"),
])
def test_bad_smb_users_are_refused(users, message):
    doc = json.loads(OLD_SMB_SPEC)
    doc["options"]["users"] = users
    with pytest.raises(ExportError, match=message.replace("[", r"\[")):
        ExportSpec.from_json(doc, "spec.json")
    doc["options"]["users"], doc["options"]["clients"] = [], []
    with pytest.raises(ExportError, match="options has unknown field.s.: clients"):
        ExportSpec.from_json(doc, "spec.json")  # NFS options in an SMB spec


@pytest.mark.parametrize("change, message", [
    ({"restarts": True}, "restarts must be an integer, not true"),
    ({"pid": "24631"}, "pid must be an integer or null, not the string '24631'"),
    ({"probe_ok": 1}, "probe_ok must be true, false or null, not the number 1"),
    ({"started": "now"}, "started must be a number or null"),
    ({"state": None}, "state must be a string, not null"),
    ({"healthy": True}, "has unknown field(s): healthy"),
])
def test_a_bad_state_is_refused_naming_the_file_and_field(tmp_path, change, message):
    edir = _edir(tmp_path, OLD_NFS_SPEC, json.dumps({**json.loads(OLD_STATE), **change}))
    with pytest.raises(ExportError) as ei:
        registry.read_state(edir)
    assert str(ei.value).startswith(f"{edir / 'state.json'}: "), ei.value
    assert message in str(ei.value), ei.value


def test_files_that_are_not_json_are_refused(tmp_path):
    edir = _edir(tmp_path, OLD_NFS_SPEC, '{"state": ')
    (edir / "spec.json").write_text(OLD_NFS_SPEC[:-20])  # cut short
    with pytest.raises(ExportError, match="spec.json: not JSON"):
        registry.load_spec(edir)
    with pytest.raises(ExportError, match="state.json: not JSON"):
        registry.read_state(edir)
    with pytest.raises(ExportError, match="no export here"):
        registry.load_spec(tmp_path / "nothing")


def test_options_must_match_the_kind():
    with pytest.raises(ExportError, match="options of an nfs export are NfsOptions"):
        ExportSpec("nfs", "pacs", SmbOptions())
    spec = ExportSpec("smb", "pacs", SmbOptions())
    with pytest.raises(ExportError, match="no NFS options"):
        _ = spec.nfs
    assert asdict(spec)["options"]["port"] == 445


def test_a_damaged_state_file_never_blocks_stopping_the_export(tmp_path):
    """`sofsctl umount` stops a volume's exports first: a damaged state.json must not make it
    refuse. The supervisor is then found by its command line (none runs here), the service by
    its pidfiles, and the state file is rewritten."""
    edir = _edir(tmp_path, OLD_NFS_SPEC, '{"state": "running", "pid": "not a pid"')
    with pytest.raises(ExportError):
        registry.read_state(edir)
    assert registry.stop_exports(tmp_path, "pacs") == []  # nothing runs: nothing to stop
    out = registry.stop_export(tmp_path, "pacs", "nfs")
    assert "was not running" in out and "state.json" in out and "rewritten" in out
    assert registry.read_state(edir).state == "stopped"
