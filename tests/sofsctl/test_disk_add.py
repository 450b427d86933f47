"""``sofsctl disk add`` on an embedded ring (admin-review F41): the disk directory is
initialised, cluster.json and ring.json grow by the disk, the pieces whose owners changed move
to them at once (through the mount process when a volume is mounted); refused for a
directory, id or weight that cannot be a new disk; a re-run after a crash finishes what was started. The networked form
(``ID --node NODE``) is unchanged, and mixing the two forms says which one applies."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from chunkstore.disk.store import DiskStore
from chunkstore.placement.layout import CLUSTER_FILE, RING_FILE
from chunkstore.placement.ring import Ring
from chunkstore.ring.localcluster import init_local_cluster, load_config, load_ring
from tests.fuse_mount.conftest import Archive, needs_fuse
from tests.sofsctl.cli import make_embedded_ring, sofsctl


def misplaced(data: Path) -> tuple[dict[str, int], list[str]]:
    """(pieces per disk, problems): every piece must sit on an owner of its chunk per the
    ring file under the fragment index that owner holds, and every owner must hold its piece
    (read and verified here, straight from the disk stores)."""
    cfg, ring = load_config(data), Ring(load_ring(data))
    held: dict[bytes, set[tuple[str, int]]] = {}
    policies = {}
    per_disk: dict[str, int] = {}
    for d in cfg.disks:
        store = DiskStore(cfg.disk_path(data, d.id))
        try:
            for p in store.pieces():
                store.get(p.key, p.frag_idx)  # verifies the checksum
                held.setdefault(p.key, set()).add((d.id, p.frag_idx))
                policies[p.key] = p.policy.policy()
                per_disk[d.id] = per_disk.get(d.id, 0) + 1
        finally:
            store.close()
    problems = []
    for key, where in held.items():
        pol = policies[key]
        owners = ring.owners(key, pol.width)
        want = {(owners[i], pol.piece_index(i)) for i in range(pol.width)}
        if where != want:
            problems.append(f"{key.hex()[:12]}: has {sorted(where)}, owners {sorted(want)}")
    return per_disk, problems


def _files(a: Archive) -> dict[str, bytes]:
    files = {"ct/slice1.dcm": os.urandom(300_000), "ct/slice2.dcm": os.urandom(20_000),
             "mg/view.dcm": os.urandom(9 << 20), "small.txt": b"x" * 100}
    (a.mnt / "ct").mkdir()
    (a.mnt / "mg").mkdir()
    for name, body in files.items():
        (a.mnt / name).write_bytes(body)
    return files


@pytest.mark.integration
@needs_fuse
def test_disk_add_moves_a_volumes_data_onto_the_new_disk_online_and_offline(tmp_path):
    a = Archive(tmp_path)
    try:
        a.mount()
        files = _files(a)
        # online: the mount process holds the ring; it adds the disk and rebalances while the
        # volume stays mounted and readable
        res = sofsctl(a.data, "disk", "add")
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"disk d6 added: {a.data / 'disks' / 'd6'}" in res.stdout
        assert "rebalanced: " in res.stdout and "all chunks on their owners" in res.stdout
        assert "rebalancing" not in res.stderr  # no progress bar without a terminal
        for name, body in files.items():
            assert (a.mnt / name).read_bytes() == body, name
        (a.mnt / "after-d6.dcm").write_bytes(later := os.urandom(5 << 20))
        a.umount()
        per_disk, problems = misplaced(a.data)
        assert not problems, problems
        assert per_disk.get("d6", 0) > 0

        res = sofsctl(a.data, "disk", "add")  # offline
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"disk d7 added: {a.data / 'disks' / 'd7'}" in res.stdout
        assert [d.id for d in load_config(a.data).disks] == [f"d{i}" for i in range(8)]
        per_disk, problems = misplaced(a.data)
        assert not problems, problems
        assert per_disk.get("d7", 0) > 0
        rep = sofsctl(a.data, "repair")
        assert rep.returncode == 0, rep.stdout + rep.stderr
        assert "pieces rebuilt: 0 (0 B)" in rep.stdout and "pieces removed: 0" in rep.stdout

        a.mount()
        for name, body in {**files, "after-d6.dcm": later}.items():
            assert (a.mnt / name).read_bytes() == body, name
        a.umount()
    finally:
        a.cleanup()


def test_the_refusals_change_nothing(tmp_path):
    data = make_embedded_ring(tmp_path / "data")
    before = (data / CLUSTER_FILE).read_bytes(), (data / RING_FILE).read_bytes()
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("keep me")
    init_local_cluster(tmp_path / "other", disks=1)
    cases = [
        (("--path", str(data / "disks" / "d2")), "is already used by disk d2"),
        (("--path", str(full)), "is not empty and is not a sofs disk"),
        (("d6", "--path", str(tmp_path / "other" / "disks" / "d0")), "of another cluster"),
        (("--weight", "0"), "bad weight"),
        (("--weight", "-1"), "--weight"),
        (("d4",), "disk d4 is already in the cluster"),
        (("d7", "--node", "n1"), "--node: for a networked ring"),
    ]
    for args, why in cases:
        res = sofsctl(data, "disk", "add", *args)
        assert res.returncode != 0, (args, res.stdout)
        assert why in res.stderr, (args, res.stderr)
    assert ((data / CLUSTER_FILE).read_bytes(), (data / RING_FILE).read_bytes()) == before
    assert not (data / "disks" / "d6").exists() and not (data / "disks" / "d7").exists()
    assert (full / "notes.txt").read_text() == "keep me"


def test_a_rerun_after_a_crash_before_cluster_json_accepts_the_directory(tmp_path):
    data = make_embedded_ring(tmp_path / "data")
    DiskStore.initialise(data / "disks" / "d6", load_config(data).cluster_id, "d6")
    res = sofsctl(data, "disk", "add")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "disk d6 added" in res.stdout and "already initialised: accepted" in res.stdout
    assert not misplaced(data)[1]


def test_no_rebalance_then_a_crash_before_ring_json_then_a_rerun_finishes(tmp_path):
    data = make_embedded_ring(tmp_path / "data")
    old_ring = (data / RING_FILE).read_bytes()
    res = sofsctl(data, "disk", "add", "--no-rebalance", "--weight", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "not rebalanced (--no-rebalance)" in res.stdout and "sofsctl repair" in res.stdout
    assert misplaced(data)[1]  # owners changed, nothing moved yet
    st = sofsctl(data, "status")
    assert "degraded" in st.stdout and "run: sofsctl repair" in st.stderr, st.stdout + st.stderr
    (data / RING_FILE).write_bytes(old_ring)  # as if stopped right after cluster.json
    res = sofsctl(data, "disk", "add")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "disk d6: completing the disk add" in res.stdout
    assert "rebalanced: " in res.stdout
    assert [d.id for d in load_config(data).disks][-1] == "d6"  # no d7 added
    assert json.loads((data / RING_FILE).read_text())["devices"][-1]["weight"] == 2.0
    per_disk, problems = misplaced(data)
    assert not problems and per_disk.get("d6", 0) > 0


@pytest.mark.integration
def test_a_mounted_drive_given_by_path_is_recorded_as_its_own_filesystem(tmp_path):
    data = make_embedded_ring(tmp_path / "data")
    drive = tmp_path / "drive7"
    drive.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(drive)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs as a new drive: {res.stderr.strip()}")
    try:
        res = sofsctl(data, "disk", "add", "d7", "--path", str(drive))
        assert res.returncode == 0, res.stdout + res.stderr
        assert "its own filesystem" in res.stdout
        disk = load_config(data).disk("d7")
        assert disk.own_fs and disk.path == str(drive)
        per_disk, problems = misplaced(data)
        assert not problems and per_disk.get("d7", 0) > 0
    finally:
        subprocess.run(["umount", "-l", str(drive)], capture_output=True)


def test_a_networked_ring_keeps_its_form_and_says_so(tmp_path):
    data = tmp_path / "data"
    assert sofsctl(data, "cluster", "create").returncode == 0
    res = sofsctl(data, "disk", "add", "--path", str(tmp_path / "d"))
    assert res.returncode == 1 and "sofsctl disk add ID --node NODE" in res.stderr, res.stderr
    res = sofsctl(data, "disk", "add", "n1.d3")
    assert res.returncode == 1 and "--node NODE" in res.stderr, res.stderr
    res = sofsctl(data, "disk", "add", "n1.d3", "--node", "n1")
    assert res.returncode == 1 and "n1" in res.stderr  # the map change itself: no such node
