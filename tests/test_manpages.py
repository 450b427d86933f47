"""The man pages against the code: every sofsctl command has its section in sofsctl(8) and
every option is in it; every key of every file sofs writes or reads is in sofs-files(5)
(node.json in sofs-node(8) too) with the default the code really takes, found by writing
each file with the code and reading it back without the key; every page renders without a
groff warning; every sofs page a page refers to exists."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import click
import pytest

from chunkstore.authority import binding
from chunkstore.disk.marker import MARKER_NAME
from chunkstore.healing.healer import Healer
from chunkstore.net import node as node_daemon
from chunkstore.net.fences import FENCES_FILE, FenceBook
from chunkstore.net.nodeconfig import Limits, NodeConfig
from chunkstore.placement.clustermap import ClusterMap
from chunkstore.placement.layout import DISKS_DIR, HEALER_STATE_FILE
from chunkstore.placement.ring import RingBuilder
from chunkstore.ring.localcluster import ClusterConfig, DiskConfig, init_local_cluster
from chunkstore.ring.open import open_ring
from exporters.exportspec import ExportSpec, NfsClient, NfsOptions, SmbAccount, SmbOptions
from exporters.exportstate import ExportState
from exporters.supervisor import PROBE_INTERVAL_S
from fuse_mount.runstate import MountState
from sofs.checkpoint_records import CopyState
from sofs.snapshot import catalog as snapshot_catalog
from sofs.snapshot import schedule as snapshot_schedule
from sofs.volume import VolumeConfig
from sofsctl.common import DEFAULT_HOME_ROOT
from sofsctl.main import cli

ROOT = Path(__file__).resolve().parent.parent
MAN = ROOT / "man"
UNITS = ROOT / "scripts" / "systemd"
MISSING = object()  # a key with no default: required, or not read back at all


# --- reading troff source ----------------------------------------------------------------------

_ESCAPES = [(r"\-", "-"), (r"\(dq", '"'), (r"\(oq", "'"), (r"\(cq", "'"), (r"\e", "\\"),
            (r"\&", ""), (r"\c", ""), (r"\%", ""), (r"\ ", " ")]


def _plain(line: str) -> str:
    """One troff source line as the words it prints (macro names, quotes, fonts dropped)."""
    line = re.sub(r"\\f[BIRP]", "", line)
    if line.startswith("."):
        macro, _, rest = line.partition(" ")
        args = [a for a in re.findall(r'"([^"]*)"|(\S+)', rest)]
        words = [quoted or bare for quoted, bare in args]
        glue = "" if macro in (".BR", ".RB", ".IR", ".RI", ".BI", ".IB") else " "
        line = glue.join(words)
    for esc, text in _ESCAPES:
        line = line.replace(esc, text)
    return line


def _sections(page: Path) -> dict[tuple[str, str], list[str]]:
    """(SH title, SS title or "") -> the source lines under it."""
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    sh = ss = ""
    for line in page.read_text().splitlines():
        if line.startswith(".SH "):
            sh, ss = _plain(line), ""
        elif line.startswith(".SS "):
            ss = _plain(line)
        else:
            out[(sh, ss)].append(line)
    return out


_BREAKS = (".TP", ".RS", ".RE", ".PP", ".IP", ".SS", ".SH", ".br")


def _entries(lines: list[str]) -> dict[str, list[str]]:
    """Key -> the plain text of each ``.TP`` entry whose tag line starts with that key."""
    out: dict[str, list[str]] = defaultdict(list)
    i = 0
    while i < len(lines):
        if lines[i] == ".TP" and i + 1 < len(lines):
            tag = _plain(lines[i + 1]).split()
            body = []
            j = i + 2
            while j < len(lines) and not lines[j].startswith(_BREAKS):
                body.append(_plain(lines[j]))
                j += 1
            if tag:
                out[tag[0].rstrip(",")].append(" ".join(body))
            i = j
        else:
            i += 1
    return out


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


# --- sofsctl(8): commands and options ----------------------------------------------------------

def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        if cmd.hidden:
            continue
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path + (name,))
        else:
            yield " ".join(path + (name,)), cmd


COMMANDS = dict(_commands(cli))
OPTIONS = [(name, opt) for name, cmd in COMMANDS.items() for p in cmd.params
           if isinstance(p, click.Option) and not p.hidden
           for opt in (*p.opts, *p.secondary_opts) if opt.startswith("--")]
SOFSCTL = _sections(MAN / "sofsctl.8")


def _synopsis_of(command: str) -> str:
    """The SYNOPSIS lines of sofsctl(8) that show COMMAND, as plain text."""
    entries, cur = [], []
    for line in SOFSCTL[("SYNOPSIS", "")]:
        if line in (".br", ".PP"):
            entries.append(" ".join(cur))
            cur = []
        elif not line.startswith((".nh", ".hy")):
            cur.append(_plain(line))
    entries.append(" ".join(cur))
    return "\n".join(e for e in entries if re.match(rf"sofsctl {re.escape(command)}(?![\w-])", e))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_a_section_in_sofsctl_8(command):
    if ("COMMANDS", command) not in SOFSCTL:
        pytest.fail(f'sofsctl {command} has no .SS "{command}" under .SH COMMANDS in '
                    "man/sofsctl.8")


@pytest.mark.parametrize("command,option", OPTIONS, ids=[f"{c} {o}" for c, o in OPTIONS])
def test_every_option_is_in_its_command_section_or_synopsis(command, option):
    section = " ".join(_plain(line) for line in SOFSCTL.get(("COMMANDS", command), []))
    assert _mentions(section, option) or _mentions(_synopsis_of(command), option), (
        f"sofsctl {command} {option} is in neither its section nor the SYNOPSIS of sofsctl(8)")


@pytest.mark.parametrize("option", [o for p in cli.params if isinstance(p, click.Option)
                                    for o in p.opts if o.startswith("--")])
def test_global_options_are_in_sofsctl_8(option):
    text = " ".join(_plain(line) for line in SOFSCTL[("OPTIONS", "")])
    assert _mentions(text, option)


# --- sofs-files(5) and sofs-node(8): keys and defaults from the code ---------------------------

def _json_text(value: object) -> str | None:
    """How the pages write a default: JSON's words, integral numbers without ".0"; None for
    values the pages describe in words (lists, objects)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value or '""'
    return None


