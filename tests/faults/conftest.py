"""Fixtures of the fault matrix (the helpers they use are in support.py)."""

from .support import loopback, own_server

__all__ = ["loopback", "own_server"]
