"""Orthanc (Debian ``orthanc``, a real PACS) storing studies on a WORM domain through the mount:
store, retrieve, commit, restart (with a remount), delete, store again.

Orthanc 1.10 cannot choose its bind address (it listens on 0.0.0.0), so it runs in a network
namespace of its own that has only a loopback interface (``unshare --net``: the namespace ends
with the process, nothing to remove); the test talks HTTP to it through sockets opened inside
that namespace (a short-lived thread ``setns()``-es into it, connects and hands the socket back).

Its ``StorageDirectory`` is a compliance WORM domain of the volume; its ``IndexDirectory`` (the
SQLite index) is on local disk. The index must never be inside a domain (it is rewritten on every
store and delete: the autocommit would freeze it and break Orthanc). Outside the domain on the
mount it works as well, but local disk is the sensible place: SQLite's small in-place page
writes and syncs are the worst load for a chunk store that writes every changed block as a new
chunk, its locks are only local to one node (pyfuse3 has no lock handlers), and the index is a
cache of the DICOM files (a lost one is rebuilt by storing the files again) while the files are
the archive. Orthanc writes a file once and never changes it or its mode, so the domain's
autocommit commits them; the test makes it due at once by stepping the mount's wall clock
(``SOFS_WALL_STEP_FILE``, chunkstore/clock.py) instead of waiting 5 minutes.

What Orthanc 1.10 does (observed): it stores each instance byte for byte as sent (xx/yy/<uuid>)
and serves it back the same; after a restart it finds everything. ``DELETE /studies/ID`` answers
200 ``{"RemainingAncestor": null}`` and drops the study from its index (404) although every unlink
was refused (EPERM, a "refused" warning per file in the mount log): its file storage ignores a
failed unlink, and its log only says ``Deleting attachment "<uuid>" of type 1`` at INFO level
(nothing at its default level). The files stay in the domain, byte-identical and committed;
storing them again brings the study back under the same Orthanc ids, as new attachments (new
files: the refused ones stay, retained, referenced by nothing).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from chunkstore.clock import WALL_STEP_ENV

from .conftest import Archive, needs_fuse, sofsctl, stop_pid

pytestmark = [pytest.mark.integration, needs_fuse]

DOMAIN = "/pacs/orthanc"
HTTP_PORT = 8042  # Orthanc's defaults: free by construction in its own empty namespace
DICOM_PORT = 4242
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture
def orthanc_installed() -> None:
    """Skip when Orthanc or the namespace tools are missing (scripts/install adds them)."""
    missing = [b for b in ("Orthanc", "unshare", "ip", "nsenter") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/install adds them)")


def _connect_in_netns(pid: int, port: int, timeout: float) -> socket.socket:
    """A TCP connection to 127.0.0.1:PORT of the network namespace of process PID."""
    socks: list[socket.socket] = []
    errors: list[OSError] = []

    def run() -> None:  # setns() moves this thread only; the socket stays in the namespace
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns: {os.strerror(err)}")
            finally:
                os.close(fd)
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=timeout))
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return socks[0]


class Orthanc:
    """One Orthanc server: its config in RUN_DIR, started in a loopback-only namespace."""

    def __init__(self, run_dir: Path, storage: Path, index: Path) -> None:
        self.run_dir = run_dir
        self.config = run_dir / "orthanc.json"
        self.log_path = run_dir / "orthanc.log"
        (run_dir / "tmp").mkdir()
        self.config.write_text(json.dumps({
            "Name": "sofs-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(index),
            "TemporaryDirectory": str(run_dir / "tmp"),
            "StorageCompression": False,
            "Plugins": [],
            "HttpPort": HTTP_PORT,
            "DicomPort": DICOM_PORT,
            "DicomAet": "SOFSTEST",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpCompressionEnabled": False,
            "WebDavEnabled": False,
            "KeepAlive": False,
            "SaveJobs": False,
        }, indent=2))
        self.proc: subprocess.Popen | None = None
        self.started = 0

    def start(self, timeout: float = 30) -> None:
        self.started += 1
        with open(self.log_path, "ab") as log:
            log.write(f"===== start {self.started}\n".encode())
            log.flush()
            # unshare execs sh, sh execs Orthanc: the pid is Orthanc's
            self.proc = subprocess.Popen(
                ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                 shutil.which("Orthanc") or "Orthanc", "--verbose", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"Orthanc exited ({self.proc.returncode}):\n{self.log()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.request("GET", "/system")[0] == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"Orthanc did not answer in {timeout}s:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_pid(self.proc.pid)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def links(self) -> list[str]:
        """The network interfaces of Orthanc's namespace."""
        assert self.proc is not None
        out = subprocess.run(["nsenter", f"--net=/proc/{self.proc.pid}/ns/net", "ip", "-o",
                              "link"], capture_output=True, text=True, check=True).stdout
        return [line.split(":")[1].strip() for line in out.splitlines()]

    def request(self, method: str, path: str, body: bytes | None = None
                ) -> tuple[int, bytes]:
        assert self.proc is not None
        conn = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=30)
        conn.sock = _connect_in_netns(self.proc.pid, HTTP_PORT, 30)
        try:
            headers = {"Content-Type": "application/dicom"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: bytes | None = None):
        status, data = self.request(method, path, body)
        assert status == 200, (method, path, status, data[:500])
        return json.loads(data)


