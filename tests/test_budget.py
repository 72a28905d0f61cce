"""Constrained replies that close within the output budget: the bound itself (pure), then
first-try tool calls at 64 output tokens on every test-bed template (real servers)."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from llamafile_provider.budget import MIN_UNITS, bound_schema, skeleton_pieces
from llamafile_provider.errors import OutputBudgetError
from llamafile_provider.gbnf import schema_to_gbnf
from llamafile_provider.messages import FunctionSpec
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.tools import reply_schema
from testbed.server import RunningServer
from tests.test_gbnf import accepts
from tests.test_tools import FUNCTIONS

RESPONSE = {  # a response_schema with every construct the bound handles
    "type": "object", "required": ["thoughts", "plan", "score", "mood"],
    "$defs": {"step": {"type": "object", "properties": {"what": {"type": "string"}, "done": {"type": "boolean"}},
                       "required": ["what"]}},
    "properties": {
        "thoughts": {"type": "string", "minLength": 2}, "plan": {"type": "array", "items": {"$ref": "#/$defs/step"}},
        "score": {"type": "number"}, "count": {"type": "integer"}, "mood": {"enum": ["calm", "very excited"]},
        "note": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]}, "extra": {},
        "tags": {"type": ["string", "integer"]}}}
SCHEMAS = {"required": reply_schema(FUNCTIONS, "required"), "auto": reply_schema(FUNCTIONS, "auto"),
           "parallel": reply_schema(FUNCTIONS, "required", allow_parallel=True), "response": RESPONSE}


class Raw(str):
    """A JSON number written out as is (a float would lose the digits)."""


def longest(schema: dict[str, Any], digits: int) -> Any:
    """The instance of a bounded schema with the longest compact JSON (strings of escapes)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return max(schema["enum"], key=lambda v: len(json.dumps(v, ensure_ascii=False)))
    if "anyOf" in schema:
        return max((longest(s, digits) for s in schema["anyOf"]), key=lambda v: len(compact(v)))
    kind = schema["type"]
    if kind == "string":
        return '"' * schema["maxLength"]  # each one written as the two characters \"
    if kind == "integer":
        return Raw("-" + "9" * digits)
    if kind == "number":
        return Raw(f"-{'9' * digits}.{'9' * digits}e-100")
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    if kind == "array":
        return [longest(schema["items"], digits) for _ in range(schema["maxItems"])]
    return {key: longest(sub, digits) for key, sub in schema["properties"].items()}


def widest(text: str) -> str:
    """``text`` with every space the bounded grammar allows: after ``{ [ : ,``, before ``: , } ]``."""
    out, inside, escaped = [], False, False
    for char in text:
        if inside:
            out.append(char)
            inside, escaped = (not (char == '"' and not escaped)), (char == "\\" and not escaped)
            continue
        if char in ":,}]" and not (out and out[-1] == " "):
            out.append(" ")
        out.append(char)
        inside = char == '"'
        if char in "{[:,":
            out.append(" ")
    return "".join(out)


