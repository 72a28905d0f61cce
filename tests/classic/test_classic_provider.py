"""The provider on the REAL classic server: prefill, finish_reason, GBNF tool calls, streams."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import httpx
import pytest

from llamafile_provider import FunctionSpec, LlamafileProvider, chat_formats
from testbed.server import RunningServer

pytestmark = pytest.mark.classic

PREFILL = '{"thoughts":'
WEATHER = FunctionSpec(name="get_weather", description="Current weather for a city",
                       parameters={"type": "object", "required": ["city"],
                                   "properties": {"city": {"type": "string"},
                                                  "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}})


def provider_for(server: RunningServer, **overrides: Any) -> LlamafileProvider:
    return LlamafileProvider(smart_llm_url=server.base_url, fast_llm_url=server.base_url, **overrides)


def served_prompt(server: RunningServer, marker: str) -> str:
    """The prompt text the server built for the request whose messages hold ``marker``."""
    prompts = [slot["prompt"] for slot in httpx.get(server.base_url + "/slots").json()
               if isinstance(slot.get("prompt"), str) and marker in slot["prompt"]]
    assert len(prompts) == 1, prompts
    return prompts[0]


@pytest.mark.parametrize("fixture", ["classic_server", "classic_chatml_server"])
async def test_prefill_is_continued_not_repeated(request: pytest.FixtureRequest, fixture: str) -> None:
    server: RunningServer = request.getfixturevalue(fixture)
    marker = secrets.token_hex(4)
    messages = [{"role": "system", "content": "Reply in JSON."}, {"role": "user", "content": f"task {marker}"}]
    async with provider_for(server) as llm:
        reply = await llm.create_chat_completion(messages, prefill_response=PREFILL, max_output_tokens=8)
        layout = (await llm.router.candidates("smart")[0].client.info()).chat_format
    prompt = served_prompt(server, marker)
    # The server continued OUR prompt: the layout's rendering with the prefill appended, not a
    # closed assistant turn followed by a fresh one.
    assert prompt == chat_formats.render(layout or "", messages) + PREFILL
    assert reply.message.content is not None and reply.message.content.startswith(PREFILL)
    assert reply.message.content.count(PREFILL) == 1
    tokens = httpx.post(server.base_url + "/tokenize", json={"content": prompt}).json()["tokens"]
    assert reply.usage.prompt_tokens == len(tokens) + (1 if fixture == "classic_server" else 0)


async def test_prefill_continues_on_a_keyed_server(classic_keyed_server: RunningServer) -> None:
    from tests.conftest import TEST_API_KEY

    async with provider_for(classic_keyed_server, api_key=TEST_API_KEY) as llm:
        reply = await llm.create_chat_completion([{"role": "user", "content": "go"}], prefill_response=PREFILL,
                                                 max_output_tokens=4)
    assert reply.message.content is not None and reply.message.content.startswith(PREFILL)


async def test_prefill_with_a_grammar_is_dropped_with_one_log_line(classic_server: RunningServer,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    marker = secrets.token_hex(4)
    schema = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}
    async with provider_for(classic_server) as llm:
        with caplog.at_level(logging.WARNING, logger="llamafile_provider.provider"):
            reply = await llm.create_chat_completion([{"role": "user", "content": f"q {marker}"}],
                                                     prefill_response=PREFILL, response_schema=schema,
                                                     max_output_tokens=64)
    assert PREFILL not in served_prompt(classic_server, marker)
    assert reply.message.content is not None and not reply.message.content.startswith(PREFILL)
    assert isinstance(reply.parsed_result, dict) and "answer" in reply.parsed_result
    assert [r.message for r in caplog.records].count(
        f"{classic_server.base_url} (classic): prefill dropped, "
        "the reply is constrained to a schema, which fixes how it starts") == 1


async def test_finish_reason_says_length_at_the_token_limit(classic_server: RunningServer) -> None:
    messages = [{"role": "user", "content": "hello"}]
    async with provider_for(classic_server) as llm:
        cut = await llm.create_chat_completion(messages, max_output_tokens=1)
        free = await llm.create_chat_completion(messages, max_output_tokens=64)
        cut_prefilled = await llm.create_chat_completion(messages, max_output_tokens=1, prefill_response=PREFILL)
    assert (cut.usage.completion_tokens, cut.finish_reason) == (1, "length")
    assert free.usage.completion_tokens < 64 and free.finish_reason == "stop"
    assert cut_prefilled.finish_reason == "length"


@pytest.mark.parametrize("fixture", ["classic_server", "classic_chatml_server"])
async def test_constrained_tool_calls_are_all_valid(request: pytest.FixtureRequest, fixture: str) -> None:
    """GBNF from the function specs (classic ignores tools and response_format). Few attempts:
    b2282 checks the grammar against every candidate token (~0.1-0.5 s per token on 2 busy cores)."""
    async with provider_for(request.getfixturevalue(fixture), fix_failed_parse_tries=0) as llm:
        for attempt in range(2):
            reply = await llm.create_chat_completion([{"role": "user", "content": f"weather {attempt}?"}],
                                                     functions=[WEATHER], tool_choice="required",
                                                     max_output_tokens=128)
            assert reply.tool_mode == "constrained"
            calls = reply.message.tool_calls or []
            assert calls and calls[0].function.name == "get_weather"
            assert isinstance(calls[0].function.arguments.get("city"), str)


async def test_stream_ends_without_done(classic_server: RunningServer) -> None:
    async with provider_for(classic_server) as llm:
        parts = [part async for part in llm.stream_chat_completion([{"role": "user", "content": "hi"}],
                                                                   max_output_tokens=6)]
        assert parts and llm.usage.requests == 1
