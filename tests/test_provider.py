"""LlamafileProvider against real test-bed servers (the tiny models speak gibberish: what is
checked is that the machinery — folding, cascade, validation, routing, usage — holds)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from llamafile_provider.errors import (
    AuthenticationError,
    CompletionError,
    ConfigurationError,
    InvalidToolCallError,
    ServerUnreachableError,
    UnsupportedFeatureError,
)
from llamafile_provider.messages import ChatMessage, FunctionSpec
from llamafile_provider.provider import LlamafileProvider
from testbed.server import RunningServer, ServerConfig, ServerPool, free_port
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.server

FUNCTIONS = [
    FunctionSpec(name="get_weather", description="Current weather for a city",
                 parameters={"type": "object", "required": ["city"],
                             "properties": {"city": {"type": "string"},
                                            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}),
    FunctionSpec(name="add", description="Add two integers",
                 parameters={"type": "object", "required": ["a", "b"],
                             "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}),
]
AUTOGPT_LIKE = [
    ChatMessage.system("You are an autonomous agent. Reply in JSON."),
    ChatMessage.user("Task: find the weather in Paris."),
    ChatMessage.system("ERROR PARSING YOUR RESPONSE:\n\nValueError: not JSON"),
    ChatMessage.user("Try again."),
]


def provider_for(server: RunningServer, **overrides: object) -> LlamafileProvider:
    return LlamafileProvider(smart_llm_url=server.base_url + "/v1", fast_llm_url=server.base_url, **overrides)


async def test_plain_chat_returns_message_usage_and_finish_reason(any_server: RunningServer) -> None:
    async with provider_for(any_server) as provider:
        response = await provider.create_chat_completion([{"role": "user", "content": "hello"}],
                                                         max_output_tokens=32, temperature=0)
    assert response.message.role.value == "assistant" and response.message.content
    assert response.finish_reason == "stop"
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    assert provider.usage.requests == 1 and provider.usage_by_model["smart"].requests == 1


async def test_agent_style_conversations_fold_for_every_template(any_server: RunningServer) -> None:
    """System messages mid-conversation and repeated user turns: no template 400 anywhere."""
    async with provider_for(any_server) as provider:
        response = await provider.create_chat_completion(AUTOGPT_LIKE, max_output_tokens=8)
    assert response.usage.requests == 1


ROLES = st.sampled_from(["system", "user", "assistant"])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=st.lists(st.tuples(ROLES, st.text(min_size=1, max_size=30)), min_size=1, max_size=7))
async def test_any_sequence_is_accepted_by_the_mistral_template(mistral_server: RunningServer,
                                                                turns: list[tuple[str, str]]) -> None:
    messages = [{"role": role, "content": text} for role, text in turns]
    if all(not text.strip() for _, text in turns):
        messages.append({"role": "user", "content": "hi"})
    async with provider_for(mistral_server, max_retries=0) as provider:
        await provider.create_chat_completion(messages, max_output_tokens=4)


@pytest.mark.parametrize("mode", ["constrained", "compat"])
async def test_tool_calls_are_validated_calls(chatml_server: RunningServer, mode: str) -> None:
    async with provider_for(chatml_server, tool_mode=mode, fix_failed_parse_tries=3) as provider:
        if mode == "compat":  # gibberish never writes a call by itself: the retries end in a typed error
            with pytest.raises(InvalidToolCallError) as caught:
                await provider.create_chat_completion(AUTOGPT_LIKE, functions=FUNCTIONS, tool_choice="required",
                                                      max_output_tokens=64, temperature=0)
            assert caught.value.attempts == 4 and provider.usage.requests == 4
            return
        response = await provider.create_chat_completion(AUTOGPT_LIKE, functions=FUNCTIONS,
                                                         tool_choice="required", max_output_tokens=256)
    assert response.tool_mode == "constrained"
    [call] = response.message.tool_calls
    assert call.id.startswith("call_") and call.function.name in {"get_weather", "add"}
    if call.function.name == "add":
        assert isinstance(call.function.arguments["a"], int)


async def test_named_tool_choice_is_honoured(mistral_server: RunningServer) -> None:
    async with provider_for(mistral_server) as provider:
        for _ in range(3):
            response = await provider.create_chat_completion(AUTOGPT_LIKE, functions=FUNCTIONS,
                                                             tool_choice="add", max_output_tokens=256)
            assert [c.function.name for c in response.message.tool_calls] == ["add"]


async def test_native_tool_calls_on_a_tools_template(hermes_server: RunningServer) -> None:
    async with provider_for(hermes_server) as provider:
        response = await provider.create_chat_completion(
            [{"role": "user", "content": "weather?"}], functions=[f.to_openai() for f in FUNCTIONS],
            tool_choice="required", max_output_tokens=256)
        assert response.tool_mode == "native"
        call = response.message.tool_calls[0]
        follow_up = [{"role": "user", "content": "weather?"}, response.message,
                     ChatMessage.tool_result("18 degrees", call.id)]
        again = await provider.create_chat_completion(follow_up, functions=FUNCTIONS, max_output_tokens=256)
    assert again.usage.requests == 1  # the native tool turn folded into a form the template takes


async def test_tool_choice_none_sends_no_tools(hermes_server: RunningServer) -> None:
    async with provider_for(hermes_server) as provider:
        response = await provider.create_chat_completion([{"role": "user", "content": "hi"}], functions=FUNCTIONS,
                                                         tool_choice="none", max_output_tokens=32)
    assert response.message.tool_calls == [] and response.tool_mode is None


class Forecast(BaseModel):
    city: str
    degrees: int


async def test_structured_output_with_a_pydantic_model(any_server: RunningServer) -> None:
    async with provider_for(any_server) as provider:
        response = await provider.create_chat_completion(AUTOGPT_LIKE, response_schema=Forecast,
                                                         max_output_tokens=256)
    assert isinstance(response.parsed_result, Forecast)


async def test_parser_errors_are_fed_back_then_typed(chatml_server: RunningServer) -> None:
    seen: list[str] = []

    def parser(message: ChatMessage) -> None:
        seen.append(message.content)
        raise ValueError("not the JSON I wanted")

    async with provider_for(chatml_server, fix_failed_parse_tries=2) as provider:
        with pytest.raises(CompletionError, match="ValueError: not the JSON I wanted") as caught:
            await provider.create_chat_completion(AUTOGPT_LIKE, completion_parser=parser, max_output_tokens=16)
    assert len(seen) == 3 and isinstance(caught.value.__cause__, ValueError)


async def test_prefill_is_continued(mistral_server: RunningServer) -> None:
    async with provider_for(mistral_server) as provider:
        response = await provider.create_chat_completion(AUTOGPT_LIKE, prefill_response='{"thoughts":',
                                                         max_output_tokens=16)
    assert response.message.content.startswith('{"thoughts":')


@pytest.mark.parametrize("max_output_tokens", [None, 48])  # a JSON schema, and the bounded grammar
async def test_prefill_with_a_response_schema_is_dropped_not_refused(
        chatml_server: RunningServer, max_output_tokens: int | None, caplog: pytest.LogCaptureFixture) -> None:
    """llama-server refuses a prefill under a grammar (400 "Failed to initialize samplers"); the
    constraint already fixes how the reply starts, so the prefill goes, with one log line."""
    async with provider_for(chatml_server) as provider:
        response = await provider.create_chat_completion(
            [{"role": "user", "content": "Forecast for Paris?"}], response_schema=Forecast,
            prefill_response='{"city":', max_output_tokens=max_output_tokens)
    assert isinstance(response.parsed_result, Forecast) and response.usage.requests == 1
    assert [r.message for r in caplog.records if "prefill dropped" in r.message] == [
        f"{chatml_server.base_url} (llama-server): prefill dropped, "
        "the reply is constrained to a schema, which fixes how it starts"]


async def test_unknown_keyword_arguments_are_dropped(chatml_server: RunningServer) -> None:
    async with provider_for(chatml_server) as provider:
        response = await provider.create_chat_completion(
            [{"role": "user", "content": "hi"}], max_output_tokens=8,
            reasoning_effort="high", thinking_budget_tokens=1024, temperature=0.0)
    assert response.message.content


async def test_llama_cpp_sampling_options_reach_the_server(chatml_server: RunningServer) -> None:
    async with provider_for(chatml_server) as provider:
        response = await provider.create_chat_completion(
            [{"role": "user", "content": "hi"}], max_output_tokens=24, top_k=1, min_p=0.0, ignore_eos=True)
    assert response.finish_reason == "length" and response.usage.completion_tokens == 24  # EOS was ignored


async def test_streaming_yields_text_and_counts_usage(llama3_server: RunningServer) -> None:
    async with provider_for(llama3_server) as provider:
        pieces = [p async for p in provider.stream_chat_completion(AUTOGPT_LIKE, max_output_tokens=32)]
    assert pieces and "".join(pieces).strip()
    assert provider.usage.requests == 1 and provider.usage.completion_tokens > 0


async def test_embeddings_need_the_servers_flag(chatml_server: RunningServer, server_pool: ServerPool,
                                                models: dict[str, Path]) -> None:
    async with provider_for(chatml_server) as provider:
        with pytest.raises(UnsupportedFeatureError, match="--embeddings"):
            await provider.create_embedding("hello")
    embedder = server_pool.get(ServerConfig(model=models["chatml"], extra_args=("--embeddings", "--pooling", "mean")))
    async with provider_for(embedder) as provider:
        vectors = await provider.create_embedding(["hello", "world"])
    assert len(vectors) == 2 and len(vectors[0]) == 64


async def test_failover_to_the_next_equivalent_server(chatml_server: RunningServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with LlamafileProvider(smart_llm_url=f"{dead},{chatml_server.base_url}", max_retries=0) as provider:
        response = await provider.create_chat_completion([{"role": "user", "content": "hi"}], max_output_tokens=8)
        assert response.server_url == chatml_server.base_url
        assert provider.router.groups["smart"][0].url == chatml_server.base_url  # remembered


async def test_smart_to_fast_fallback_is_off_by_default_and_logged_when_on(
        chatml_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with LlamafileProvider(smart_llm_url=dead, fast_llm_url=chatml_server.base_url, max_retries=0,
                                 startup_timeout=0) as provider:  # do not wait for it to start
        with pytest.raises(ServerUnreachableError, match=dead):
            await provider.create_chat_completion([{"role": "user", "content": "hi"}], max_output_tokens=8)
    async with LlamafileProvider(smart_llm_url=dead, fast_llm_url=chatml_server.base_url, max_retries=0,
                                 fallback_to_fast=True) as provider:
        with caplog.at_level(logging.WARNING):
            response = await provider.create_chat_completion([{"role": "user", "content": "hi"}], max_output_tokens=8)
    assert response.server_url == chatml_server.base_url
    assert "falling back to the fast model" in caplog.text


async def test_api_key_setting_reaches_every_request(keyed_server: RunningServer) -> None:
    async with LlamafileProvider(smart_llm_url=keyed_server.base_url, api_key=TEST_API_KEY) as provider:
        assert (await provider.create_chat_completion([{"role": "user", "content": "hi"}],
                                                      max_output_tokens=8)).message.content
        assert provider.count_tokens("hello") > 0
    async with LlamafileProvider(smart_llm_url=keyed_server.base_url, api_key="sk-wrong-key-abcdef") as provider:
        with pytest.raises(AuthenticationError) as caught:
            await provider.create_chat_completion([{"role": "user", "content": "hi"}], max_output_tokens=8)
    assert "sk-wrong-key-abcdef" not in str(caught.value)


async def test_counts_limits_and_models(mistral_server: RunningServer, hermes_server: RunningServer) -> None:
    async with LlamafileProvider(smart_llm_url=hermes_server.base_url, fast_llm_url=mistral_server.base_url) as p:
        counted = p.count_message_tokens(AUTOGPT_LIKE, "fast")
        assert counted == await p.acount_message_tokens(AUTOGPT_LIKE, "fast")
        response = await p.create_chat_completion(AUTOGPT_LIKE, "fast", max_output_tokens=4)
        assert counted == response.usage.prompt_tokens  # exact, after role folding
        assert p.get_token_limit("smart") == 32768 // 4
        models = {m.alias: m for m in await p.get_available_chat_models()}
        assert models["smart"].tool_mode == "native" and models["fast"].tool_mode == "constrained"
        assert p.get_tokenizer("fast").decode(p.get_tokenizer("fast").encode("hello world")) == "hello world"
        with pytest.raises(ConfigurationError, match="unknown model 'gpt-4'"):
            p.count_tokens("x", "gpt-4")


async def test_a_refused_tool_mode_falls_down_the_cascade(nojinja_server: RunningServer) -> None:
    """Forced native tools on a --no-jinja server: 500 "tools param requires --jinja flag"."""
    async with provider_for(nojinja_server, tool_mode="native") as provider:
        response = await provider.create_chat_completion(AUTOGPT_LIKE, functions=FUNCTIONS,
                                                         tool_choice="required", max_output_tokens=256)
        assert response.tool_mode == "constrained" and response.message.tool_calls
        assert provider.router.groups["smart"][0].learned_mode is not None  # remembered for next time
