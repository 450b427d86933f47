"""Real ``sofsctl repair``, ``volume checkpoint``, ``restore`` and ``delete`` runs whose stderr is a
pseudo-terminal: each draws one progress line that ends at 100% with the bytes it went
through and a rate; with stderr not a terminal nothing is drawn."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from sofs.volume import volume_dir
from sofsctl.common import human
from tests.sofsctl.cli import ROOT, make_embedded_ring, sofsctl

pytestmark = pytest.mark.integration

SIZE = r"\d+(?:\.\d)? (?:B|KiB|MiB|GiB)"
FINAL = re.compile(rf"^(\S+) +\[#+\] 100%  ({SIZE}) / ({SIZE})  {SIZE}/s  in \d+:\d\d:\d\d$")
CHUNK_BYTES = 6 * 100_000 + 6 * 1000  # what make_embedded_ring stores: 591.8 KiB


def run_on_pty(data: Path, *args: str) -> tuple[int, str, str]:
    """Run sofsctl with stderr on a pseudo-terminal 120 columns wide: (exit status, stdout,
    what the terminal received)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    received = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        proc = subprocess.run([sys.executable, "-m", "sofsctl", "--data-dir", str(data), *args],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=slave,
                              stdin=subprocess.DEVNULL, text=True, timeout=300)
    finally:
        os.close(slave)
        reader.join(timeout=30)
        os.close(master)
    return proc.returncode, proc.stdout, received.decode()


def last_line(terminal: str) -> str:
    """The last state drawn: after the last carriage return of the last line ended."""
    lines = [ln for ln in terminal.replace("\r\n", "\n").split("\n") if ln.strip()]
    assert lines, f"nothing drawn: {terminal!r}"
    return lines[-1].split("\r")[-1].rstrip()


def test_long_jobs_draw_a_line_that_ends_at_100_percent_with_bytes_and_a_rate(tmp_path):
    data = make_embedded_ring(tmp_path / "data")

    rc, out, term = run_on_pty(data, "repair")
    assert rc == 0 and "all chunks fully protected" in out, (out, term)
    m = FINAL.match(last_line(term))
    assert m, term
    assert m.group(1) == "repair"
    assert m.group(2) == m.group(3) == human(CHUNK_BYTES)  # every chunk's bytes, all swept

    rc, out, term = run_on_pty(data, "volume", "checkpoint", "pacs")
    assert rc == 0 and "checkpoint 1 in the RING" in out, (out, term)
    m = FINAL.match(last_line(term))
    assert m and m.group(1) == "checkpoint", term
    assert m.group(2) == m.group(3)
    metadata = m.group(3)
    assert re.search(rf"{SIZE} of metadata", out).group(0) == f"{metadata} of metadata"

    shutil.move(volume_dir(data, "pacs"), tmp_path / "lost")  # the host lost the metadata
    rc, out, term = run_on_pty(data, "volume", "restore", "pacs")
    assert rc == 0 and "volume pacs restored" in out, (out, term)
    m = FINAL.match(last_line(term))
    assert m and m.group(1) == "restore", term
    assert m.group(2) == m.group(3) == metadata

    rc, out, term = run_on_pty(data, "volume", "delete", "pacs", "--yes")
    assert rc == 0, (out, term)
    m = FINAL.match(last_line(term))
    assert m and m.group(1) == "delete" and m.group(2) == m.group(3), term


def test_nothing_is_drawn_when_stderr_is_not_a_terminal(tmp_path):
    data = make_embedded_ring(tmp_path / "data")
    for args in (["repair"], ["volume", "checkpoint", "pacs"], ["repair", "--json"]):
        res = sofsctl(data, *args)
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stderr == "", (args, res.stderr)
