"""Shared fixtures for the chunkstore unit tests."""

import os
import sys

# The package is not necessarily installed in the venv: make the repo root importable.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


import pytest  # noqa: E402


@pytest.fixture
def cluster_dir(tmp_path):
    """A fresh 6-disk local cluster (init only; tests open it)."""
    from chunkstore.ring.localcluster import init_local_cluster

    data = tmp_path / "data"
    init_local_cluster(data, disks=6, vnodes=6)
    return data


@pytest.fixture
def protection():
    from chunkstore.protection.policy import Protection

    return Protection.parse("cos2", "ec4+2")
