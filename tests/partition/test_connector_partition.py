"""A connector cut off from the cluster or paused, its volume taken over by a standby (issue 13,
scenarios 1 and 2), with real
processes in network namespaces (tests/netlab.py): etcd in one, each storage node in its own,
and two connectors (FUSE mounts) in two more.

A client writes files throughout (a history of those acknowledged), first through connector a,
while connector b stands by (``mount --standby``). a's link goes down: it reaches neither the
nodes nor etcd, and every write tried on it fails (none is acknowledged). Once a's lease has
run out, b takes the volume over by itself; the client fails over to b and goes on. The
partition heals: each late write, delete and rename a tries is refused (counted), none of them
reaches b, and every acknowledged file of the history reads byte-identical on b.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sys
import threading
import time

import pytest

from tests.etcdnet import etcd_cluster, kill_and_unmount, mount_pid, wait_until, write_synced
from tests.netcluster import sofsctl

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0,
                                 reason="FUSE mounts need /dev/fuse and root"),
              pytest.mark.skipif(shutil.which("etcd") is None,
                                 reason="etcd not installed (scripts/install)")]

TTL = 3
SOFSCTL = [sys.executable, "-m", "sofsctl"]


def _in(host, data_dir, *args: str, timeout: float = 180):
    res = host.run([*SOFSCTL, "--data-dir", str(data_dir), *args], capture_output=True,
                   text=True, timeout=timeout)
    assert res.returncode == 0, f"sofsctl {' '.join(args)}: {res.stdout}{res.stderr}"
    return res




def _refused(attempts) -> int:
    """How many of the changes fail (each must fail with EIO or EROFS, never succeed)."""
    n = 0
    for attempt in attempts:
        try:
            attempt()
        except OSError as e:
            assert e.errno in (errno.EIO, errno.EROFS), e
            n += 1
    return n


class History:
    """A PACS-like client writing files through whichever connector serves the volume, and
    keeping the history of those acknowledged (fsync and close returned) and refused."""

    def __init__(self, target, prefix: str = "h") -> None:
        self.target = target
        self.prefix = prefix
        self.acked: dict[str, bytes] = {}
        self.refused = 0
        self.longest = 0.0  # the longest a refused write took (s): an answer, never a hang
        self.stop = threading.Event()
        self._n = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            name = f"{self.prefix}{self._n:05d}.dcm"
            data = os.urandom(2000 + self._n % 5000)
            self._n += 1
            t0 = time.monotonic()
            try:
                write_synced(self.target / name, data)
            except OSError as e:
                assert e.errno in (errno.EIO, errno.EROFS), e
                self.refused += 1
                self.longest = max(self.longest, time.monotonic() - t0)
                time.sleep(0.2)
                continue
            self.acked[name] = data

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=120)
        assert not self.thread.is_alive(), "a write hung"


def test_a_cut_off_connector_is_taken_over_by_a_standby_and_fenced(tmp_path, netlab):
    mounts, pids = [], []
    history = None
    with etcd_cluster(tmp_path, nodes=3, disks=1, lab=netlab) as (_, _client, net):
        try:
            host_a, host_b = netlab.add_host("conn_a"), netlab.add_host("conn_b")
            a, b = net.client_dir("a"), net.client_dir("b")
            mnt_a, mnt_b = tmp_path / "mnt-a", tmp_path / "mnt-b"
            mnt_a.mkdir()
            mnt_b.mkdir()
            sofsctl(a, "volume", "create", "pacs", "--cos", "2")
            _in(host_a, a, "mount", "pacs", str(mnt_a), "--lease-ttl", str(TTL),
                "--checkpoint-interval", "3600")
            mounts.append(mnt_a)
            pids.append(mount_pid(a))
            res = _in(host_b, b, "mount", "pacs", str(mnt_b), "--standby", "--lease-ttl",
                      str(TTL))
            assert "standby" in res.stdout, res
            history = History(mnt_a)
            wait_until(lambda: len(history.acked) >= 20, "20 files acknowledged on a")
            os.rename(mnt_a / "h00000.dcm", mnt_a / "renamed.dcm")
            history.acked["renamed.dcm"] = history.acked.pop("h00000.dcm")

            host_a.link_down()  # a reaches neither the nodes nor etcd
            wait_until(lambda: os.path.ismount(mnt_b), "the standby to take over", timeout=90)
            mounts.append(mnt_b)
            pids.append(mount_pid(b))
            acked_on_a = len(history.acked)
            history.target = mnt_b  # the PACS fails over to the new connector
            wait_until(lambda: len(history.acked) >= acked_on_a + 10,
                       "files acknowledged on b", timeout=60)

            host_a.link_up()
            late = _refused([
                lambda: write_synced(mnt_a / "late.dcm", b"a late write of a"),
                lambda: write_synced(mnt_a / "h00001.dcm", b"overwritten by a"),
                lambda: os.unlink(mnt_a / "h00002.dcm"),
                lambda: os.rename(mnt_a / "h00003.dcm", mnt_a / "moved.dcm"),
                lambda: os.mkdir(mnt_a / "late-dir"),
            ])
            history.finish()  # the write a was cut off in is refused by now
            assert late == 5 and history.refused >= 1, (late, history.refused)
            wait_until(lambda: "read-only" in sofsctl(a, "status", check=False).stdout,
                       "connector a to report it lost the volume", timeout=30)
            for name, data in history.acked.items():
                assert (mnt_b / name).read_bytes() == data, name
            for name in ("late.dcm", "moved.dcm", "late-dir"):
                assert not (mnt_b / name).exists(), name
            print(f"\n{len(history.acked)} files acknowledged and read back on the new owner; "
                  f"{history.refused} refused on the cut-off connector (the longest took "
                  f"{history.longest:.1f} s), {late} late changes refused after the partition "
                  "healed")
            sofsctl(b, "umount", str(mnt_b))
            mounts.remove(mnt_b)
        finally:
            if history is not None:
                history.stop.set()
            kill_and_unmount(pids, mounts)


def test_a_paused_connector_is_taken_over_by_a_standby_and_fenced(tmp_path, netlab):
    """Scenario 2: the active connector is paused (SIGSTOP) past its lease, mid-history; the
    standby takes over and the client goes on there; woken up (SIGCONT), the old connector
    acknowledges nothing more, and every acknowledged file reads byte-identical on the new
    owner."""
    mounts, pids, histories = [], [], []
    with etcd_cluster(tmp_path, nodes=3, disks=1, lab=netlab) as (_, _client, net):
        try:
            host_a, host_b = netlab.add_host("conn_a"), netlab.add_host("conn_b")
            a, b = net.client_dir("a"), net.client_dir("b")
            mnt_a, mnt_b = tmp_path / "mnt-a", tmp_path / "mnt-b"
            mnt_a.mkdir()
            mnt_b.mkdir()
            sofsctl(a, "volume", "create", "pacs", "--cos", "2")
            _in(host_a, a, "mount", "pacs", str(mnt_a), "--lease-ttl", str(TTL),
                "--checkpoint-interval", "3600")
            mounts.append(mnt_a)
            pids.append(mount_pid(a))
            _in(host_b, b, "mount", "pacs", str(mnt_b), "--standby", "--lease-ttl", str(TTL))
            on_a = History(mnt_a)
            histories.append(on_a)
            wait_until(lambda: len(on_a.acked) >= 20, "20 files acknowledged on a")
            os.kill(pids[0], signal.SIGSTOP)  # its writer hangs in a request meanwhile
            wait_until(lambda: os.path.ismount(mnt_b), "the standby to take over", timeout=90)
            mounts.append(mnt_b)
            pids.append(mount_pid(b))
            on_b = History(mnt_b, prefix="b")
            histories.append(on_b)
            wait_until(lambda: len(on_b.acked) >= 10, "files acknowledged on b", timeout=60)
            acked_on_a = len(on_a.acked)
            os.kill(pids[0], signal.SIGCONT)
            wait_until(lambda: on_a.refused >= 3, "a's writes to be refused", timeout=60)
            late = _refused([lambda: os.unlink(mnt_a / "h00002.dcm"),
                             lambda: os.rename(mnt_a / "h00003.dcm", mnt_a / "moved.dcm")])
            for h in histories:
                h.finish()
            assert late == 2 and len(on_a.acked) <= acked_on_a + 1, (late, acked_on_a)
            for h in histories:
                for name, data in h.acked.items():
                    assert (mnt_b / name).read_bytes() == data, name
            assert not (mnt_b / "moved.dcm").exists()
            assert (mnt_b / "h00002.dcm").exists()
            print(f"\n{len(on_a.acked)} + {len(on_b.acked)} files acknowledged on a and b "
                  f"read back on b; {on_a.refused} writes and {late} changes of the woken "
                  "connector refused")
            sofsctl(b, "umount", str(mnt_b))
            mounts.remove(mnt_b)
        finally:
            for h in histories:
                h.stop.set()
            kill_and_unmount(pids, mounts)
