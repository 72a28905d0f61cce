"""Tool-call schemas, tool choice, validation, ids and feedback; real-server checks of constrained replies."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from llamafile_provider.errors import ConfigurationError
from llamafile_provider.messages import FunctionCall, FunctionSpec
from llamafile_provider.parsing import parse_tool_calls
from llamafile_provider.tools import (
    ChoiceMode, ToolChoice, compat_instructions, feedback_message, normalize_tool_choice,
    reply_schema, to_tool_calls, new_call_id, validate_call,
)

WEATHER = FunctionSpec(name="get_weather", description="Current weather in a city", parameters={
    "type": "object", "properties": {"city": {"type": "string"},
                                     "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"], "additionalProperties": False})
ADD = FunctionSpec(name="add", description="Add two integers", parameters={
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"]})
SEARCH = FunctionSpec(name="search", description="Search the web", parameters={
    "type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
    "required": ["query"]})
FUNCTIONS = [WEATHER, ADD, SEARCH]


# ----------------------------------------------------------------------------- tool choice
@pytest.mark.parametrize(("choice", "expected"), [
    (None, ToolChoice(ChoiceMode.AUTO)), ("auto", ToolChoice(ChoiceMode.AUTO)),
    ("required", ToolChoice(ChoiceMode.REQUIRED)), ("any", ToolChoice(ChoiceMode.REQUIRED)),
    ("none", ToolChoice(ChoiceMode.NONE)), ("add", ToolChoice(ChoiceMode.FUNCTION, "add")),
    ({"type": "function", "function": {"name": "search"}}, ToolChoice(ChoiceMode.FUNCTION, "search")),
    (ToolChoice(ChoiceMode.FUNCTION, "add"), ToolChoice(ChoiceMode.FUNCTION, "add")),
])
def test_tool_choice_spellings(choice: Any, expected: ToolChoice) -> None:
    assert normalize_tool_choice(choice, FUNCTIONS) == expected


@pytest.mark.parametrize(("choice", "functions", "message"), [
    ("get_wether", FUNCTIONS, "unknown function 'get_wether'; available: get_weather, add, search"),
    ({"type": "function", "function": {"name": "nope"}}, FUNCTIONS, "available: get_weather, add, search"),
    ({"type": "function"}, FUNCTIONS, "not understood"),
    ({"type": "tool", "function": {"name": "add"}}, FUNCTIONS, "not understood"),
    (3, FUNCTIONS, "must be a string or a dict"),
    ("required", [], "needs at least one function"),
])
def test_bad_tool_choices_say_what_is_accepted(choice: Any, functions: list[FunctionSpec],
                                               message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        normalize_tool_choice(choice, functions)


def test_duplicate_function_names_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="repeated: add"):
        reply_schema([ADD, ADD, WEATHER])


# ----------------------------------------------------------------------------- schemas
def _names_in(schema: dict[str, Any]) -> list[str]:
    items = schema["properties"]["tool_calls"]["items"]["anyOf"]
    return [shape["properties"]["name"]["const"] for shape in items]


def test_required_schema_shape() -> None:
    schema = reply_schema(FUNCTIONS, "required")
    assert schema["required"] == ["tool_calls"] and schema["additionalProperties"] is False
    calls = schema["properties"]["tool_calls"]
    assert (calls["minItems"], calls["maxItems"]) == (1, 1)
    assert _names_in(schema) == ["get_weather", "add", "search"]
    shape = calls["items"]["anyOf"][1]
    assert shape["required"] == ["name", "arguments"] and shape["additionalProperties"] is False
    assert shape["properties"]["arguments"] == {**ADD.parameters, "additionalProperties": False}
    Draft202012Validator.check_schema(schema)


def test_named_auto_none_and_parallel_schemas() -> None:
    assert _names_in(reply_schema(FUNCTIONS, "search")) == ["search"]
    auto = reply_schema(FUNCTIONS, "auto")
    assert _names_in(auto["anyOf"][0]) == ["get_weather", "add", "search"]
    assert auto["anyOf"][1]["properties"] == {"content": {"type": "string"}}
    assert reply_schema(FUNCTIONS, "none") == auto["anyOf"][1] == reply_schema([], "auto")
    parallel = reply_schema(FUNCTIONS, allow_parallel=True, max_parallel_calls=3)
    assert parallel["properties"]["tool_calls"]["maxItems"] == 3
    validator = Draft202012Validator(auto)
    assert validator.is_valid({"content": "hi"})
    assert validator.is_valid({"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]})
    assert not validator.is_valid({"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2, "c": 3}}]})
    assert not validator.is_valid({"tool_calls": [{"name": "add", "arguments": {"a": 1}}]})
    assert not validator.is_valid({"tool_calls": []})
    assert not Draft202012Validator(reply_schema(FUNCTIONS, "required")).is_valid({"content": "hi"})


def test_parameters_are_copied_closed_and_refs_rerooted() -> None:
    params = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "properties": {"where": {"$ref": "#/$defs/place"},
                             "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {}}}},
                             "extra": {"allOf": [{"properties": {"x": {}}}, {"properties": {"y": {}}}]},
                             "meta": {"type": "object"}},
              "required": ["where"],
              "$defs": {"place": {"type": "object", "properties": {"city": {"type": "string"}},
                                  "required": ["city"]}}}
    spec = FunctionSpec(name="plan", parameters=params)
    before = json.dumps(params, sort_keys=True)
    schema = reply_schema([spec, ADD])
    assert json.dumps(params, sort_keys=True) == before  # the input is untouched
    copied = schema["$defs"]["plan"]
    assert "$schema" not in copied and copied["type"] == "object" and copied["additionalProperties"] is False
    assert copied["properties"]["where"] == {"$ref": "#/$defs/plan/$defs/place"}
    assert copied["$defs"]["place"]["additionalProperties"] is False
    assert copied["properties"]["tags"]["items"]["additionalProperties"] is False
    assert "additionalProperties" not in copied["properties"]["extra"]["allOf"][0]
    assert "additionalProperties" not in copied["properties"]["meta"]
    validator = Draft202012Validator(schema)
    good = {"where": {"city": "Oslo"}, "extra": {"x": 1, "y": 2}, "meta": {"any": 1}}
    assert validator.is_valid({"tool_calls": [{"name": "plan", "arguments": good}]})
    assert not validator.is_valid({"tool_calls": [{"name": "plan", "arguments": {"where": {"city": 3}}}]})


# ----------------------------------------------------------------------------- validation, ids, prompts
def test_validation_messages_name_the_place() -> None:
    assert validate_call(FunctionCall(name="get_weather", arguments={"city": "Oslo", "unit": "celsius"}),
                         FUNCTIONS) == []
    problems = validate_call(FunctionCall(name="get_weather", arguments={"unit": "kelvin", "x": 1}), FUNCTIONS)
    assert problems == [
        "get_weather: at arguments: 'city' is a required property",
        "get_weather: at arguments: Additional properties are not allowed ('x' was unexpected)",
        "get_weather: at arguments.unit: 'kelvin' is not one of ['celsius', 'fahrenheit']",
    ]
    nested = FunctionSpec(name="f", parameters={"type": "object", "properties": {
        "ids": {"type": "array", "items": {"type": "integer"}}}})
    assert validate_call(FunctionCall(name="f", arguments={"ids": [1, "2"]}), [nested]) == [
        "f: at arguments.ids[1]: '2' is not of type 'integer'"]
    with pytest.raises(ConfigurationError, match="not a valid JSON schema"):
        validate_call(FunctionCall(name="g"), [FunctionSpec(name="g", parameters={"type": "objekt"})])


def test_call_ids_and_tool_calls() -> None:
    assert re.fullmatch(r"call_[0-9a-f]{24}", new_call_id())
    calls = to_tool_calls([FunctionCall(name="add", arguments={"a": 1, "b": 2})] * 3)
    assert len({c.id for c in calls}) == 3 and calls[0].function.name == "add" and calls[0].type == "function"


def test_feedback_message_is_concise_and_actionable() -> None:
    message = feedback_message(["add: at arguments: 'b' is a required property"], FUNCTIONS)
    assert message.startswith("Your last reply did not contain a valid tool call:\n- add: at arguments")
    assert "Reply again" in message and "get_weather | add | search" in message
    many = feedback_message([f"problem {i}" for i in range(9)], FUNCTIONS)
    assert "problem 4" in many and "problem 5" not in many and "and 4 more" in many
    assert "no tool call was found" in feedback_message([], FUNCTIONS)


def test_compat_instructions() -> None:
    auto = compat_instructions(FUNCTIONS, "auto")
    for spec in FUNCTIONS:
        assert f"- {spec.name}: {spec.description}" in auto and json.dumps(spec.parameters) in auto
    assert "```json\n" in auto and "plain text" in auto and "exactly one call" in auto
    example = json.loads(auto.split("```json\n")[1].split("\n```")[0])
    assert example == {"tool_calls": [{"name": "get_weather", "arguments": {"city": "...", "unit": "celsius"}}]}
    named = compat_instructions(FUNCTIONS, "add", allow_parallel=True)
    assert "You must call the function add." in named and "get_weather" not in named and "several" in named
    assert "plain text" not in compat_instructions(FUNCTIONS, "required")
    assert "Do not call" in compat_instructions(FUNCTIONS, "none")


# ----------------------------------------------------------------------------- real servers
PAIR = [WEATHER, SEARCH]
VARIANTS = [(FUNCTIONS, choice, False) for choice in ("required", "auto", "get_weather", "add", "search")]
VARIANTS += [(PAIR, choice, False) for choice in ("required", "auto", "search", "none")]
VARIANTS += [(FUNCTIONS, "required", True)]
VARIANT_IDS = [f"{len(fs)}-functions-{choice}{'-parallel' if parallel else ''}"
               for fs, choice, parallel in VARIANTS]


def check_constrained_reply(content: str, schema: dict[str, Any], functions: list[FunctionSpec]) -> None:
    """The reply is JSON, valid for the schema, and every call in it is valid for its function."""
    reply = json.loads(content)
    Draft202012Validator(schema).validate(reply)
    calls = [FunctionCall(**call) for call in reply.get("tool_calls", [])]
    assert calls or isinstance(reply.get("content"), str)
    for call in calls:
        assert validate_call(call, functions) == []
    parsed = parse_tool_calls(content, functions)
    assert parsed.calls == calls and parsed.problems == []


def chat(base_url: str, **constraint: Any) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": "call a tool"}], "max_tokens": 256, "temperature": 0,
            **constraint}
    response = httpx.post(base_url + "/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "stop", choice
    return choice


@pytest.mark.server
@pytest.mark.parametrize("server", ["chatml_server", "mistral_server"])
@pytest.mark.parametrize(("functions", "choice", "parallel"), VARIANTS, ids=VARIANT_IDS)
def test_response_format_replies_are_valid_calls(request: pytest.FixtureRequest, server: str,
                                                 functions: list[FunctionSpec], choice: str,
                                                 parallel: bool) -> None:
    schema = reply_schema(functions, choice, allow_parallel=parallel)
    reply = chat(request.getfixturevalue(server).base_url,
                 response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}})
    check_constrained_reply(reply["message"]["content"], schema, functions)
