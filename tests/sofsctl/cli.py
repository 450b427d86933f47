"""What the sofsctl tests share: ``sofsctl`` run as an admin runs it (``python -m sofsctl``, a
real process) and an embedded ring to run it on (:func:`make_embedded_ring`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from chunkstore.protection.policy import Protection, parse_policy
from chunkstore.ring.open import open_ring

ROOT = Path(__file__).resolve().parents[2]
PROTECTION = Protection(parse_policy("cos2"), parse_policy("ec4+2"))


def sofsctl(data: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sofsctl", "--data-dir", str(data), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def make_embedded_ring(d: Path) -> Path:
    """An embedded ring of 6 disks in ``d``, a volume ``pacs`` ec4+2/cos2, and 6 chunks of
    each policy written straight to the ring (no file names them)."""
    assert sofsctl(d, "cluster", "init", "--disks", "6").returncode == 0
    assert sofsctl(d, "volume", "create", "pacs").returncode == 0
    ring = open_ring(d, instance="test")
    try:
        for _ in range(6):
            ring.put(os.urandom(100_000), PROTECTION)  # ec4+2: a piece on every disk
            ring.put(os.urandom(1000), PROTECTION)     # cos2: 3 copies
    finally:
        ring.close()
    return d
