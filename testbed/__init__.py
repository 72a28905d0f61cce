"""The real-server test bed: a llama-server built from PyPI, tiny GGUF models, process control.

Not part of the installed package: tests and benchmarks import it from the repository root.
"""

from __future__ import annotations

from pathlib import Path

from testbed.build_classic import ensure_classic_server
from testbed.build_server import cache_root, ensure_server
from testbed.models import ensure_models, generator_digest


def models_dir() -> Path:
    """Where generated models are cached (keyed by the generator's own hash)."""
    return cache_root() / "models"


def ensure_testbed() -> tuple[Path, dict[str, Path]]:
    """The llama-server binary and the test-bed models, building whatever is missing."""
    return ensure_server(), ensure_models(models_dir())


__all__ = [
    "cache_root", "ensure_classic_server", "ensure_models", "ensure_server", "ensure_testbed",
    "generator_digest", "models_dir",
]
