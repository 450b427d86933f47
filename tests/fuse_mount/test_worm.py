"""WORM through a real FUSE mount, as root: a domain made by ``sofsctl worm domain create``,
a file committed by ``chmod a-w``, every change of it refused with EPERM by the syscall itself,
retention extended through atime, and the same after an unmount and a remount; the admin
commands answer for a mounted volume (its mount process) and for an unmounted one."""

from __future__ import annotations

import errno
import json
import os

import pytest

from .conftest import needs_fuse, sofsctl

pytestmark = [pytest.mark.integration, needs_fuse]

DATA = b"DICM" + os.urandom(300_000)


def _eperm(fn, *args, **kw) -> None:
    with pytest.raises(OSError) as e:
        fn(*args, **kw)
    assert e.value.errno == errno.EPERM, (fn, args, e.value)


def _refusals(path: str, until_ns: int, mtime_ns: int) -> None:
    _eperm(open, path, "r+b")
    _eperm(os.open, path, os.O_WRONLY | os.O_TRUNC)
    _eperm(os.truncate, path, 0)
    _eperm(os.unlink, path)
    _eperm(os.rename, path, path + ".renamed")
    _eperm(os.chmod, path, 0o644)
    _eperm(os.chown, path, 1000, 1000)
    _eperm(os.setxattr, path, "user.note", b"x")
    _eperm(os.utime, path, ns=(until_ns - 10**9, mtime_ns))  # shortening the retention
    _eperm(os.link, path, os.path.join(os.path.dirname(os.path.dirname(path)), "escape"))


def test_a_committed_file_is_refused_every_change_through_the_mount(archive):
    sofsctl(archive.data, "worm", "domain", "create", archive.volume, "/pacs/studies",
            "--mode", "compliance", "--default-retention", "10y", "--autocommit", "5m")
    domains = json.loads(sofsctl(archive.data, "worm", "domain", "list", archive.volume,
                                 "--json").stdout)
    assert [d["path"] for d in domains] == ["/pacs/studies"]
    dom = archive.mnt / "pacs" / "studies"
    path = str(dom / "study.dcm")
    with open(path, "wb") as f:
        f.write(DATA)
    os.rename(path, path + ".tmp")  # not committed yet: an ordinary file
    os.rename(path + ".tmp", path)
    os.chmod(path, 0o444)
    shown = json.loads(sofsctl(archive.data, "worm", "show", path, "--json").stdout)
    assert shown["state"] == "committed" and shown["rule"] == "chmod"
    st = os.stat(path)
    assert st.st_atime_ns == shown["retain_until_ns"] and not st.st_mode & 0o222
    _refusals(path, shown["retain_until_ns"], st.st_mtime_ns)
    later = shown["retain_until_ns"] + 86400 * 10**9
    os.utime(path, ns=(later, st.st_mtime_ns))  # extending is allowed
    assert os.stat(path).st_atime_ns == later
    with open(path, "rb") as f:
        assert f.read() == DATA
    assert "refused" in archive.log() and "retained until" in archive.log()
    out = sofsctl(archive.data, "worm", "hold", "add", "--name", "case-42", "-r",
                  str(dom)).stdout
    assert "1 file(s)" in out
    held = json.loads(sofsctl(archive.data, "worm", "hold", "list", str(dom), "--json").stdout)
    assert held == [{"path": "/study.dcm", "holds": ["case-42"]}]
    plain = archive.mnt / "plain.txt"  # outside the domain nothing changes
    plain.write_bytes(b"x")
    os.chmod(plain, 0o444)
    os.unlink(plain)

    archive.umount()  # the volume unmounted: the commands open it themselves
    offline = json.loads(sofsctl(archive.data, "worm", "show",
                                 f"{archive.volume}:/pacs/studies/study.dcm", "--json").stdout)
    assert offline["state"] == "committed" and offline["retain_until_ns"] == later
    assert offline["holds"] == ["case-42"]
    out = sofsctl(archive.data, "worm", "domain", "list", archive.volume).stdout
    assert "/pacs/studies" in out and "compliance" in out and "10y" in out
    archive.mount()
    _refusals(path, later, st.st_mtime_ns)
    with open(path, "rb") as f:
        assert f.read() == DATA


def test_domain_create_refuses_a_directory_that_is_not_empty(archive):
    (archive.mnt / "full").mkdir()
    (archive.mnt / "full" / "f").write_bytes(b"x")
    res = sofsctl(archive.data, "worm", "domain", "create", archive.volume, "/full",
                  "--mode", "enterprise", check=False)
    assert res.returncode != 0 and "not empty" in res.stderr
    res = sofsctl(archive.data, "worm", "domain", "create", archive.volume, "/new",
                  "--mode", "compliance", "--autocommit", "1m", check=False)
    assert res.returncode != 0 and "5 minutes" in res.stderr
    assert not (archive.mnt / "new").exists()


def test_an_all_worm_enterprise_volume_its_privileged_delete_and_no_volume_delete(make_archive):
    a = make_archive("w", volume="legal",
                     create_args=("--worm", "enterprise", "--default-retention", "10y",
                                  "--autocommit", "5m"))
    domains = json.loads(sofsctl(a.data, "worm", "domain", "list", "legal", "--json").stdout)
    assert [(d["path"], d["mode"]) for d in domains] == [("/", "enterprise")]
    res = sofsctl(a.data, "volume", "create", "other", "--autocommit", "1h", check=False)
    assert res.returncode != 0 and "--worm" in res.stderr
    res = sofsctl(a.data, "volume", "create", "other", "--worm", "compliance", "--autocommit",
                  "1m", check=False)
    assert res.returncode != 0 and "5 minutes" in res.stderr
    assert "other" not in sofsctl(a.data, "volume", "list").stdout  # nothing half made
    a.mount()
    path = a.mnt / "study.dcm"
    path.write_bytes(DATA)
    os.chmod(path, 0o444)
    _eperm(os.unlink, path)
    res = sofsctl(a.data, "worm", "delete", str(path), "--reason", "x", check=False)
    assert res.returncode != 0 and "--privileged" in res.stderr and path.exists()
    out = sofsctl(a.data, "worm", "delete", "--privileged", str(path),
                  "--reason", "duplicate of study 1.2.3").stdout
    assert "deleted" in out and not path.exists()
    [record] = (a.mnt / ".worm-log").iterdir()
    entry = json.loads(record.read_text())
    assert entry["path"] == "/study.dcm" and entry["reason"] == "duplicate of study 1.2.3"
    assert entry["who"].endswith("(uid 0)") and entry["size"] == len(DATA)
    _eperm(os.unlink, record)
    _eperm(open, record, "r+b")
    assert "privileged delete of /study.dcm" in a.log()
    (a.mnt / "kept.dcm").write_bytes(b"DICM")
    os.chmod(a.mnt / "kept.dcm", 0o444)
    a.umount()
    res = sofsctl(a.data, "volume", "delete", "legal", "--yes", check=False)
    assert res.returncode != 0 and "retains WORM files: 2 committed" in res.stderr
    assert "legal" in sofsctl(a.data, "volume", "list").stdout
