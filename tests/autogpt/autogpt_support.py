"""Shared helpers of the AutoGPT tests: the AutoGPT venv with this checkout's wheel in it, and
running code in it.

The venv itself is cached per AutoGPT source (``testbed.autogpt_env``); this checkout's wheel is
built and (re)installed into it once per test session — the way a user installs the package,
with a plain ``pip install <wheel>``, after a dry run shows what that would change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testbed.autogpt_env import (
    AutoGPTEnv,
    AutoGPTEnvError,
    build_wheel,
    ensure_autogpt_env,
    install_wheel,
    source_from_env,
)

ROOT = Path(__file__).resolve().parents[2]
INSIDE = Path(__file__).with_name("inside_autogpt.py")
NOT_RUN = ("AutoGPT tests NOT RUN: set AUTOGPT_SOURCE to AutoGPT classic's tarball "
           "(../shared/autogpt/autogpt-classic-c6703dd8.tar.gz) or a checkout of its classic/ directory")


@dataclass
class InstalledAutoGPT:
    """The AutoGPT venv with the current checkout installed, and what the install changed."""

    env: AutoGPTEnv
    wheel: Path
    would_change: dict[str, tuple[str, str]]  # locked name -> (installed, would install)
    pip_check: str

    def check(self, name: str, cwd: Path, timeout: float = 240, **values: str) -> dict[str, Any]:
        """Run one check of ``inside_autogpt.py`` in the AutoGPT venv; its RESULT as a dict."""
        try:
            done = subprocess.run([str(self.env.python), str(INSIDE), name], cwd=cwd, env=self.env.environ(**values),
                                  capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"check {name!r} in the AutoGPT venv ran past {timeout:.0f}s", pytrace=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT: ")]
        if done.returncode or not lines:
            pytest.fail(f"check {name!r} failed in the AutoGPT venv ({done.returncode}):\n"
                        f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}", pytrace=False)
        return dict(json.loads(lines[-1].removeprefix("RESULT: ")), stderr=done.stderr)


def require_autogpt() -> AutoGPTEnv:
    """The cached AutoGPT env; not set up -> loud failure in CI, a loud "NOT RUN" skip elsewhere."""
    source = source_from_env()
    if source is None:
        if os.environ.get("CI"):
            pytest.fail(NOT_RUN, pytrace=False)
        pytest.skip(NOT_RUN)
    try:
        return ensure_autogpt_env(source, log=lambda msg: print(msg, file=sys.stderr))
    except AutoGPTEnvError as exc:
        pytest.fail(str(exc), pytrace=False)


_INSTALLED: dict[Path, InstalledAutoGPT] = {}


def installed_autogpt(out: Path) -> InstalledAutoGPT:
    """The AutoGPT venv with this checkout's wheel, installed once per test session."""
    env = require_autogpt()
    if env.root not in _INSTALLED:
        try:
            wheel = build_wheel(ROOT, out)
            changes = install_wheel(env, wheel, out)
        except AutoGPTEnvError as exc:
            pytest.fail(str(exc), pytrace=False)
        _INSTALLED[env.root] = InstalledAutoGPT(env, wheel, changes, env.pip("check").stdout)
    return _INSTALLED[env.root]