def _defaults(doc: dict, read, attr=lambda obj, key: getattr(obj, key)) -> dict[str, object]:
    """Key -> the default READ takes when the key is left out of DOC (MISSING if READ refuses
    the document without it)."""
    out: dict[str, object] = {}
    for key in doc:
        try:
            obj = read({k: v for k, v in doc.items() if k != key})
        except Exception:
            out[key] = MISSING
        else:
            out[key] = attr(obj, key)
    return out


def _file_keys(tmp: Path) -> dict[str, dict[str, object]]:
    """sofs-files(5) section -> key -> default, each file written and read by the code."""
    keys: dict[str, dict[str, object]] = {}

    cfg = ClusterConfig("c1", 6, (DiskConfig("d0", "disks/d0"),))
    doc = json.loads(cfg.to_json())
    disk = doc["disks"][0]

    def read_disk(d):
        return ClusterConfig.from_json(json.dumps({**doc, "disks": [d]})).disks[0]
    keys["cluster.json"] = {**_defaults(doc, lambda d: ClusterConfig.from_json(json.dumps(d))),
                            **_defaults(disk, read_disk)}

    builder = RingBuilder(6)
    builder.add_device("d0", host="local")
    ring = json.loads(builder.build().to_json())
    keys["ring.json"] = {k: MISSING for k in [*ring, *ring["devices"][0]]}

    cmap = ClusterMap.create("c1").add_node("n1", "10.0.0.1:7700").add_disk("n1.d0", "n1", 1.0)
    m = json.loads(cmap.to_json())
    keys["clustermap.json"] = {k: MISSING for k in [*m, *m["nodes"][0], *m["disks"][0]]}

    minimal = {"node_id": "n1", "secret_file": "s", "disks": [{"id": "d0", "path": "d0"}]}
    node = NodeConfig.from_dict(minimal, base="")
    node_keys: dict[str, object] = {k: MISSING for k in minimal}
    node_keys.update(id=MISSING, path=MISSING)
    for key in sorted(NodeConfig.__dataclass_fields__):
        if key not in minimal and key != "limits":
            node_keys[key] = getattr(node, key)
    node_keys["limits"] = MISSING  # an object: its keys follow
    node_keys.update({f.name: getattr(Limits(), f.name) for f in dataclasses.fields(Limits)})
    keys["node.json"] = node_keys

    bound = tmp / "bound"
    (bound / "pki").mkdir(parents=True)
    for name in ("ca.crt", "etcd-client.crt", "etcd-client.key"):
        (bound / "pki" / name).write_text("")
    binding.write(bound, "10.0.0.1:2379")
    keys["etcd.json"] = {k: MISSING for k in json.loads((bound / binding.BINDING_FILE).read_text())}

    FenceBook(str(tmp / FENCES_FILE)).raise_to(bytes(16), 1)
    keys["fences.json"] = {k: MISSING for k in json.loads((tmp / FENCES_FILE).read_text())}

    state = tmp / "node-state.json"
    node_daemon._write_state(str(state), 7700, "127.0.0.1", "n1")
    keys["the node state file"] = {k: MISSING for k in json.loads(state.read_text())}

    data = tmp / "data"
    init_local_cluster(data, disks=1, vnodes=1)
    marker = data / DISKS_DIR / "d0" / MARKER_NAME
    keys["DISK"] = {k: MISSING for k in json.loads(marker.read_text())}
    ringstore = open_ring(data)
    try:
        Healer(ringstore).close()
    finally:
        ringstore.close()
    keys["healer.json"] = {k: MISSING for k in json.loads((data / HEALER_STATE_FILE).read_text())}

    vol = json.loads(VolumeConfig(name="v", uuid="0" * 8 + "-0000-4000-8000-" + "0" * 12,
                                  created=1.0).to_json())
    keys["volume.json"] = _defaults(vol, lambda d: VolumeConfig.from_json(json.dumps(d)))
    keys["volume.json"]["version"] = MISSING

    cp = json.loads(CopyState(3, 2.0, 4, "ab").encode())
    keys["checkpoint.json"] = _defaults(cp, lambda d: CopyState.decode(json.dumps(d)))

    vdir = tmp / "volume"
    vdir.mkdir()
    snapshot_catalog.save(vdir, [snapshot_catalog.SnapshotInfo("s", 1, 2)])
    cat = json.loads(snapshot_catalog.catalog_path(vdir).read_text())
    entry = cat["snapshots"][0]
    keys["snapshots.json"] = {
        **{k: MISSING for k in cat},
        **_defaults(entry, lambda d: snapshot_catalog.SnapshotInfo.from_dict(d))}
    snapshot_schedule.save_schedule(vdir, snapshot_schedule.Keep(1, 1, 1, 1))
    sched = json.loads(snapshot_schedule.schedule_path(vdir).read_text())
    keys["snapshot-schedule.json"] = {
        **{k: MISSING for k in sched},
        **_defaults(sched["keep"], lambda d: snapshot_schedule.Keep(**d))}

    ms = dataclasses.asdict(MountState(pid=1, volume="v", mountpoint="/m", data_dir="/d"))
    keys["run/mounts/NAME.json"] = _defaults(ms, lambda d: MountState(**d))

    spec_keys: dict[str, object] = {}
    for spec in (ExportSpec("nfs", "v", NfsOptions(clients=(NfsClient("10.0.0.0/8"),),
                                                   mount_port=2050)),
                 ExportSpec("smb", "v", SmbOptions(users=(SmbAccount("u", 2001, 2001),)))):
        doc = spec.to_json()
        top = _defaults(doc, ExportSpec.from_json)
        top["options"] = MISSING
        spec_keys.update(top)

        def read_opts(o, doc=doc):
            return ExportSpec.from_json({**doc, "options": o}).options
        for k, v in _defaults(doc["options"], read_opts).items():
            spec_keys[f"{spec.kind}:{k}"] = v  # NFS and SMB have keys of the same name
    keys["exports/VOLUME-KIND/spec.json"] = spec_keys

    full = ExportState(state="running", message="m", pid=1, pid_start=2, kind="nfs", volume="v",
                       service="smbd", service_pid=3, bind="b", port=4, mountpoint="/m",
                       mount_pid=5, started=6.0, restarts=7, probe_failures=8, updated=9.0,
                       probe_ok=True, probe_at=10.0, probe_took=11.0, probe_message="p")
    keys["exports/VOLUME-KIND/state.json"] = _defaults(full.to_json(), ExportState.from_json)
    return keys


