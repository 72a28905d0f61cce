"""Tool-call schemas, tolerant parsing and validation; real-server checks of constrained replies."""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from llamafile_provider.errors import ConfigurationError
from llamafile_provider.messages import FunctionCall, FunctionSpec
from llamafile_provider.tools import (
    ChoiceMode, ToolChoice, compat_instructions, feedback_message, normalize_tool_choice,
    parse_tool_calls, reply_schema, to_tool_calls, new_call_id, validate_call,
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

ADD_JSON = '{"name": "add", "arguments": {"a": 1, "b": 2}}'
ADD_CALL = ("add", {"a": 1, "b": 2})
OSLO = ("get_weather", {"city": "Oslo", "unit": "celsius"})

# (reply, expected calls, expected content)
MESSY_REPLIES: list[tuple[str, list[tuple[str, dict[str, Any]]], str]] = [
    ('{"tool_calls": [' + ADD_JSON + "]}", [ADD_CALL], ""),
    ("Sure, I'll add them.\n```json\n" + ADD_JSON + "\n```\nLet me know!", [ADD_CALL],
     "Sure, I'll add them.\n\nLet me know!"),
    ("```\n" + ADD_JSON + "\n```", [ADD_CALL], ""),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}\n</tool_call>',
     [OSLO], ""),
    ("I will do both.\n<tool_call>" + ADD_JSON + "</tool_call>\n<tool_call>"
     '{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}</tool_call>',
     [ADD_CALL, OSLO], "I will do both."),
    ("[" + ADD_JSON + ', {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}]',
     [ADD_CALL, OSLO], ""),
    (ADD_JSON + '\n{"name": "search", "arguments": {"query": "llamas"}}',
     [ADD_CALL, ("search", {"query": "llamas"})], ""),
    ('{"name": "add", "arguments": {"a": 1, "b": 2,},}', [ADD_CALL], ""),
    ("{'name': 'search', 'arguments': {'query': \"it's \\\"quoted\\\"\", 'limit': 3}}",
     [("search", {"query": "it's \"quoted\"", "limit": 3})], ""),
    ("{'name': 'search', 'arguments': {'query': 'x', 'safe': true, 'page': null,}}",
     [("search", {"query": "x", "safe": True, "page": None})], ""),
    ('{"id": "call_1", "type": "function",'
     ' "function": {"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}}',
     [ADD_CALL], ""),
    ('{"name": "get_weather", "parameters": {"city": "Oslo", "unit": "celsius"}}', [OSLO], ""),
    ('{"function": {"name": "add", "arguments": {"a": 1, "b": 2}}}', [ADD_CALL], ""),
    ('{"function": "add", "arguments": {"a": 1, "b": 2}}', [ADD_CALL], ""),
    ("[TOOL_CALLS] [" + ADD_JSON + "]", [ADD_CALL], ""),
    ("<|python_tag|>" + ADD_JSON, [ADD_CALL], ""),
    ('{"get_weather": {"city": "Oslo", "unit": "celsius"}}', [OSLO], ""),
    ("{name: 'add', arguments: {a: 1, b: 2}}", [ADD_CALL], ""),
    ('The set {a, b} and the data {"x": 1} matter.\nCall: ' + ADD_JSON, [ADD_CALL],
     'The set {a, b} and the data {"x": 1} matter.\nCall:'),
    ("<tool_call>\n" + ADD_JSON, [ADD_CALL], ""),
    ('{"name": "search", "arguments": {"query": "a } ] ``` </tool_call> {"}}',
     [("search", {"query": "a } ] ``` </tool_call> {"})], ""),
    ('{"name": "add", "arguments": null}', [("add", {})], ""),
    ('Thinking... {"tool_calls": [{"name": "add", "arguments": "{\'a\': 1, \'b\': 2}"}]} done.', [ADD_CALL],
     "Thinking...  done."),
]


@pytest.mark.parametrize(("reply", "calls", "content"), MESSY_REPLIES)
def test_messy_replies_parse(reply: str, calls: list[tuple[str, dict[str, Any]]], content: str) -> None:
    parsed = parse_tool_calls(reply, FUNCTIONS)
    assert [(c.name, c.arguments) for c in parsed.calls] == calls
    assert parsed.content == content
    assert parsed.problems == []


