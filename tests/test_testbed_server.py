"""The test bed itself: real llama-server processes behave as the rest of the suite relies on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from testbed.models import SPECS
from testbed.server import RunningServer, ServerConfig, spawn, start, wait_ready
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.server

HELLO = [{"role": "user", "content": "hello"}]


def chat(server: RunningServer, messages: list[dict[str, object]], **extra: object) -> httpx.Response:
    body = {"messages": messages, "max_tokens": 48, "temperature": 0, **extra}
    return httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=60)


def test_health_is_ok(chatml_server: RunningServer) -> None:
    response = httpx.get(chatml_server.base_url + "/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_props_expose_the_models_real_template(any_server: RunningServer) -> None:
    props = httpx.get(any_server.base_url + "/props").json()
    spec = SPECS[any_server.config.model.name.split("-")[0]]
    assert props["chat_template"].strip() == spec.chat_template.strip()
    assert props["default_generation_settings"]["n_ctx"] == any_server.config.ctx_size // any_server.config.slots


def test_template_capabilities_are_what_the_templates_imply(
    mistral_server: RunningServer, chatml_server: RunningServer, hermes_server: RunningServer
) -> None:
    caps = {s.config.model.name: httpx.get(s.base_url + "/props").json()["chat_template_caps"]
            for s in (mistral_server, chatml_server, hermes_server)}
    mistral, chatml, hermes = caps.values()
    assert mistral["supports_system_role"] is False
    assert chatml["supports_system_role"] is True
    assert hermes["supports_tools"] is True and chatml["supports_tools"] is False


def test_tokenize_and_detokenize_round_trip(any_server: RunningServer) -> None:
    text = "hello world, please help"
    tokens = httpx.post(any_server.base_url + "/tokenize", json={"content": text}).json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    assert len(tokens) < len(text)  # whole words, not one token per character
    back = httpx.post(any_server.base_url + "/detokenize", json={"tokens": tokens}).json()["content"]
    assert back == text


def test_chat_completion_replies_and_stops(any_server: RunningServer) -> None:
    response = chat(any_server, HELLO)
    assert response.status_code == 200, response.text
    body = response.json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop", "test-bed replies must terminate on their own"
    assert isinstance(choice["message"]["content"], str)
    assert body["usage"]["prompt_tokens"] > 0
    assert 0 < body["usage"]["completion_tokens"] < 48


def test_json_schema_output_is_valid_json(any_server: RunningServer) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["answer", "n"], "additionalProperties": False}
    response = chat(any_server, HELLO, max_tokens=200,
                    response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}})
    assert response.status_code == 200, response.text
    parsed = json.loads(response.json()["choices"][0]["message"]["content"])
    assert set(parsed) == {"answer", "n"} and isinstance(parsed["n"], int)


def test_wrong_api_key_gets_401_json(keyed_server: RunningServer) -> None:
    url = keyed_server.base_url + "/v1/chat/completions"
    wrong = httpx.post(url, json={"messages": HELLO}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "authentication_error"
    right = httpx.post(url, json={"messages": HELLO, "max_tokens": 8},
                       headers={"Authorization": f"Bearer {TEST_API_KEY}"}, timeout=60)
    assert right.status_code == 200
    assert httpx.get(keyed_server.base_url + "/health").status_code == 200  # public


def test_mistral_template_rejects_non_alternating_roles(mistral_server: RunningServer) -> None:
    response = chat(mistral_server, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert response.status_code == 400
    assert "Conversation roles must alternate" in response.json()["error"]["message"]


def test_mistral_template_rejects_tool_messages(mistral_server: RunningServer) -> None:
    messages = [*HELLO, {"role": "tool", "content": "42", "tool_call_id": "1"}]
    response = chat(mistral_server, messages)
    assert response.status_code == 400
    assert "Only user and assistant roles are supported" in response.json()["error"]["message"]


def test_without_jinja_the_roles_are_not_checked(nojinja_server: RunningServer) -> None:
    response = chat(nojinja_server, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert response.status_code == 200, response.text


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_tools_model_calls_tools_natively_when_offered(hermes_server: RunningServer) -> None:
    response = chat(hermes_server, HELLO, tools=TOOLS, max_tokens=100)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]["function"]
    assert call["name"] == "get_weather"
    assert "city" in json.loads(call["arguments"])


def test_tools_model_answers_in_prose_without_tools(hermes_server: RunningServer) -> None:
    choice = chat(hermes_server, HELLO).json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert not choice["message"].get("tool_calls")


def test_health_is_503_or_refused_while_loading(llama_server_binary: Path, models: dict[str, Path]) -> None:
    server = spawn(llama_server_binary, ServerConfig(model=models["chatml"]))
    try:
        wait_ready(server, timeout=60)
        assert httpx.get(server.base_url + "/health").status_code == 200
    finally:
        server.stop()
    assert server.process.poll() is not None


def test_servers_die_with_the_process_that_started_them(llama_server_binary: Path, models: dict[str, Path]) -> None:
    """Even a SIGKILLed test run leaves no llama-server behind."""
    script = (
        "import sys, time; from pathlib import Path\n"
        "from testbed.server import ServerConfig, start\n"
        f"s = start(Path({str(llama_server_binary)!r}), ServerConfig(model=Path({str(models['chatml'])!r})))\n"
        "print(s.process.pid, flush=True); time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parents[1])
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(server_pid):
            time.sleep(0.05)
        assert not _alive(server_pid)
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return status != "Z"


def test_start_reports_the_log_when_the_server_cannot_start(llama_server_binary: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF not really")
    with pytest.raises(RuntimeError, match="exited with"):
        start(llama_server_binary, ServerConfig(model=broken))
