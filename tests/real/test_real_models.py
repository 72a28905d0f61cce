"""Real small models (SmolLM2-135M-Instruct, Gemma 3 270M) through the provider: exact token
counts, role folding on Gemma's strict template, constrained tool calls and structured output
that close within 64 output tokens on the first try, streaming, a short tool conversation.

Bounded for 2 cores: every request has a small ``max_output_tokens``, temperature 0 and a
fixed seed. The assertions are about validity (schema-valid calls, parsed replies, exact
counts), not about what the model knows.
"""

from __future__ import annotations

import httpx
import pytest
from pydantic import BaseModel

from llamafile_provider import FunctionSpec, LlamafileProvider
from llamafile_provider.messages import ChatMessage
from testbed.server import RunningServer

pytestmark = [pytest.mark.server, pytest.mark.real_model]

WEATHER = FunctionSpec(name="get_weather", description="Current weather in a city",
                       parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
SAMPLING = {"temperature": 0, "seed": 7}
# What AutoGPT sends that strict templates refuse: a mid-conversation system message, two user
# turns in a row, a tool result to a template without tools.
AGENT_CONVERSATION = [
    {"role": "system", "content": "You are a weather agent. Be brief."},
    {"role": "user", "content": "What is the weather in Oslo?"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "Oslo: 3 C, light snow."},
    {"role": "system", "content": "ERROR PARSING YOUR RESPONSE: answer in one sentence."},
    {"role": "user", "content": "And tell me if I need a coat."},
]


def provider(server: RunningServer, **settings: object) -> LlamafileProvider:
    return LlamafileProvider(smart_llm_url=server.base_url, fix_failed_parse_tries=0, **settings)


async def test_token_counts_equal_the_servers_prompt_tokens(any_real_server: RunningServer) -> None:
    conversations = [[{"role": "user", "content": "Hi there!"}],
                     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}],
                     AGENT_CONVERSATION]
    async with provider(any_real_server) as llm:
        for messages in conversations:
            reply = await llm.create_chat_completion(messages, max_output_tokens=1, **SAMPLING)
            assert await llm.acount_message_tokens(messages) == reply.usage.prompt_tokens


async def test_gemma_template_is_strict_and_folding_satisfies_it(gemma3_server: RunningServer) -> None:
    url = gemma3_server.base_url
    rendered = httpx.post(url + "/apply-template", json={"messages": AGENT_CONVERSATION[:2]}, timeout=30).json()
    # the server drops the template's leading BOS text: it adds the BOS token itself
    assert rendered["prompt"].removeprefix("<bos>") == (
        "<start_of_turn>user\nYou are a weather agent. Be brief.\n\n"
        "What is the weather in Oslo?<end_of_turn>\n<start_of_turn>model\n")
    for refused in ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
                    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                     {"role": "system", "content": "c"}, {"role": "user", "content": "d"}]):
        response = httpx.post(url + "/v1/chat/completions", json={"messages": refused, "max_tokens": 1}, timeout=60)
        assert response.status_code == 400 and "Conversation roles must alternate" in response.text
    async with provider(gemma3_server) as llm:
        reply = await llm.create_chat_completion(AGENT_CONVERSATION, max_output_tokens=8, **SAMPLING)
    assert reply.usage.completion_tokens >= 1 and isinstance(reply.message.content, str)


async def test_constrained_tool_calls_are_valid_first_try_within_64_tokens(any_real_server: RunningServer) -> None:
    async with provider(any_real_server) as llm:
        for i, city in enumerate(["Paris", "Tokyo", "Nairobi", "Lima", "San Francisco"]):
            reply = await llm.create_chat_completion(
                [{"role": "user", "content": f"What is the weather in {city}?"}], functions=[WEATHER],
                tool_choice="required", max_output_tokens=64, temperature=0, seed=i)
            assert reply.tool_mode == "constrained" and reply.finish_reason == "stop"
            (call,) = reply.message.tool_calls
            assert call.function.name == "get_weather" and isinstance(call.function.arguments["city"], str)


class Forecast(BaseModel):
    city: str
    temperature_c: int
    sunny: bool


async def test_structured_output_parses_within_64_tokens(any_real_server: RunningServer) -> None:
    async with provider(any_real_server) as llm:
        reply = await llm.create_chat_completion(
            [{"role": "user", "content": "Give the forecast for Rome as JSON."}], response_schema=Forecast,
            max_output_tokens=64, **SAMPLING)
    assert isinstance(reply.parsed_result, Forecast) and reply.finish_reason == "stop"


async def test_streaming_yields_text_and_counts_usage(any_real_server: RunningServer) -> None:
    async with provider(any_real_server) as llm:
        pieces = [piece async for piece in llm.stream_chat_completion(
            [{"role": "user", "content": "Say hello."}], max_output_tokens=12, **SAMPLING)]
        assert "".join(pieces).strip()
        assert 1 <= llm.usage.completion_tokens <= 12 and llm.usage.prompt_tokens > 0


async def test_a_short_tool_conversation(any_real_server: RunningServer) -> None:
    """Call, result, answer: the result goes back through folding (neither template has tools)."""
    messages: list[ChatMessage] = [ChatMessage.user("What is the weather in Oslo? Use the tool.")]
    async with provider(any_real_server) as llm:
        first = await llm.create_chat_completion(messages, functions=[WEATHER], tool_choice="required",
                                                 max_output_tokens=64, **SAMPLING)
        (call,) = first.message.tool_calls
        messages += [first.message, ChatMessage.tool_result("Oslo: 3 C, light snow.", call.id),
                     ChatMessage.user("Now answer me in one sentence.")]
        second = await llm.create_chat_completion(messages, functions=[WEATHER], tool_choice="auto",
                                                  max_output_tokens=64, **SAMPLING)
    assert second.finish_reason == "stop"
    assert second.message.tool_calls or second.message.content.strip()