ECHOED_DEFINITION = json.dumps({"type": "function", "name": "add", "description": "Add",
                                "parameters": {"type": "object", "properties": {}}})


@pytest.mark.parametrize(("reply", "content"), [
    ("The capital of France is Paris.", "The capital of France is Paris."),
    ('{"content": "It is sunny in Oslo."}', "It is sunny in Oslo."),
    ('{"tool_calls": []}', ""),
    ('{"name": "Alice", "age": 3}', '{"name": "Alice", "age": 3}'),
    (ECHOED_DEFINITION, ECHOED_DEFINITION),
])
def test_replies_without_calls_keep_their_text(reply: str, content: str) -> None:
    parsed = parse_tool_calls(reply, FUNCTIONS)
    assert parsed.calls == [] and parsed.problems == [] and parsed.content == content


@pytest.mark.parametrize(("reply", "problem"), [
    ('{"name": "add", "arguments": {"a": 1', "could not read"),
    ('{"name": "add", "arguments": "{a: 1, b: "}', "the arguments of add are not valid JSON"),
    ('{"name": "add", "arguments": [1, 2]}', "must be a JSON object"),
    ('{"name": "add", "arguments": {"a": 1 "b": 2}}', "could not read"),
    ('[{"name": "add", "arguments": {"a": 1, "b": 2}}, 7]', "ignored a list item"),
    ('{"tool_calls": ["add"]}', "tool_calls holds no call"),
])
def test_broken_calls_are_reported(reply: str, problem: str) -> None:
    assert any(problem in p for p in parse_tool_calls(reply, FUNCTIONS).problems)


def test_unknown_function_is_parsed_then_flagged_by_validation() -> None:
    parsed = parse_tool_calls('{"name": "get_wether", "arguments": {"city": "Oslo"}}', FUNCTIONS)
    assert [c.name for c in parsed.calls] == ["get_wether"]
    assert validate_call(parsed.calls[0], FUNCTIONS) == [
        "unknown function 'get_wether'; valid names: get_weather, add, search"]


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


# ----------------------------------------------------------------------------- round trip
_ARGS = st.one_of(
    st.builds(lambda c, u: ("get_weather", {"city": c, "unit": u}), st.text(),
              st.sampled_from(["celsius", "fahrenheit"])),
    st.builds(lambda a, b: ("add", {"a": a, "b": b}), st.integers(), st.integers()),
    st.builds(lambda q, n: ("search", {"query": q} if n is None else {"query": q, "limit": n}),
              st.text(), st.none() | st.integers(0, 100)),
)
_PROSE = st.text(alphabet=st.characters(blacklist_characters="{}[]`<\x00", blacklist_categories=("Cs",)),
                 max_size=40)


def _trailing_comma(text: str) -> str:
    return text[:-1] + ",}"


_WRAPPERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "plain": json.dumps,
    "unicode-indented": lambda c: json.dumps(c, ensure_ascii=False, indent=2),
    "fence": lambda c: f"```json\n{json.dumps(c)}\n```",
    "tags": lambda c: f"<tool_call>\n{json.dumps(c)}\n</tool_call>",
    "trailing-comma": lambda c: _trailing_comma(json.dumps(c)),
    "tool_calls": lambda c: json.dumps({"tool_calls": [c]}),
    "list": lambda c: json.dumps([c]) + "\n",
    "python": repr,
    "string-arguments": lambda c: json.dumps({**c, "arguments": json.dumps(c["arguments"])}),
    "openai": lambda c: json.dumps({"id": "call_x", "type": "function", "function": c}),
}


@settings(max_examples=300, deadline=None)
@given(call=_ARGS, wrapper=st.sampled_from(sorted(_WRAPPERS)), before=_PROSE, after=_PROSE)
def test_any_valid_call_in_any_wrapper_parses_back(call: tuple[str, dict[str, Any]], wrapper: str,
                                                   before: str, after: str) -> None:
    name, arguments = call
    assert validate_call(FunctionCall(name=name, arguments=arguments), FUNCTIONS) == []
    text = f"{before}\n{_WRAPPERS[wrapper]({'name': name, 'arguments': arguments})}\n{after}"
    parsed = parse_tool_calls(text, FUNCTIONS)
    assert [(c.name, c.arguments) for c in parsed.calls] == [call]
    assert parsed.problems == []
    assert parsed.content.split() == f"{before} {after}".split()


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
