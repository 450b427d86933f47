"""Fixtures shared by the export tests."""

from collections.abc import Iterator

import pytest

from .exportenv import SMB_USER, ExportEnv, mounted_env


@pytest.fixture
def env() -> Iterator[ExportEnv]:
    """A mounted environment of its own for each test, SMB user :data:`SMB_USER`."""
    with mounted_env([SMB_USER]) as e:
        yield e
