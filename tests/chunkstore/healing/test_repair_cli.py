"""``sofsctl repair`` as an admin runs it: a vanished disk directory is left out, not re-created,
until ``--init-disk ID`` (F31)."""

from __future__ import annotations

import os
import shutil

from click.testing import CliRunner

from chunkstore.ring.local import LocalRing
from sofsctl.main import cli


def test_repair_leaves_a_missing_disk_out_until_told(tmp_path, protection):
    data = tmp_path / "data"

    def run(*args: str):
        return CliRunner().invoke(cli, ["--data-dir", str(data), *args])

    assert run("cluster", "init", "--disks", "6").exit_code == 0
    with LocalRing.open(data) as ring:
        ref = ring.put(os.urandom(300_000), protection)
    shutil.rmtree(data / "disks" / "d5")
    res = run("repair")
    assert res.exit_code == 5, res.output
    assert f"left out: disk d5: its directory {data / 'disks' / 'd5'}" in res.output
    assert "--init-disk d5" in res.output and "all chunks fully protected" not in res.output
    assert not (data / "disks" / "d5").exists()
    assert run("repair", "--init-disk", "d9").exit_code == 1
    res = run("repair", "--init-disk", "d5")
    assert res.exit_code == 0, res.output
    assert "all chunks fully protected" in res.output
    with LocalRing.open(data) as ring:
        assert ring.unavailable_disks() == {}
        assert ring.get(ref)
