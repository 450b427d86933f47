"""Fixtures shared by every test package."""

from .netlab import netlab  # noqa: F401  (the network-namespace lab fixture, see tests/netlab.py)
