"""Shared helpers of the AutoGPT tests: the AutoGPT venv with this checkout's wheel in it, and
running code in it.

The venv itself is cached per AutoGPT source (``testbed.autogpt_env``); this checkout's wheel is
built and (re)installed into it once per test session — the way a user installs the package,
with a plain ``pip install <wheel>``, after a dry run proves that it moves none of AutoGPT's
locked core packages.
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

from testbed.autogpt_env import LOCKED_NAMES, AutoGPTEnv, AutoGPTEnvError, ensure_autogpt_env, source_from_env

ROOT = Path(__file__).resolve().parents[2]
INSIDE = Path(__file__).with_name("inside_autogpt.py")
NOT_RUN = ("AutoGPT tests NOT RUN: set AUTOGPT_SOURCE to AutoGPT classic's tarball "
           "(../shared/autogpt/autogpt-classic-c6703dd8.tar.gz) or a checkout of its classic/ directory")
# The variables a test controls; the rest of the caller's environment passes through.
CONTROLLED = ("SMART_LLM", "FAST_LLM", "OPENAI_FUNCTIONS", "OPENAI_API_KEY", "LLAMAFILE_AUTOGPT", "DISABLED_COMMANDS")
# AutoGPT commands that would reach beyond this machine (web search, page reads, git clone, image
# APIs) or run code; an agent on a random-weight model picks commands at random, so they are off.
DISABLED_COMMANDS = ",".join((
    "web_search", "google", "read_webpage", "clone_repository", "generate_image", "ask_user",
    "execute_python_code", "execute_python_file", "execute_shell", "execute_shell_popen"))


@dataclass
class InstalledAutoGPT:
    """The AutoGPT venv with the current checkout installed, and what the install changed."""

    env: AutoGPTEnv
    wheel: Path
    would_change: dict[str, tuple[str, str]]  # locked name -> (installed, would install)
    pip_check: str

    def environ(self, **values: str) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items()
                   if not k.startswith("LLAMAFILE_") and k not in CONTROLLED}
        environ.update(TELEMETRY_OPT_IN="false", PYTHONUNBUFFERED="1", DISABLED_COMMANDS=DISABLED_COMMANDS, **values)
        return environ

    def check(self, name: str, cwd: Path, timeout: float = 240, **values: str) -> dict[str, Any]:
        """Run one check of ``inside_autogpt.py`` in the AutoGPT venv; its RESULT as a dict."""
        try:
            done = subprocess.run([str(self.env.python), str(INSIDE), name], cwd=cwd, env=self.environ(**values),
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


def build_wheel(out: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=600, check=False)
    wheels = sorted(out.glob("llamafile_provider-*.whl"))
    if done.returncode or not wheels:
        pytest.fail(f"building the wheel failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}", pytrace=False)
    return wheels[-1]


_INSTALLED: dict[Path, InstalledAutoGPT] = {}


def installed_autogpt(out: Path) -> InstalledAutoGPT:
    """The AutoGPT venv with this checkout's wheel, installed once per test session."""
    env = require_autogpt()
    if env.root not in _INSTALLED:
        _INSTALLED[env.root] = install(env, out)
    return _INSTALLED[env.root]


def install(env: AutoGPTEnv, out: Path) -> InstalledAutoGPT:
    """Dry run, then the user's ``pip install <wheel>``, then the checkout's files over it."""
    wheel = build_wheel(out)
    report_path = out / "dry-run.json"
    dry = env.pip("install", "--dry-run", "--quiet", "--report", str(report_path), str(wheel))
    if dry.returncode:
        pytest.fail(f"pip install --dry-run of the wheel failed in the AutoGPT venv:\n{dry.stderr[-2000:]}",
                    pytrace=False)
    installed = env.installed()
    report = json.loads(report_path.read_text())
    would = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
             for item in report["install"]}
    changes = {name: (installed.get(name, "-"), would[name]) for name in LOCKED_NAMES
               if name in would and would[name] != installed.get(name)}
    for args in (("install", "--quiet", str(wheel)), ("install", "--quiet", "--no-deps", "--force-reinstall", str(wheel))):
        done = env.pip(*args)
        if done.returncode:
            pytest.fail(f"pip {' '.join(args[:-1])} <wheel> failed in the AutoGPT venv:\n{done.stderr[-2000:]}",
                        pytrace=False)
    check = env.pip("check")
    return InstalledAutoGPT(env=env, wheel=wheel, would_change=changes, pip_check=check.stdout)
