"""The console script, run as users run it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from llamafile_provider import __version__
from testbed.server import RunningServer, free_port


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLAMAFILE_")}
    return subprocess.run([sys.executable, "-m", "llamafile_provider.cli", *args], capture_output=True,
                          text=True, env={**clean, **env}, timeout=60)


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"llamafile-provider {__version__}"


def test_config_shows_sources_and_masks_the_key() -> None:
    result = run("config", LLAMAFILE_API_KEY="sk-do-not-print-me-99", LLAMAFILE_TIMEOUT="30")
    assert result.returncode == 0
    assert "sk-do-not-print" not in result.stdout
    assert any(line.startswith("LLAMAFILE_TIMEOUT") and "30.0" in line and "(environment)" in line
               for line in result.stdout.splitlines())


def test_config_reports_bad_values_without_a_traceback() -> None:
    result = run("config", LLAMAFILE_TIMEOUT="-5")
    assert result.returncode == 2 and "LLAMAFILE_TIMEOUT" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.server
def test_status_probes_both_servers(chatml_server: RunningServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = run("status", LLAMAFILE_SMART_LLM_URL=chatml_server.base_url + "/v1", LLAMAFILE_FAST_LLM_URL=dead)
    assert result.returncode == 1
    assert "llama-server" in result.stdout and "context=8192" in result.stdout and "tools=constrained" in result.stdout
    assert f"{dead}  DOWN" in result.stdout
