"""Start, power-cut and stop a :mod:`tests.powercut.cutfs` mount from a test.

:class:`CutMount` runs the server as a child process over a backing directory. ``cut()`` is the
power cut: the server exits at once (everything not fsynced through it is gone), the dead mount
is detached lazily, and ``start()`` mounts the surviving state again. ``close()`` always leaves
nothing mounted and no server running, whatever happened before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def mounted(path: Path) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == real for line in f)


class CutMount:
    def __init__(self, backing: Path, mnt: Path, log: Path) -> None:
        self.backing = backing
        self.mnt = mnt
        self.log = log
        self.proc: subprocess.Popen | None = None
        backing.mkdir(parents=True, exist_ok=True)
        mnt.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        assert self.proc is None
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.powercut.cutfs", str(self.backing), str(self.mnt)],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            raise RuntimeError(f"cutfs did not start: {self.log.read_text()[-2000:]}")

    def cut(self) -> None:
        """The power cut (module docstring); the mount is gone until the next start()."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1)
        self.proc.wait(timeout=60)
        self.proc = None
        self._detach()

    def _detach(self) -> None:
        if mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True)
        if mounted(self.mnt):
            subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        self._detach()
