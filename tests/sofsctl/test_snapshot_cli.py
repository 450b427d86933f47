"""``sofsctl snapshot create|list|delete`` on a volume that is not mounted (the command opens
it itself; the mounted case is in tests/fuse_mount/test_snapshots.py)."""

from __future__ import annotations

import json

from .cli import sofsctl


def test_snapshot_commands_on_an_unmounted_volume(tmp_path):
    d = tmp_path
    assert sofsctl(d, "cluster", "init", "--disks", "6").returncode == 0
    assert sofsctl(d, "volume", "create", "pacs").returncode == 0
    res = sofsctl(d, "snapshot", "list", "pacs")
    assert res.returncode == 0 and "volume pacs has no snapshot" in res.stdout
    res = sofsctl(d, "snapshot", "create", "pacs", "before-upgrade")
    assert res.returncode == 0, res.stderr
    assert "snapshot before-upgrade of volume pacs taken" in res.stdout
    res = sofsctl(d, "snapshot", "create", "pacs")
    assert res.returncode == 0, res.stderr
    assert "snapshot @GMT-" in res.stdout
    rows = json.loads(sofsctl(d, "snapshot", "list", "--json", "pacs").stdout)
    assert [r["name"] for r in rows][0] == "before-upgrade"
    assert rows[1]["name"].startswith("@GMT-") and all(r["state"] == "ready" for r in rows)
    table = sofsctl(d, "snapshot", "list", "pacs").stdout
    assert table.splitlines()[0].split() == ["NAME", "CREATED", "METADATA"]
    res = sofsctl(d, "snapshot", "create", "pacs", "before-upgrade")
    assert res.returncode == 1 and "already" in res.stderr
    res = sofsctl(d, "snapshot", "create", "pacs", ".hidden")
    assert res.returncode == 1 and "bad snapshot name" in res.stderr
    res = sofsctl(d, "snapshot", "delete", "pacs", "before-upgrade")
    assert res.returncode == 0, res.stderr
    assert "snapshot before-upgrade of volume pacs deleted" in res.stdout
    res = sofsctl(d, "snapshot", "delete", "pacs", "before-upgrade")
    assert res.returncode == 1 and "no snapshot 'before-upgrade'" in res.stderr
    res = sofsctl(d, "snapshot", "list", "nope")
    assert res.returncode == 1
    assert len(json.loads(sofsctl(d, "snapshot", "list", "--json", "pacs").stdout)) == 1
