"""ScriptedProvider: every reply kind, the real provider's checks and retries, recording, usage."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from llamafile_provider.errors import CompletionError, ConfigurationError, ServerUnreachableError
from llamafile_provider.messages import ChatMessage, FunctionCall, FunctionSpec, Role, ToolCall
from llamafile_provider.testing import RecordedCall, ScriptedProvider, count_tokens

WEATHER = FunctionSpec(name="get_weather", description="Current weather", parameters={
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
    "additionalProperties": False})
ADD = FunctionSpec(name="add", parameters={
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]})
PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}]


class Weather(BaseModel):
    city: str
    celsius: float


def calls_of(message: ChatMessage) -> list[tuple[str, dict[str, Any]]]:
    return [(c.function.name, c.function.arguments) for c in message.tool_calls]


# ------------------------------------------------------------------------------ reply kinds
async def test_text_reply() -> None:
    provider = ScriptedProvider(["Sunny."])
    response = await provider.create_chat_completion(PROMPT)
    assert response.message == ChatMessage.assistant("Sunny.")
    assert response.parsed_result is None and response.finish_reason == "stop" and response.tool_mode is None
    assert response.model == "scripted-smart" and provider.pending == 0


async def test_tool_call_and_function_call_replies() -> None:
    call = ToolCall(id="call_fixed", function=FunctionCall(name="get_weather", arguments={"city": "Paris"}))
    provider = ScriptedProvider([call, FunctionCall(name="add", arguments={"a": 1, "b": 2})])
    first = await provider.create_chat_completion(PROMPT, functions=[WEATHER, ADD])
    assert first.message.tool_calls == [call] and first.finish_reason == "tool_calls" and first.tool_mode == "native"
    second = await provider.create_chat_completion(PROMPT, functions=[WEATHER, ADD])
    assert calls_of(second.message) == [("add", {"a": 1, "b": 2})]
    assert second.message.tool_calls[0].id.startswith("call_")  # ids are made up so tool results can refer to them


async def test_list_of_calls_is_one_parallel_reply() -> None:
    second = ToolCall(id="c2", function=FunctionCall(name="add", arguments={"a": 1, "b": 1}))
    provider = ScriptedProvider().queue([FunctionCall(name="get_weather", arguments={"city": "Paris"}), second])
    response = await provider.create_chat_completion(PROMPT, functions=[WEATHER, ADD])
    assert calls_of(response.message) == [("get_weather", {"city": "Paris"}), ("add", {"a": 1, "b": 1})]
    ids = [c.id for c in response.message.tool_calls]
    assert ids[1] == "c2" and len(set(ids)) == 2


async def test_dict_reply_with_content_and_openai_style_functions() -> None:
    provider = ScriptedProvider([{"content": "Let me check.", "tool_calls": [
        {"id": "abc", "name": "get_weather", "arguments": {"city": "Oslo"}}]}])
    response = await provider.create_chat_completion(PROMPT, functions=[WEATHER.to_openai()])
    assert response.message.content == "Let me check."
    assert calls_of(response.message) == [("get_weather", {"city": "Oslo"})]
    assert response.message.tool_calls[0].id == "abc"


async def test_chat_message_reply_and_copies() -> None:
    scripted = ChatMessage.assistant("Hello.")
    provider = ScriptedProvider([scripted])
    response = await provider.create_chat_completion(PROMPT)
    response.message.content = "changed"
    assert response.message is not scripted and scripted.content == "Hello."


async def test_exception_reply_is_raised_then_the_script_goes_on() -> None:
    provider = ScriptedProvider([ServerUnreachableError("down", url="http://x"), "Back."])
    with pytest.raises(ServerUnreachableError, match="down"):
        await provider.create_chat_completion(PROMPT)
    assert (await provider.create_chat_completion(PROMPT)).message.content == "Back."


@pytest.mark.parametrize("reply, problem", [
    (ChatMessage.user("hi"), "assistant message"),
    (42, "cannot script a reply of type int"),
    ({"text": "hi"}, "'content' and 'tool_calls' only"),
    ([{"arguments": {}}], "not a scripted tool call"),
    ({"tool_calls": [{"name": "add", "arguments": [1, 2]}]}, "arguments must be an object"),
])
def test_unusable_replies_fail_where_they_are_queued(reply: Any, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        ScriptedProvider().queue(reply)


# ------------------------------------------------------------------- checks like the real provider
@pytest.mark.parametrize("reply, kwargs, problem", [
    ({"tool_calls": [{"name": "get_weather", "arguments": {"city": 3}}]}, {}, r"arguments\.city"),
    ({"tool_calls": [{"name": "get_weather", "arguments": {}}]}, {}, "'city' is a required property"),
    (FunctionCall(name="search"), {}, "unknown function 'search'"),
    (FunctionCall(name="add", arguments={"a": 1, "b": 2}), {"tool_choice": "get_weather"}, "unknown function 'add'"),
    (FunctionCall(name="add", arguments={"a": 1, "b": 2}), {"tool_choice": "none"}, "allows no tool call"),
    ("plain text", {"tool_choice": "required"}, "requires a tool call"),
])
async def test_invalid_scripted_calls_are_test_bugs(reply: Any, kwargs: dict[str, Any], problem: str) -> None:
    provider = ScriptedProvider([reply])
    with pytest.raises(ConfigurationError, match="bug in the test script") as info:
        await provider.create_chat_completion(PROMPT, functions=[WEATHER, ADD], **kwargs)
    assert info.match(problem)


async def test_calls_without_functions_are_refused() -> None:
    provider = ScriptedProvider([FunctionCall(name="add", arguments={"a": 1, "b": 2})])
    with pytest.raises(ConfigurationError, match="allows no tool call"):
        await provider.create_chat_completion(PROMPT)


async def test_bad_request_arguments_are_refused_like_the_real_provider() -> None:
    provider = ScriptedProvider(["x"])
    with pytest.raises(ConfigurationError, match="unknown function 'nope'"):
        await provider.create_chat_completion(PROMPT, functions=[WEATHER], tool_choice="nope")
    with pytest.raises(ConfigurationError, match="unknown model 'gpt-4'"):
        await provider.create_chat_completion(PROMPT, model_name="gpt-4")
    with pytest.raises(ConfigurationError, match="response_schema"):
        await provider.create_chat_completion(PROMPT, response_schema=42)
    assert provider.pending == 1


async def test_exhausted_script() -> None:
    provider = ScriptedProvider(["only one"])
    await provider.create_chat_completion(PROMPT)
    with pytest.raises(ConfigurationError, match=r"no scripted reply left.*\.queue\(\.\.\.\)"):
        await provider.create_chat_completion(PROMPT)


# ------------------------------------------------------------------- parsing and retries
async def test_parser_failure_consumes_the_next_reply_as_the_retry() -> None:
    seen: list[str] = []

    def parse(message: ChatMessage) -> int:
        seen.append(message.content)
        return int(message.content)

    provider = ScriptedProvider(["forty-two", "42", "unused"])
    response = await provider.create_chat_completion(PROMPT, completion_parser=parse)
    assert response.parsed_result == 42 and seen == ["forty-two", "42"]
    assert provider.calls[0].attempts == 2 and provider.pending == 1
    assert response.usage.requests == 2 and provider.usage.requests == 2


async def test_parser_gives_up_after_fix_failed_parse_tries() -> None:
    provider = ScriptedProvider(["a", "b", "c", "d", "e"], fix_failed_parse_tries=3)
    with pytest.raises(CompletionError, match="4 attempts: ValueError") as info:
        await provider.create_chat_completion(PROMPT, completion_parser=lambda m: int(m.content))
    assert isinstance(info.value.__cause__, ValueError) and provider.pending == 1


async def test_response_schema_with_a_pydantic_model_retries_bad_json() -> None:
    provider = ScriptedProvider(['{"city": "Paris"}', '{"city": "Paris", "celsius": 21.5}'])
    response = await provider.create_chat_completion(PROMPT, response_schema=Weather)
    assert response.parsed_result == Weather(city="Paris", celsius=21.5)
    assert provider.calls[0].attempts == 2 and provider.calls[0].response_schema is Weather


async def test_response_schema_as_json_schema_dict() -> None:
    provider = ScriptedProvider(['{"n": 3}'])
    response = await provider.create_chat_completion(
        PROMPT, response_schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    assert response.parsed_result == {"n": 3}


async def test_prefill_is_prepended_to_text_not_to_calls() -> None:
    provider = ScriptedProvider([' "Paris", "celsius": 20}', FunctionCall(name="get_weather", arguments={"city": "X"})])
    response = await provider.create_chat_completion(PROMPT, prefill_response='{"city":', response_schema=Weather)
    assert response.message.content == '{"city": "Paris", "celsius": 20}' and response.parsed_result.celsius == 20
    response = await provider.create_chat_completion(PROMPT, functions=[WEATHER], prefill_response="{")
    assert response.message.content == ""


# ------------------------------------------------------------------- recording, usage, streaming
async def test_every_call_is_recorded() -> None:
    provider = ScriptedProvider(["ok"])
    await provider.create_chat_completion(PROMPT, "fast", None, [WEATHER], 64, tool_choice="auto",
                                          temperature=0.2, reasoning_effort="high")
    [record] = provider.calls
    assert isinstance(record, RecordedCall)
    assert [m.role for m in record.messages] == [Role.SYSTEM, Role.USER]
    assert record.messages[1].content == "Weather in Paris?"
    assert record.model_name == "fast" and record.functions == [WEATHER] and record.tool_choice == "auto"
    assert record.max_output_tokens == 64 and record.kwargs == {"temperature": 0.2, "reasoning_effort": "high"}
    assert not record.stream and record.attempts == 1


async def test_usage_is_a_word_estimate_per_call_and_model() -> None:
    provider = ScriptedProvider(["Sunny and warm.", FunctionCall(name="add", arguments={"a": 1, "b": 2})])
    first = await provider.create_chat_completion(PROMPT)
    assert (first.usage.prompt_tokens, first.usage.completion_tokens, first.usage.requests) == (5, 3, 1)
    second = await provider.create_chat_completion(PROMPT, "fast", functions=[ADD])
    assert second.usage.completion_tokens == count_tokens('add {"a": 1, "b": 2}') == 5
    assert provider.usage.total_tokens == 18 and provider.usage.requests == 2
    assert provider.usage_by_model["smart"].total_tokens == 8 and provider.usage_by_model["fast"].requests == 1


async def test_streaming_yields_words_then_counts_usage() -> None:
    provider = ScriptedProvider(["It is  sunny\nin Paris. ", FunctionCall(name="add", arguments={"a": 1, "b": 2})])
    pieces = [piece async for piece in provider.stream_chat_completion(PROMPT, max_output_tokens=8, seed=1)]
    assert pieces == ["It", " is", "  sunny", "\nin", " Paris.", " "] and "".join(pieces) == "It is  sunny\nin Paris. "
    assert provider.usage.completion_tokens == 5 and provider.usage.prompt_tokens == 5
    assert provider.calls[0].stream and provider.calls[0].kwargs == {"seed": 1}
    with pytest.raises(ConfigurationError, match="has tool calls"):
        [piece async for piece in provider.stream_chat_completion(PROMPT)]


async def test_tokens_models_and_lifecycle() -> None:
    async with ScriptedProvider(token_limit=4096) as provider:
        assert provider.count_tokens("three short words") == 3
        assert provider.count_message_tokens(PROMPT) == await provider.acount_message_tokens(PROMPT) == 5
        assert provider.get_token_limit("fast") == 4096
        models = await provider.get_available_chat_models()
        assert [m.alias for m in models] == ["smart", "fast"] and models == await provider.get_available_models()
        assert provider.count_tokens("x", models[1].name) == 1  # listed names are accepted as model names
        with pytest.raises(ConfigurationError, match="unknown model"):
            provider.get_token_limit("gpt-4")
    assert provider.closed


# ------------------------------------------------------------------- the example
def test_example_agent_loop_runs(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).parent.parent / "examples" / "scripted_double.py"
    spec = importlib.util.spec_from_file_location("scripted_double_example", path)
    assert spec and spec.loader
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    conversation = example.main()
    assert [m.role for m in conversation] == [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]
    assert conversation[3].tool_call_id == conversation[2].tool_calls[0].id
    out = capsys.readouterr().out
    assert 'get_weather({"city": "Paris"})' in out and "It is sunny in Paris" in out