def _dicom(sample: str, study_uid: str | None = None, series_uid: str | None = None,
           number: int = 1) -> bytes:
    """A pydicom sample file as bytes, moved into another study/series as a new instance if
    asked (the sample unchanged otherwise)."""
    path = get_testdata_file(sample)
    assert path is not None
    if study_uid is None:
        return Path(path).read_bytes()
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber = number
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def stepped_archive(tmp_path):
    """An archive whose mount's wall clock moves by the seconds written in the file named by
    its ``mount_env[WALL_STEP_ENV]``."""
    a = Archive(tmp_path, mount_env={WALL_STEP_ENV: str(tmp_path / "wall-step")})
    try:
        a.mount()
        yield a
    finally:
        a.cleanup()


def test_orthanc_keeps_its_studies_on_a_worm_domain_and_cannot_delete_them(
        orthanc_installed, stepped_archive, tmp_path):
    a = stepped_archive
    sofsctl(a.data, "worm", "domain", "create", a.volume, DOMAIN, "--mode", "compliance",
            "--default-retention", "10y", "--autocommit", "5m")
    storage = a.mnt / DOMAIN.lstrip("/")
    run_dir = tmp_path / "orthanc"
    run_dir.mkdir()
    orthanc = Orthanc(run_dir, storage, index=run_dir / "index")
    try:
        orthanc.start()
        assert orthanc.links() == ["lo"]  # nothing of Orthanc's 0.0.0.0 leaves the namespace

        # store: a CT study of three instances (the sample and two more of its series) and
        # an MR study (the sample as it is)
        ct = _dicom("CT_small.dcm")
        ct_ds = pydicom.dcmread(io.BytesIO(ct))
        sent = [ct] + [_dicom("CT_small.dcm", ct_ds.StudyInstanceUID,
                              ct_ds.SeriesInstanceUID, n) for n in (2, 3)]
        sent.append(_dicom("MR_small.dcm"))
        stored = [orthanc.json("POST", "/instances", body) for body in sent]
        assert [s["Status"] for s in stored] == ["Success"] * 4
        ct_study, mr_study = stored[0]["ParentStudy"], stored[3]["ParentStudy"]
        assert {s["ParentStudy"] for s in stored[:3]} == {ct_study} and mr_study != ct_study
        assert sorted(orthanc.json("GET", "/studies")) == sorted([ct_study, mr_study])

        # retrieve: what Orthanc serves is the file it wrote on the mount, which is what it
        # was sent, and what it recorded (MD5) at store time
        ids = [s["ID"] for s in stored]
        ct_ids = ids[:3]
        bodies = dict(zip(ids, sent, strict=True))
        files: dict[str, Path] = {}
        for iid, body in bodies.items():
            info = orthanc.json("GET", f"/instances/{iid}/attachments/dicom/info")
            uuid = info["Uuid"]
            files[iid] = storage / uuid[:2] / uuid[2:4] / uuid
            served = orthanc.request("GET", f"/instances/{iid}/file")
            assert served[0] == 200
            assert served[1] == files[iid].read_bytes() == body
            assert info["UncompressedMD5"] == _md5(body) and info["UncompressedSize"] == len(body)
        assert sorted(p.name for p in storage.rglob("*") if p.is_file()) == sorted(
            p.name for p in files.values())

        # commit: nothing touches them for the autocommit period (the mount's wall clock
        # steps 15 min), then the mount judges each when asked about it (not by a stat here:
        # the kernel keeps the attributes Orthanc's writes left for 300 s, and answers itself)
        Path(a.mount_env[WALL_STEP_ENV]).write_text("900")
        retained: dict[str, int] = {}
        for iid, path in files.items():
            shown = json.loads(sofsctl(a.data, "worm", "show", str(path), "--json").stdout)
            assert (shown["state"], shown["rule"]) == ("committed", "autocommit"), shown
            retained[iid] = shown["retain_until_ns"]

        # restart Orthanc and remount the volume between: everything comes back
        orthanc.stop()
        a.remount()
        for iid, path in files.items():
            st = os.stat(path)
            assert not st.st_mode & 0o222 and st.st_atime_ns == retained[iid], (path, st)
        orthanc.start()
        assert sorted(orthanc.json("GET", "/studies")) == sorted([ct_study, mr_study])
        for iid, body in bodies.items():
            assert orthanc.request("GET", f"/instances/{iid}/file") == (200, body)
            verified = orthanc.request("POST", f"/instances/{iid}/attachments/dicom/verify-md5")
            assert verified[0] == 200, verified  # Orthanc's own check of the file it reads

        # delete the CT study in Orthanc: the mount refuses each unlink (EPERM) and logs it;
        # Orthanc answers 200, drops the study from its index all the same and logs nothing
        # above INFO (its file storage ignores a failed unlink)
        inos = {iid: os.stat(files[iid]).st_ino for iid in ids}
        orthanc_before, mount_before = len(orthanc.log()), len(a.log())
        status, answer = orthanc.request("DELETE", f"/studies/{ct_study}")
        assert (status, json.loads(answer)) == (200, {"RemainingAncestor": None})
        assert orthanc.request("GET", f"/studies/{ct_study}")[0] == 404
        assert orthanc.request("GET", f"/instances/{ids[0]}/file")[0] == 404
        assert orthanc.json("GET", "/studies") == [mr_study]
        said = orthanc.log()[orthanc_before:]
        for iid in ct_ids:
            assert f'Deleting attachment "{files[iid].name}" of type 1' in said, said
        assert not [line for line in said.splitlines() if line[:1] in "EWF"], said
        refused = [line for line in a.log()[mount_before:].splitlines() if "refused" in line]
        assert len(refused) == 3, refused
        for iid in ct_ids:
            assert any(f"deleting before its retention ends of inode {inos[iid]} refused" in line
                       and "retained until" in line for line in refused), refused
        for iid, body in bodies.items():  # every file is still there, byte-identical
            assert files[iid].read_bytes() == body
            assert not os.stat(files[iid]).st_mode & 0o222
        with pytest.raises(OSError) as refusal:  # what Orthanc's unlink got
            os.unlink(files[ids[0]])
        assert refusal.value.errno == errno.EPERM

        # the study comes back by storing its files again, read from the domain: same Orthanc
        # ids, but new attachments (new files): the old ones stay, retained and unreferenced
        restored = [orthanc.json("POST", "/instances", files[iid].read_bytes())
                    for iid in ct_ids]
        assert [r["Status"] for r in restored] == ["Success"] * 3
        assert [r["ID"] for r in restored] == ct_ids
        assert {r["ParentStudy"] for r in restored} == {ct_study}
        for iid in ct_ids:
            assert orthanc.request("GET", f"/instances/{iid}/file") == (200, bodies[iid])
            uuid = orthanc.json("GET", f"/instances/{iid}/attachments/dicom/info")["Uuid"]
            assert uuid != files[iid].name
        assert sorted(orthanc.json("GET", "/studies")) == sorted([ct_study, mr_study])

        # Orthanc goes on storing new studies in the domain
        new = _dicom("MR_small.dcm", generate_uid())
        added = orthanc.json("POST", "/instances", new)
        assert added["Status"] == "Success" and added["ParentStudy"] not in (ct_study, mr_study)
        assert orthanc.request("GET", f"/instances/{added['ID']}/file") == (200, new)
        assert len(orthanc.json("GET", "/studies")) == 3
        assert len([p for p in storage.rglob("*") if p.is_file()]) == 4 + 3 + 1
    finally:
        orthanc.stop()