@pytest.fixture(scope="module")
def file_keys(tmp_path_factory):
    return _file_keys(tmp_path_factory.mktemp("files"))


FILES = _sections(MAN / "sofs-files.5")
FILE_SECTIONS = ["cluster.json", "ring.json", "clustermap.json", "etcd.json", "node.json", "fences.json",
                 "the node state file", "DISK", "healer.json", "volume.json", "checkpoint.json",
                 "snapshots.json", "snapshot-schedule.json", "run/mounts/NAME.json", "exports/VOLUME-KIND/spec.json",
                 "exports/VOLUME-KIND/state.json"]


def _section(sections, title: str) -> list[str]:
    found = [lines for (sh, ss), lines in sections.items() if ss == title]
    assert found, f"no .SS {title!r} in the page"
    return found[0]


def _check_keys(entries: dict[str, list[str]], keys: dict[str, object], where: str) -> list[str]:
    problems = []
    for key, default in keys.items():
        name = key.partition(":")[2] or key
        if name not in entries:
            problems.append(f"{where}: key {name} is not documented")
            continue
        text = _json_text(default) if default is not MISSING else None
        if text is not None and not any(
                re.search(rf"(?i:\bdefault) {re.escape(text)}(?!\w|\.\w)", e) for e in entries[name]):
            problems.append(f"{where}: key {name}: the code's default is {text}, the page "
                            f"says: {' / '.join(entries[name])}")
    return problems


