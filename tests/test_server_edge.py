"""The HTTP edge against real test-bed llama-servers: probe, readiness, auth, errors, tokenizer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from pytest_httpx import HTTPXMock

from llamafile_provider.dialects import Dialect, error_from_response
from llamafile_provider.errors import (
    AuthenticationError,
    ContextOverflowError,
    ServerLoadingError,
    ServerUnreachableError,
    TemplateError,
)
from llamafile_provider.server import AsyncServerClient, ServerClient
from llamafile_provider.tokenizer import AsyncTokenizer, Tokenizer
from testbed.models import SPECS
from testbed.server import RunningServer, ServerConfig, ServerPool, free_port, spawn
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.server


def test_probe_reads_dialect_context_slots_and_template(any_server: RunningServer) -> None:
    with ServerClient(any_server.base_url + "/v1/") as client:
        info = client.info()
    assert info.dialect is Dialect.LLAMA_SERVER
    assert info.base_url == any_server.base_url
    assert info.context_size == any_server.config.ctx_size // any_server.config.slots
    assert info.slots == any_server.config.slots
    assert info.model_id and info.model_id.endswith(".gguf")
    assert info.template is not None
    spec = SPECS[any_server.config.model.name.split("-")[0]]
    assert info.template.source.strip() == spec.chat_template.strip()
    assert info.template.add_bos == spec.add_bos


def test_probe_knows_each_templates_capabilities(mistral_server: RunningServer, hermes_server: RunningServer) -> None:
    assert ServerClient(mistral_server.base_url).info().caps.supports_system_role is False
    assert ServerClient(hermes_server.base_url).info().caps.supports_tool_calls is True


def test_v1_suffix_keeps_the_port(chatml_server: RunningServer) -> None:
    url = f"http://127.0.0.1:{chatml_server.port}/v1"
    assert ServerClient(url).base_url == f"http://127.0.0.1:{chatml_server.port}"


def test_unreachable_server_names_url_and_start_command() -> None:
    port = free_port()
    with pytest.raises(ServerUnreachableError) as caught:
        ServerClient(f"http://127.0.0.1:{port}/v1").info()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "serve.sh" in message


def test_wait_until_ready_gives_up_clearly() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(ServerUnreachableError, match=f"no server became ready at http://127.0.0.1:{port}"):
        ServerClient(f"http://127.0.0.1:{port}").wait_until_ready(timeout=0.5, interval=0.1)
    assert time.monotonic() - started < 5


def test_wait_until_ready_rides_out_startup(llama_server_binary: Path, models: dict[str, Path]) -> None:
    """Spawned and polled at once: refused (not bound yet) or 503 (loading), then ready."""
    server = spawn(llama_server_binary, ServerConfig(model=models["chatml"]))
    try:
        with ServerClient(server.base_url) as client:
            info = client.wait_until_ready(timeout=60, interval=0.02)
        assert info.dialect is Dialect.LLAMA_SERVER
    finally:
        server.stop()


def test_loading_state_is_typed(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url="http://127.0.0.1:9/props", status_code=503,
                            json={"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})
    with pytest.raises(ServerLoadingError, match="still loading"):
        ServerClient("http://127.0.0.1:9").info()


def test_api_key_is_sent_on_every_request(keyed_server: RunningServer) -> None:
    with ServerClient(keyed_server.base_url, api_key=TEST_API_KEY) as client:
        assert client.info().dialect is Dialect.LLAMA_SERVER  # /props is protected
        assert Tokenizer(client).count_tokens("hello world") > 0  # so is /tokenize


def test_wrong_key_names_the_setting_and_never_the_key(keyed_server: RunningServer) -> None:
    secret = "sk-wrong-but-secret-123456"
    with pytest.raises(AuthenticationError) as caught:
        ServerClient(keyed_server.base_url, api_key=secret).info()
    assert "LLAMAFILE_API_KEY" in str(caught.value)
    assert secret not in str(caught.value) and secret not in repr(caught.value)
    assert secret not in repr(ServerClient(keyed_server.base_url, api_key=secret))


def test_context_overflow_carries_sizes(models: dict[str, Path], server_pool: ServerPool) -> None:
    small = server_pool.get(ServerConfig(model=models["chatml"], ctx_size=512, slots=1))
    body = {"messages": [{"role": "user", "content": "hello world " * 400}], "max_tokens": 4}
    response = httpx.post(small.base_url + "/v1/chat/completions", json=body, timeout=60)
    error = error_from_response(response, small.base_url, Dialect.LLAMA_SERVER)
    assert isinstance(error, ContextOverflowError)
    assert error.context_size == 512 and error.prompt_tokens and error.prompt_tokens > 512
    assert "512" in str(error)


def test_template_rejection_is_typed_with_the_servers_message(mistral_server: RunningServer) -> None:
    body = {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "max_tokens": 4}
    response = httpx.post(mistral_server.base_url + "/v1/chat/completions", json=body, timeout=60)
    error = error_from_response(response, mistral_server.base_url, Dialect.LLAMA_SERVER)
    assert isinstance(error, TemplateError)
    assert "Conversation roles must alternate" in str(error)


def test_encode_decode_round_trip(any_server: RunningServer) -> None:
    tokenizer = Tokenizer(ServerClient(any_server.base_url))
    ids = tokenizer.encode("please help me search the web")
    assert ids and all(isinstance(i, int) for i in ids)
    assert tokenizer.decode(ids) == "please help me search the web"


def test_counting_the_same_text_twice_costs_one_request(chatml_server: RunningServer) -> None:
    requests: list[str] = []
    http = httpx.Client(event_hooks={"request": [lambda r: requests.append(r.url.path)]})
    tokenizer = Tokenizer(ServerClient(chatml_server.base_url, http_client=http))
    tokenizer.client.info()
    requests.clear()
    first = tokenizer.count_tokens("the same text")
    second = tokenizer.count_tokens("the same text")
    assert first == second and requests == ["/tokenize"]


CONVERSATIONS: dict[str, list[dict[str, str]]] = {
    "one user turn": [{"role": "user", "content": "hello"}],
    "system first": [{"role": "system", "content": "You are a helpful agent."},
                     {"role": "user", "content": "What is the weather in Paris?"}],
    "multi turn": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                   {"role": "user", "content": "Search the web for python code, then write a file."}],
    "assistant prefill": [{"role": "user", "content": "Reply in JSON."}, {"role": "assistant", "content": '{"thoughts":'}],
    "unicode and braces": [{"role": "user", "content": 'Réponds en JSON: {"a": [1, 2]} — merci ✓'}],
    "long": [{"role": "user", "content": "please help with this task " * 60},
             {"role": "assistant", "content": "ok " * 30}, {"role": "user", "content": "continue"}],
}


@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
def test_message_counts_equal_the_servers_prompt_tokens(any_server: RunningServer, conversation: str) -> None:
    messages = CONVERSATIONS[conversation]  # Mistral: both sides merge a leading system message
    counted = Tokenizer(ServerClient(any_server.base_url)).count_message_tokens(messages)
    response = httpx.post(any_server.base_url + "/v1/chat/completions",
                          json={"messages": messages, "max_tokens": 1}, timeout=60)
    assert response.status_code == 200, response.text
    assert counted == response.json()["usage"]["prompt_tokens"]


def test_message_counts_with_tools_equal_prompt_tokens(hermes_server: RunningServer) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather <for> a city & more",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    messages = [{"role": "user", "content": "weather in Rome?"}]
    counted = Tokenizer(ServerClient(hermes_server.base_url)).count_message_tokens(messages, tools=tools)
    response = httpx.post(hermes_server.base_url + "/v1/chat/completions",
                          json={"messages": messages, "tools": tools, "max_tokens": 1}, timeout=60)
    assert counted == response.json()["usage"]["prompt_tokens"]


async def test_async_tokenizer_matches_sync_and_runs_concurrently(llama3_server: RunningServer) -> None:
    async with AsyncServerClient(llama3_server.base_url) as client:
        tokenizer = AsyncTokenizer(client)
        texts = [f"message number {i} please" for i in range(20)]
        counts = await asyncio.gather(*(tokenizer.count_tokens(t) for t in texts))
        sync = Tokenizer(ServerClient(llama3_server.base_url))
        assert counts == [sync.count_tokens(t) for t in texts]
        assert await tokenizer.count_message_tokens(CONVERSATIONS["multi turn"]) == \
            sync.count_message_tokens(CONVERSATIONS["multi turn"])
