"""The console script, run as users run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
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


@pytest.mark.server
def test_models_lists_what_answers_and_fails_when_nothing_does(chatml_server: RunningServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = run("models", "--json", LLAMAFILE_SMART_LLM_URL=chatml_server.base_url, LLAMAFILE_FAST_LLM_URL=dead)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [(m["alias"], m["url"], m["dialect"]) for m in listed] == [("smart", chatml_server.base_url, "llama-server")]
    nothing = run("models", LLAMAFILE_API_BASE=dead)
    assert nothing.returncode == 1 and "no configured server answers" in nothing.stderr


@pytest.mark.server
def test_tokenize_gives_the_servers_own_token_ids(chatml_server: RunningServer) -> None:
    text = "hello world"
    result = run("tokenize", text, "--json", "--model", "fast", LLAMAFILE_API_BASE=chatml_server.base_url)
    assert result.returncode == 0, result.stderr
    expected = httpx.post(f"{chatml_server.base_url}/tokenize", json={"content": text}, timeout=10).json()["tokens"]
    assert json.loads(result.stdout) == {"count": len(expected), "tokens": expected}


@pytest.mark.server
def test_chat_streams_a_reply_from_the_model_named_by_id(chatml_server: RunningServer,
                                                         mistral_server: RunningServer) -> None:
    model_id = httpx.get(f"{mistral_server.base_url}/v1/models", timeout=10).json()["data"][0]["id"]
    result = run("chat", "Say hi.", "--model", model_id, "--system", "Be brief.", "--max-tokens", "8",
                 LLAMAFILE_SMART_LLM_URL=chatml_server.base_url, LLAMAFILE_FAST_LLM_URL=mistral_server.base_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()  # the tiny model's gibberish, streamed
    unknown = run("chat", "Say hi.", "--model", "no-such-model", LLAMAFILE_API_BASE=chatml_server.base_url)
    assert unknown.returncode == 2 and "unknown model 'no-such-model'" in unknown.stderr