def compact(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(compact(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


@pytest.mark.parametrize("budget", [64, 160])
@pytest.mark.parametrize("name", list(SCHEMAS))
def test_every_reply_of_the_bounded_grammar_fits_its_max_tokens(name: str, budget: int) -> None:
    schema = SCHEMAS[name]
    pieces = skeleton_pieces(schema)
    counts = {piece: max(1, len(piece) // 3) for piece in pieces}  # as a real tokenizer would, roughly
    try:
        bounded = bound_schema(schema, budget, counts)
    except OutputBudgetError as exc:
        assert exc.needed is not None and exc.needed > budget
        bounded = bound_schema(schema, exc.needed, counts)  # what it asks for is enough
        budget = exc.needed
    assert bounded.string_units >= MIN_UNITS and bounded.max_tokens >= budget
    grammar = schema_to_gbnf(bounded.schema, bounded=True, max_digits=bounded.max_digits)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))  # the test matcher recurses per character
    text = compact(longest(bounded.schema, bounded.max_digits))
    assert accepts(grammar, text), text
    Draft202012Validator(schema).validate(json.loads(text))  # bounded is a subset of the schema
    wide = widest(text)
    assert accepts(grammar, wide), wide
    assert len(wide.encode()) <= bounded.max_tokens  # one token per byte: the worst any tokenizer does
    assert not accepts(grammar, text.replace("{", "{  ", 1))  # whitespace is one space at most
    if '\\"' in text:
        assert not accepts(grammar, text.replace('\\"', '\\"\\"', 1))  # one more unit in a string


def test_the_typical_cost_is_the_budget() -> None:
    """Strings get all the room the measured skeleton leaves: one more unit would not fit."""
    schema = reply_schema([FUNCTIONS[0]], "required")  # get_weather(city, unit enum)
    counts = {piece: 3 for piece in skeleton_pieces(schema)}
    bounded = bound_schema(schema, 64, counts)
    assert bounded.expected_tokens == 64  # one free string: every unit it could not get would overflow
    arguments = bounded.schema["properties"]["tool_calls"]["items"]["anyOf"][0]["properties"]["arguments"]
    assert arguments["properties"]["city"]["maxLength"] == bounded.string_units
    assert bound_schema(schema, 65, counts).string_units == bounded.string_units + 1


def test_a_budget_too_small_says_what_is_needed() -> None:
    schema = reply_schema(FUNCTIONS, "required")
    with pytest.raises(OutputBudgetError, match=r"max_output_tokens >= \d+") as caught:
        bound_schema(schema, 10)
    assert caught.value.needed is not None and bound_schema(schema, caught.value.needed).string_units == MIN_UNITS


def test_recursive_schemas_cannot_be_bounded() -> None:
    tree = {"$defs": {"node": {"type": "object", "properties": {"kids": {"type": "array", "items": {
        "$ref": "#/$defs/node"}}}}}, "$ref": "#/$defs/node"}
    with pytest.raises(OutputBudgetError, match="recursive") as caught:
        bound_schema(tree, 500)
    assert caught.value.needed is None


def test_parallel_calls_shrink_to_one_when_strings_would_not_fit() -> None:
    schema = reply_schema(FUNCTIONS, "required", allow_parallel=True)
    calls = lambda b: b.schema["properties"]["tool_calls"]["maxItems"]  # noqa: E731
    assert calls(bound_schema(schema, 2000)) == 8
    assert calls(bound_schema(schema, 120)) == 1


# ------------------------------------------------------------------ real servers
WEATHER = FunctionSpec(name="get_weather", description="Current weather in a city",
                       parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
CITIES = ["Paris", "Berlin", "Tokyo", "Madrid", "Rome", "Cairo", "Lima", "Oslo", "Vienna", "Dublin",
          "Lisbon", "Prague", "Warsaw", "Athens", "Nairobi", "Sydney", "Toronto", "Chicago", "Seoul", "Mumbai"]


async def first_try_calls(server: RunningServer, tool_mode: str, max_tokens: int = 64) -> list[str]:
    """20 required calls, no retry allowed: an invalid or cut-off reply raises. Finish reasons."""
    finished = []
    async with LlamafileProvider(smart_llm_url=server.base_url, tool_mode=tool_mode,
                                 fix_failed_parse_tries=0) as llm:
        for i, city in enumerate(CITIES):
            reply = await llm.create_chat_completion(
                [{"role": "user", "content": f"What is the weather in {city}?"}], functions=[WEATHER],
                tool_choice="required", max_output_tokens=max_tokens, seed=i)
            assert [c.function.name for c in reply.message.tool_calls] == ["get_weather"]
            assert isinstance(reply.message.tool_calls[0].function.arguments["city"], str)
            finished.append(reply.finish_reason)
    return finished


@pytest.mark.server
@pytest.mark.parametrize("tool_mode", ["auto", "constrained"])
async def test_random_weights_call_validly_first_try_at_64_tokens(any_server: RunningServer, tool_mode: str) -> None:
    """Before the bound, 10-18 of 20 (mistral 18, chatml 10, llama3 14, hermes 17 native / 14
    constrained) were cut off mid-JSON at 64 tokens."""
    assert "length" not in await first_try_calls(any_server, tool_mode)


@pytest.mark.server
@pytest.mark.classic
async def test_classic_grammar_calls_validly_first_try_at_64_tokens(any_classic_server: RunningServer) -> None:
    """The bounded GBNF on the classic b2282 server (what llamafile 0.8-0.9 serve)."""
    assert "length" not in await first_try_calls(any_classic_server, "constrained")


@pytest.mark.server
@pytest.mark.parametrize("server", ["chatml_server", "classic_chatml_server"])
async def test_a_bounded_response_schema_closes_on_both_grammar_paths(request: pytest.FixtureRequest,
                                                                       server: str) -> None:
    """Every construct of RESPONSE (refs, arrays, numbers, enums, anyOf, free values) through
    the provider, llama-server and the classic server alike: parsed, valid, never cut off."""
    running: RunningServer = request.getfixturevalue(server)
    async with LlamafileProvider(smart_llm_url=running.base_url, fix_failed_parse_tries=0) as llm:
        for seed in range(3):
            reply = await llm.create_chat_completion([{"role": "user", "content": "Plan my day."}],
                                                     response_schema=RESPONSE, max_output_tokens=160, seed=seed)
            Draft202012Validator(RESPONSE).validate(json.loads(reply.message.content))
