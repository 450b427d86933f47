"""sofsctl as an admin uses it: help, exit codes, idempotent init, volume rules, status."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sofsctl.main import cli


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, ["--data-dir", str(tmp_path / "data"), *args])

    return invoke


def test_every_command_has_help(run):
    for cmd in ([], ["cluster", "init"], ["volume", "create"], ["volume", "list"], ["mount"],
                ["umount"], ["repair"], ["status"]):
        res = run(*cmd, "--help")
        assert res.exit_code == 0, (cmd, res.output)
        assert "Usage:" in res.output


def test_cluster_init_is_idempotent_and_refuses_a_different_shape(run, tmp_path):
    first = run("cluster", "init", "--disks", "6")
    assert first.exit_code == 0, first.output
    again = run("cluster", "init", "--disks", "6")
    assert again.exit_code == 0 and again.output == first.output
    other = run("cluster", "init", "--disks", "4")
    assert other.exit_code == 1
    cfg = json.loads((tmp_path / "data" / "cluster.json").read_text())
    assert len(cfg["disks"]) == 6


def test_volume_rules(run):
    assert run("volume", "create", "v").exit_code == 1  # no cluster yet
    run("cluster", "init", "--disks", "6")
    ok = run("volume", "create", "pacs", "--ec", "4+2")
    assert ok.exit_code == 0 and "ec4+2" in ok.output and "cos2" in ok.output
    assert run("volume", "create", "pacs").exit_code == 1  # exists
    assert run("volume", "create", "bad/name").exit_code == 1
    assert run("volume", "create", "wide", "--ec", "10+6").exit_code == 1  # 16 > 6 disks
    assert run("volume", "create", "both", "--ec", "4+2", "--cos", "1").exit_code == 1  # F5
    assert run("volume", "create", "junk", "--ec", "4+2:nope").exit_code == 1
    rep = run("volume", "create", "rep", "--cos", "2", "--compress", "none")
    assert rep.exit_code == 0 and "compression none" in rep.output
    listing = run("volume", "list")
    assert listing.exit_code == 0
    lines = listing.output.splitlines()
    assert lines[0].split()[:3] == ["NAME", "LARGE", "SMALL"]
    assert [line.split()[0] for line in lines[1:]] == ["pacs", "rep"]


def test_status_reports_disks_and_missing_ones(run, tmp_path):
    assert run("status").exit_code == 1  # no cluster: a clear error, no traceback
    run("cluster", "init", "--disks", "3")
    (tmp_path / "data" / "disks" / "d1").rename(tmp_path / "elsewhere")
    res = run("status")
    assert res.exit_code == 1 and res.output.startswith("HEALTH_WARN")  # a disk is missing
    rows = {line.split()[0]: line for line in res.output.splitlines() if line.startswith("d")}
    assert "MISSING" in rows["d1"] and " up " in rows["d0"]


def test_repair_on_an_empty_cluster(run):
    run("cluster", "init", "--disks", "6")
    res = run("repair")
    assert res.exit_code == 0, res.output
    assert "chunks checked: 0" in res.output


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "infinity"])
@pytest.mark.parametrize("option", ["--checkpoint-interval", "--down-after", "--rebuild-rate",
                                    "--gc-grace", "--gc-interval", "--scrub-interval"])
def test_mount_refuses_numbers_that_are_not_finite(run, tmp_path, option, value):
    """NaN passes every range check (each comparison with it is false): it used to be taken,
    and scheduled checkpoints never happened. Refused before anything starts."""
    (tmp_path / "mnt").mkdir()
    res = run("mount", "vol", str(tmp_path / "mnt"), option, value)
    assert res.exit_code == 2, res.output
    assert "is not a finite number" in res.output or "not in the range" in res.output
    assert not (tmp_path / "data" / "run").exists()


def test_umount_timeout_must_be_finite(run, tmp_path):
    res = run("umount", str(tmp_path), "--timeout", "nan")
    assert res.exit_code == 2 and "is not a finite number" in res.output


@pytest.mark.parametrize("node_id, message", [
    ("a/b", "node id must match"), ("", "node id must match"), ("x" * 65, "node id must match"),
    ("x" * 62, "invalid disk id"),  # its disks would be named x...x.d0: over 64 characters
])
def test_node_init_refuses_ids_sofs_node_would_refuse_before_writing(run, tmp_path, node_id,
                                                                     message):
    assert run("cluster", "create").exit_code == 0
    res = run("node", "init", str(tmp_path / "node"), "--node-id", node_id,
              "--listen", "127.0.0.1:7700")
    assert res.exit_code == 1, res.output
    assert message in res.output
    assert not (tmp_path / "node").exists()


@pytest.mark.parametrize("listen", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", "[::1]:x"])
def test_node_init_refuses_a_bad_listen_address(run, tmp_path, listen):
    assert run("cluster", "create").exit_code == 0
    res = run("node", "init", str(tmp_path / "node"), "--node-id", "n1", "--listen", listen)
    assert res.exit_code == 1 and "host:port" in res.output, res.output
    assert not (tmp_path / "node").exists()


@pytest.mark.parametrize("cmd", [["mount", "Pacs", "/tmp"], ["fsck", "pacz"],
                                 ["volume", "checkpoint", "pac"], ["volume", "show", "PACS"]])
def test_a_wrong_volume_name_lists_the_volumes_and_the_closest(run, cmd):
    assert run("cluster", "init", "--disks", "3").exit_code == 0
    assert run("volume", "create", "pacs", "--cos", "1").exit_code == 0
    assert run("volume", "create", "reports", "--cos", "1").exit_code == 0
    res = run(*cmd)
    assert res.exit_code == 1, res.output
    assert f"no volume {cmd[-2] if cmd[0] == 'mount' else cmd[-1]!r}; volumes: pacs, reports " \
           "(did you mean 'pacs'?)" in res.output


@pytest.mark.parametrize("args, message", [
    (["--cos", "0"], "survives no disk loss"),
    (["--ec", "4-2"], "--ec takes K+M"),
    (["--ec", "8+3"], "choose at most 6 pieces (4+2, 3+3, 2+4, or --cos 5)"),
    (["--ec", "4+2", "--cos", "2"], "choose either --ec or --cos"),  # exit 1, as documented
])
def test_volume_create_guard_rails(run, tmp_path, args, message):
    assert run("cluster", "init", "--disks", "6").exit_code == 0
    res = run("volume", "create", "v", *args)
    assert res.exit_code == 1, res.output
    assert message in res.output
    assert not (tmp_path / "data" / "volumes" / "v").exists()


def test_a_single_copy_volume_needs_the_flag(run):
    assert run("cluster", "init", "--disks", "3").exit_code == 0
    res = run("volume", "create", "scratch", "--cos", "0", "--yes-i-really-mean-it")
    assert res.exit_code == 0 and "cos0" in res.output, res.output


def test_data_dir_after_the_command_is_taken(tmp_path):
    import subprocess
    import sys

    from sofsctl.main import data_dir_first
    assert data_dir_first(["status", "--data-dir", "/x"]) == ["--data-dir", "/x", "status"]
    assert data_dir_first(["volume", "list", "--data-dir=/x"]) == ["--data-dir=/x", "volume",
                                                                    "list"]
    assert data_dir_first(["--data-dir", "/x", "status"]) == ["--data-dir", "/x", "status"]
    res = subprocess.run([sys.executable, "-m", "sofsctl", "cluster", "init", "--disks", "3",
                          "--data-dir", str(tmp_path / "d")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "d" / "cluster.json").is_file()