@pytest.mark.parametrize("title", FILE_SECTIONS)
def test_sofs_files_5_documents_every_key_and_default(title, file_keys):
    problems = _check_keys(_entries(_section(FILES, title)), file_keys[title],
                           f"sofs-files(5) {title}")
    assert not problems, "\n".join(problems)


def test_sofs_node_8_documents_node_json(file_keys):
    lines = _sections(MAN / "sofs-node.8")[("CONFIGURATION", "")]
    keys = {k: v for k, v in file_keys["node.json"].items() if k not in ("id", "path")}
    problems = _check_keys(_entries(lines), keys, "sofs-node(8) CONFIGURATION")
    assert not problems, "\n".join(problems)


def _unit_environment() -> dict[str, str]:
    """Variable -> default: set by the units' Environment= (instance as NAME), or named in
    the example environment file."""
    env: dict[str, str] = {}
    for line in (UNITS / "sofs.default").read_text().splitlines():
        m = re.match(r"#?([A-Z_]+)=(.*)", line)
        if m:
            env.setdefault(m[1], m[2])
    for unit in sorted(UNITS.glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("Environment="):
                name, _, value = line.removeprefix("Environment=").partition("=")
                env[name] = value.replace("%i", "NAME")
    return env


def test_unit_environment_variables_are_in_sofs_files_5():
    env = _unit_environment()
    assert {"SOFS_HOME", "SOFS_MOUNTPOINT", "SOFS_NODE_CONFIG"} <= set(env)
    # the example file's values are the code's defaults
    assert env["SOFS_HOME"] == str(DEFAULT_HOME_ROOT)
    assert float(env["SOFS_EXPORT_PROBE_INTERVAL"]) == PROBE_INTERVAL_S
    entries: dict[str, list[str]] = defaultdict(list)
    for (sh, _ss), lines in FILES.items():
        if sh == "ENVIRONMENT FILES":
            for k, v in _entries(lines).items():
                entries[k] += v
    keys = {k: (v or "") for k, v in env.items()}
    problems = _check_keys(entries, keys, "sofs-files(5) ENVIRONMENT FILES")
    assert not problems, "\n".join(problems)


# --- every page -------------------------------------------------------------------------------

PAGES = sorted(p for p in MAN.iterdir() if re.fullmatch(r".+\.[1-9]", p.name))


@pytest.mark.skipif(shutil.which("man") is None, reason="man (man-db) is not installed")
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_renders_without_warnings(page):
    res = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True,
                         env=dict(os.environ, MANWIDTH="80"), timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", f"{page.name}: groff warns:\n{res.stderr}"
    text = re.sub(".\b", "", res.stdout)  # bold and underline as overstrikes
    assert text.splitlines()[2] == "NAME" and len(text.splitlines()) > 20, text[:500]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_sofs_pages_referred_to_exist(page):
    refs = re.findall(r"^\.BR (sofs[\w\\-]*) \((\d)\)", page.read_text(), re.M)
    refs += re.findall(r"man:(sofs[\w-]*)\((\d)\)",
                       " ".join(u.read_text() for u in UNITS.glob("sofs*")))
    missing = {f"{name.replace(chr(92), '')}({sec})" for name, sec in refs
               if not (MAN / f"{name.replace(chr(92), '')}.{sec}").exists()}
    assert not missing, f"{page.name} or a unit refers to missing pages: {sorted(missing)}"
