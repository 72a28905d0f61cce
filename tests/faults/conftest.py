"""Fixtures of the fault matrix (the helpers they use are in support.py; ``own_server`` is in
tests/conftest.py)."""

from .support import loopback

__all__ = ["loopback"]
