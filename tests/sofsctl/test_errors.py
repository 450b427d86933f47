"""Expected conditions get a clear error, never a traceback (``python -m sofsctl`` as an admin
runs it): a data directory that is a file or holds no cluster, a volume whose metadata
database is damaged."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sofs.fs import Filesystem
from sofs.volume import volume_dir

from .cli import sofsctl

ROOT = Path(__file__).resolve().parents[2]




def no_traceback(res: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in res.stderr, res.stderr


@pytest.mark.parametrize("args", [["status"], ["volume", "list"], ["cluster", "init"],
                                  ["volume", "create", "x"], ["repair"], ["fsck", "x"]])
def test_a_data_directory_that_is_a_file(tmp_path, args):
    f = tmp_path / "file"
    f.write_text("not a directory")
    res = sofsctl(f, *args)
    no_traceback(res)
    assert res.returncode == 1 and f"the data directory {f} is not a directory" in res.stderr


def test_volume_list_where_there_is_no_cluster(tmp_path):
    res = sofsctl(tmp_path / "nothing-here", "volume", "list")
    no_traceback(res)
    assert res.returncode == 1 and "no cluster at" in res.stderr
    assert "sofsctl cluster init" in res.stderr


def test_fsck_and_file_info_on_damaged_metadata(tmp_path):
    data = tmp_path / "data"
    assert sofsctl(data, "cluster", "init", "--disks", "3").returncode == 0
    assert sofsctl(data, "volume", "create", "pacs", "--cos", "1").returncode == 0
    from chunkstore.ring.open import open_ring
    ring = open_ring(data, instance="test")
    try:
        fs = Filesystem.open_volume(data, "pacs", ring)
        fh, _ = fs.create(1, b"f.dcm", 0o644, os.O_WRONLY)
        fs.write(fh, 0, b"x" * 1000)
        fs.release(fh)
        fs.close()
    finally:
        ring.close()
    meta = volume_dir(data, "pacs") / "meta"
    tables = sorted(meta.glob("*.sst"))
    assert tables, "the close flushed the memtable to a table file"
    for t in tables:  # damage every table's first block
        with open(t, "r+b") as f:
            f.seek(64)
            f.write(os.urandom(256))
    for args in (["fsck", "pacs"], ["file", "info", "pacs:/f.dcm"],
                 ["chunk", "which", "00" * 20]):
        res = sofsctl(data, *args)
        no_traceback(res)
        assert "the metadata database failed" in res.stderr + res.stdout, (args, res.stderr)
        assert "sofsctl volume restore" in res.stderr + res.stdout
