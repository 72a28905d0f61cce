"""Tolerant parsing of tool calls from free text: messy replies, non-calls, broken calls, round trips."""

from __future__ import annotations

import json
from typing import Any
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamafile_provider.messages import FunctionCall
from llamafile_provider.parsing import parse_tool_calls
from llamafile_provider.tools import validate_call
from tests.test_tools import FUNCTIONS

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
