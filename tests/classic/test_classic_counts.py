"""Exact prompt-token counts on the real classic server: the probed layout, rendered locally,
tokenized once, equals the server's own ``prompt_tokens`` for every model and conversation shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from llamafile_provider import LlamafileProvider
from llamafile_provider.errors import AuthenticationError
from llamafile_provider.server import ServerClient
from llamafile_provider.tokenizer import ESTIMATE_TEMPLATE, Tokenizer
from testbed.server import RunningServer, ServerConfig, ServerPool
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.classic

SHAPES: dict[str, list[dict[str, Any]]] = {
    "user": [{"role": "user", "content": "hello"}],
    "system first": [{"role": "system", "content": "You are a helpful agent."},
                     {"role": "user", "content": "what is the weather in the city"}],
    "multi-turn": [{"role": "system", "content": "be short"}, {"role": "user", "content": "hi"},
                   {"role": "assistant", "content": "hello there"}, {"role": "user", "content": "and now"}],
    "trailing assistant": [{"role": "user", "content": "reply in json"},
                           {"role": "assistant", "content": '{"thoughts":'}],
    "padded and unicode": [{"role": "user", "content": "  héllo wörld \n\n"},
                           {"role": "assistant", "content": "\tok  "}, {"role": "user", "content": " 🙂 "}],
    "two systems": [{"role": "system", "content": "one"}, {"role": "user", "content": "a"},
                    {"role": "system", "content": "ERROR PARSING YOUR RESPONSE"}, {"role": "user", "content": "b"}],
    "tool result": [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": "calling"},
                    {"role": "tool", "content": '{"temperature": 21}'}],
    "empty content": [{"role": "user", "content": ""}, {"role": "assistant", "content": None},
                      {"role": "user", "content": "x"}],
}

EXPECTED_LAYOUT = {"mistral": "llama2", "chatml": "chatml", "llama3": "chatml", "hermes": "chatml"}


def prompt_tokens(server: RunningServer, messages: list[dict[str, Any]]) -> int:
    body = httpx.post(server.base_url + "/v1/chat/completions",
                      json={"messages": messages, "max_tokens": 1}, timeout=60).json()
    return int(body["usage"]["prompt_tokens"])


@pytest.mark.parametrize("shape", list(SHAPES))
def test_count_equals_prompt_tokens(any_classic_server: RunningServer, shape: str) -> None:
    messages = SHAPES[shape]
    with ServerClient(any_classic_server.base_url) as client:
        counted = Tokenizer(client).count_message_tokens(messages)
    assert counted == prompt_tokens(any_classic_server, messages)


def test_each_model_gets_the_layout_the_server_picks(any_classic_server: RunningServer) -> None:
    model = any_classic_server.config.model.name.split("-")[0]
    with ServerClient(any_classic_server.base_url) as client:
        info = client.detect_chat_format()
    assert info.chat_format == EXPECTED_LAYOUT[model]
    assert info.add_bos is (model in ("mistral", "llama3"))


def test_the_probe_runs_once_per_server(classic_server: RunningServer) -> None:
    seen: list[str] = []
    transport = httpx.HTTPTransport()

    class Recording(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.url.path)
            return transport.handle_request(request)

    with ServerClient(classic_server.base_url, http_client=httpx.Client(transport=Recording())) as client:
        tokenizer = Tokenizer(client)
        for shape in ("user", "multi-turn", "system first"):
            tokenizer.count_message_tokens(SHAPES[shape])
    assert seen.count("/v1/chat/completions") == 1 and seen.count("/slots") == 1


async def test_provider_counts_what_it_sends(classic_server: RunningServer) -> None:
    messages = SHAPES["multi-turn"]
    async with LlamafileProvider(smart_llm_url=classic_server.base_url, fast_llm_url=classic_server.base_url) as llm:
        counted = await llm.acount_message_tokens(messages)
        reply = await llm.create_chat_completion(messages, max_output_tokens=2)
        assert llm.count_message_tokens(messages) == counted
    assert counted == reply.usage.prompt_tokens


def test_the_old_chatml_estimate_was_far_off(classic_server: RunningServer) -> None:
    """Before/after on the Mistral-template model: the ChatML estimate vs the exact count."""
    messages = SHAPES["multi-turn"]
    with ServerClient(classic_server.base_url) as client:
        exact = Tokenizer(client).count_message_tokens(messages)
        estimate = len(client.tokenize(ESTIMATE_TEMPLATE.render(messages))) + 1
    actual = prompt_tokens(classic_server, messages)
    assert exact == actual and estimate != actual


# --- every b2282 layout, chosen with --chat-template (b2282 matches it by substring) -----------
LAYOUT_TEMPLATES = {
    "chatml": "<|im_start|>",
    "llama2": "[INST]",
    "llama2+sys": "[INST] <<SYS>>",
    "llama2+space": "[INST] ' ' + eos_token",
    "llama2+bos": "[INST] bos_token + '[INST]",
    "llama2+strip": "[INST] content.strip()",
    "llama2+sys+space+bos+strip": "[INST] <<SYS>> ' ' + eos_token bos_token + '[INST] content.strip()",
    "zephyr": "<|user|>",
    "monarch": "bos_token + message['role']",
    "gemma": "<start_of_turn>",
}


@pytest.fixture(scope="module", params=list(LAYOUT_TEMPLATES))
def layout_server(request: pytest.FixtureRequest, classic_pool: ServerPool,
                  models: dict[str, Path]) -> tuple[str, RunningServer]:
    config = ServerConfig(model=models["mistral"], classic=True, ctx_size=4096, slots=1,
                          extra_args=("--chat-template", LAYOUT_TEMPLATES[request.param]))
    try:
        return request.param, classic_pool.get(config)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"could not start the classic server with layout {request.param}: {exc}", pytrace=False)


def test_every_b2282_layout_is_identified_and_counted_exactly(layout_server: tuple[str, RunningServer]) -> None:
    name, server = layout_server
    with ServerClient(server.base_url) as client:
        tokenizer = Tokenizer(client)
        assert client.detect_chat_format().chat_format == name
        for messages in SHAPES.values():
            assert tokenizer.count_message_tokens(messages) == prompt_tokens(server, messages)


def test_without_slots_the_layout_is_found_by_counting(classic_noslots_server: RunningServer) -> None:
    assert httpx.get(classic_noslots_server.base_url + "/slots").status_code == 404
    with ServerClient(classic_noslots_server.base_url) as client:
        info = client.detect_chat_format()
        assert (info.chat_format, info.add_bos) == ("llama2", True)
        messages = SHAPES["padded and unicode"]
        assert Tokenizer(client).count_message_tokens(messages) == prompt_tokens(classic_noslots_server, messages)


def test_count_on_a_keyed_server_without_the_key_is_refused_loudly(classic_keyed_server: RunningServer) -> None:
    """Without the key the probe cannot run: the error says so instead of a silent estimate."""
    with ServerClient(classic_keyed_server.base_url) as client:
        with pytest.raises(AuthenticationError, match="LLAMAFILE_API_KEY"):
            Tokenizer(client).count_message_tokens(SHAPES["user"])


def test_count_on_a_keyed_server_with_the_key_is_exact(classic_keyed_server: RunningServer) -> None:
    messages = SHAPES["system first"]
    with ServerClient(classic_keyed_server.base_url, api_key=TEST_API_KEY) as client:
        counted = Tokenizer(client).count_message_tokens(messages)
    body = httpx.post(classic_keyed_server.base_url + "/v1/chat/completions", json={"messages": messages, "max_tokens": 1},
                      headers={"Authorization": f"Bearer {TEST_API_KEY}"}).json()
    assert counted == body["usage"]["prompt_tokens"]
