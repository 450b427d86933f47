"""The unmount report (fuse_mount/unmountreport.py): what a mount process could not store, as
``sofsctl umount`` reads it back once the process is gone."""

from fuse_mount import unmountreport
from sofs.lostwrites import LostWrite
from sofs.metadata import MetaStore


def test_a_report_is_read_once_by_the_pid_it_belongs_to(tmp_path):
    meta = MetaStore(tmp_path / "meta")
    try:
        lost = [LostWrite(ino=77, kept_size=10, written_size=5000, error="no space", when_ns=1,
                          open_count=1)]
        report = unmountreport.build(4242, "pacs", meta, lost, 3, "disk full")
    finally:
        meta.close()
    assert report.lost[0].paths == []  # no such file in this metadata: deleted since
    unmountreport.write(tmp_path, report)
    assert unmountreport.take(tmp_path, "pacs", 4243) is None  # another process's
    back = unmountreport.take(tmp_path, "pacs", 4242)
    assert back == report and not back.clean
    text = "\n".join(back.lines())
    assert "could not be stored: disk full" in text
    assert "(deleted since): 10 bytes kept of 5000 written (no space)" in text
    assert unmountreport.take(tmp_path, "pacs", 4242) is None  # read once


def test_a_clean_session_says_nothing(tmp_path):
    meta = MetaStore(tmp_path / "meta")
    try:
        report = unmountreport.build(1, "v", meta, [], 0, None)
    finally:
        meta.close()
    assert report.clean and report.lines() == []
