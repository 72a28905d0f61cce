"""``functions`` together with ``response_schema`` in ONE constrained reply
(real test-bed servers), bad schemas refused before any request, native arguments as objects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field

from llamafile_provider import cascade
from llamafile_provider.cascade import ToolMode
from llamafile_provider.errors import ConfigurationError
from llamafile_provider.messages import ChatMessage, FunctionSpec
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.tools import TOOL_CALL_KEY, combined_schema, normalize_tool_choice, validate_call
from testbed.server import RunningServer, free_port
from tests.test_provider import FUNCTIONS, provider_for


class Thoughts(BaseModel):
    """An AutoGPT-like thoughts object (bounded, so the tiny model closes it)."""

    text: str = Field(max_length=24)
    plan: list[str] = Field(max_length=2)
    confident: bool


PROMPT = [ChatMessage.system("You are an agent. Think, then call a tool."), ChatMessage.user("Weather in Oslo?")]


async def _both(server: RunningServer, choice: Any = "required", **settings: Any) -> Any:
    async with provider_for(server, fix_failed_parse_tries=0, **settings) as provider:
        return await provider.create_chat_completion(PROMPT, functions=FUNCTIONS, tool_choice=choice,
                                                     response_schema=Thoughts, max_output_tokens=400)


def _check(response: Any, names: set[str]) -> None:
    assert isinstance(response.parsed_result, Thoughts)
    fields = json.loads(response.message.content)
    assert TOOL_CALL_KEY not in fields and Thoughts.model_validate(fields) == response.parsed_result
    [call] = response.message.tool_calls
    assert call.function.name in names and validate_call(call.function, FUNCTIONS) == []
    assert response.usage.requests == 1  # right on the first try: the reply could not be otherwise


@pytest.mark.server
@pytest.mark.parametrize(("fixture", "mode"), [("hermes_server", "native"), ("chatml_server", "constrained"),
                                               ("mistral_server", "constrained")])
async def test_schema_and_tool_call_in_one_reply(request: pytest.FixtureRequest, fixture: str, mode: str) -> None:
    response = await _both(request.getfixturevalue(fixture))
    assert response.tool_mode == mode
    _check(response, {"get_weather", "add"})


@pytest.mark.server
async def test_a_named_function_is_the_one_called(chatml_server: RunningServer) -> None:
    _check(await _both(chatml_server, "add"), {"add"})


@pytest.mark.server
async def test_native_mode_renders_the_tools_and_still_gets_the_call(hermes_server: RunningServer) -> None:
    """llama-server lets response_format win over tools; the combined object keeps the call."""
    async with provider_for(hermes_server) as provider:
        plain = await provider.acount_message_tokens(PROMPT)
        with_tools = await provider.acount_message_tokens(PROMPT, functions=FUNCTIONS, tool_choice="required",
                                                          response_schema=Thoughts, max_output_tokens=400)
    response = await _both(hermes_server)
    assert response.usage.prompt_tokens == with_tools > plain
    _check(response, {"get_weather", "add"})


@pytest.mark.server
async def test_grammar_path_of_the_classic_server(classic_server: RunningServer) -> None:
    response = await _both(classic_server)
    assert response.tool_mode == "constrained"
    _check(response, {"get_weather", "add"})


def test_combined_schema_accepts_exactly_fields_plus_one_valid_call() -> None:
    schema = combined_schema(Thoughts.model_json_schema(), FUNCTIONS, "required")
    validator = Draft202012Validator(schema)
    good = {"text": "hi", "plan": [], "confident": True, TOOL_CALL_KEY: {"name": "add", "arguments": {"a": 1, "b": 2}}}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, TOOL_CALL_KEY: {"name": "add", "arguments": {"a": 1}}})
    assert not validator.is_valid({**good, TOOL_CALL_KEY: None})
    assert Draft202012Validator(combined_schema(Thoughts.model_json_schema(), FUNCTIONS, "auto")).is_valid(
        {**good, TOOL_CALL_KEY: None})


def test_compat_combined_reply_is_read_from_free_text() -> None:
    choice = normalize_tool_choice("required", FUNCTIONS)
    text = ('Here you go:\n```json\n{text: "ok", plan: ["a"], confident: true, '
            '"tool_call": {"name": "add", "arguments": {"a": 1, "b": 2}},}\n```')
    reply = cascade.read_combined(ToolMode.COMPAT, text, FUNCTIONS, choice)
    assert reply.problems == [] and json.loads(reply.content) == {"text": "ok", "plan": ["a"], "confident": True}
    assert [(c.name, c.arguments) for c in reply.calls] == [("add", {"a": 1, "b": 2})]
    bad = cascade.read_combined(ToolMode.COMPAT, '{"text": "ok", "tool_call": {"name": "add"}}', FUNCTIONS, choice)
    assert any("'a' is a required property" in p for p in bad.problems)


# ----------------------------------------------------------------------------- item 12
def _nowhere(**settings: Any) -> LlamafileProvider:
    """A provider whose server does not exist: any request would fail as unreachable."""
    return LlamafileProvider(smart_llm_url=f"http://127.0.0.1:{free_port()}", max_retries=0, startup_timeout=0,
                             **settings)


@pytest.mark.parametrize("arguments", [
    {"response_schema": {"type": 5}},
    {"response_schema": {"type": "object", "properties": {"a": {"type": "strin"}}}},
    {"functions": [FunctionSpec(name="f", parameters={"type": "object", "properties": {"x": {"type": 5}}})]},
    {"functions": FUNCTIONS, "response_schema": {"type": "array", "items": {"type": "string"}}},
    {"functions": FUNCTIONS, "response_schema": {"type": "object", "properties": {TOOL_CALL_KEY: {}}}},
])
async def test_bad_schemas_fail_before_any_request(arguments: dict[str, Any]) -> None:
    async with _nowhere() as provider:
        with pytest.raises(ConfigurationError, match="schema|tool_call"):
            await provider.create_chat_completion([ChatMessage.user("hi")], **arguments)


@pytest.mark.parametrize("arguments", [{"a": 1, "b": 2}, '{"a": 1, "b": 2}', "{a: 1, b: 2,}"])
def test_native_arguments_as_object_or_string(arguments: Any) -> None:
    call = {"id": "x", "type": "function", "function": {"name": "add", "arguments": arguments}}
    reply = cascade.read_reply(ToolMode.NATIVE, "", [call], FUNCTIONS, normalize_tool_choice("auto", FUNCTIONS))
    assert reply.problems == [] and [(c.name, c.arguments) for c in reply.calls] == [("add", {"a": 1, "b": 2})]
    broken = {**call, "function": {"name": "add", "arguments": [1, 2]}}
    assert cascade.read_reply(ToolMode.NATIVE, "", [broken], FUNCTIONS,
                              normalize_tool_choice("auto", FUNCTIONS)).problems
