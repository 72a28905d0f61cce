"""``llamafile-provider doctor`` against real test-bed servers: live, dead, wrong key, strict template."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from llamafile_provider.doctor import STRICT_PROBE, Check, Status, diagnose
from llamafile_provider.settings import load_settings
from testbed.server import RunningServer, free_port
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.server
WRONG_KEY = "sk-wrong-key-do-not-print-77"


def by_check(rows: list[Check], url: str) -> dict[str, Check]:
    return {row.check: row for row in rows if row.url == url}


def doctor_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLAMAFILE_")}
    return subprocess.run([sys.executable, "-m", "llamafile_provider.cli", "doctor", *args], capture_output=True,
                          text=True, env={**clean, **env}, timeout=300)


async def test_every_check_passes_on_live_servers(chatml_server: RunningServer, hermes_server: RunningServer) -> None:
    rows = await diagnose(load_settings(smart_llm_url=chatml_server.base_url, fast_llm_url=hermes_server.base_url))
    for server, mode in ((chatml_server, "constrained"), (hermes_server, "native")):
        checks = by_check(rows, server.base_url)
        assert list(checks) == ["reachable", "dialect", "model", "context", "authentication", "chat", "tokenizer",
                                "role folding", "tool call"]
        assert all(row.status is Status.OK for row in checks.values()), [r for r in checks.values()]
        assert checks["dialect"].detail.startswith("llama-server")
        assert checks["context"].detail.startswith("8192 tokens per slot, 4 slot(s)")
        assert "==" in checks["tokenizer"].detail  # the count equals the server's prompt_tokens
        assert checks["tool call"].detail.startswith(f"{mode}: get_weather(")
        assert checks["chat"].seconds is not None and checks["tool call"].seconds is not None


async def test_a_strict_template_gets_a_conversation_only_folding_makes_valid(mistral_server: RunningServer) -> None:
    unfolded = httpx.post(f"{mistral_server.base_url}/v1/chat/completions", timeout=30, json={
        "messages": [m.to_openai() for m in STRICT_PROBE], "max_tokens": 4})
    assert unfolded.status_code == 400 and "alternate" in unfolded.text  # the probe is a real test
    rows = await diagnose(load_settings(api_base=mistral_server.base_url))
    checks = by_check(rows, mistral_server.base_url)
    assert {row.server for row in rows} == {"smart+fast"}  # one URL for both is checked once
    assert checks["role folding"].status is Status.OK, checks["role folding"]
    assert "4 messages accepted (folded into 1 turn(s)" in checks["role folding"].detail


def test_a_dead_server_fails_with_its_fix_and_a_non_zero_exit(chatml_server: RunningServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = doctor_cli(LLAMAFILE_SMART_LLM_URL=chatml_server.base_url, LLAMAFILE_FAST_LLM_URL=dead)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("fast") and dead in line and " reachable " in line and " FAIL " in line
               for line in lines), result.stdout
    assert "1 check(s) failed." in result.stdout
    assert f"fast {dead} reachable: start the server (./llamafile-integration/serve.sh)" in result.stdout
    assert any(line.startswith("smart") and " tool call " in line and " ok " in line for line in lines)


def test_a_wrong_key_is_named_and_never_printed(keyed_server: RunningServer) -> None:
    result = doctor_cli("--json", LLAMAFILE_API_BASE=keyed_server.base_url, LLAMAFILE_API_KEY=WRONG_KEY)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    auth = [row for row in report["checks"] if row["check"] == "authentication"]
    assert auth and auth[0]["status"] == "fail" and "LLAMAFILE_API_KEY" in auth[0]["fix"]
    assert WRONG_KEY not in result.stdout + result.stderr


async def test_the_right_key_passes(keyed_server: RunningServer) -> None:
    rows = await diagnose(load_settings(api_base=keyed_server.base_url, api_key=TEST_API_KEY))
    checks = by_check(rows, keyed_server.base_url)
    assert checks["authentication"].status is Status.OK and checks["authentication"].detail == "key accepted"
    assert not [row for row in rows if row.status is Status.FAIL]
