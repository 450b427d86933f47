"""Fixtures of the authority tests: ``one``, a real one-member etcd and a client of it."""

from __future__ import annotations

import pytest

from .etcdcluster import Cluster


@pytest.fixture
def one(tmp_path):
    c = Cluster(tmp_path, 1)
    try:
        c.start(c.members[0])
        with c.client() as client:
            c.wait_ready(client)
            yield c, client
    finally:
        c.stop_all()
