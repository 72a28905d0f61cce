"""Tolerant parsing: good calls next to unreadable prose, linear work, no stray errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamafile_provider.lenient_json import MAX_DEPTH, loads_lenient
from llamafile_provider.parsing import parse_tool_calls
from tests.test_tools import FUNCTIONS

ADD = '{"name": "add", "arguments": {"a": 1, "b": 2}}'


@pytest.mark.parametrize("reply", [
    'Sure [I\'ll add them]: {"name":"add","arguments":{"a":1,"b":2}}',
    "I'll {think: about it, ok?} then call " + ADD,
    '{"name": "add", "arguments": {"a": 1 "b": 2}}\nSorry, here it is: ' + ADD,
    'He said "{not json" and then ' + ADD,
])
def test_a_good_call_next_to_unreadable_text_is_not_a_problem(reply: str) -> None:
    parsed = parse_tool_calls(reply, FUNCTIONS)
    assert [(c.name, c.arguments) for c in parsed.calls] == [("add", {"a": 1, "b": 2})]
    assert parsed.problems == []


def test_unreadable_call_is_reported_once_when_no_call_was_found() -> None:
    parsed = parse_tool_calls('{"tool_calls": [{"name": "add", "arguments": {"a": 1 "b": 2}}]}', FUNCTIONS)
    assert parsed.calls == [] and len(parsed.problems) == 1 and "could not read" in parsed.problems[0]


def test_problems_about_a_found_call_are_still_reported() -> None:
    parsed = parse_tool_calls(ADD + ' {"name": "search", "arguments": [1]}', FUNCTIONS)
    assert [c.name for c in parsed.calls] == ["add"]
    assert any("must be a JSON object" in p for p in parsed.problems)


def test_nesting_beyond_the_limit_is_refused_but_what_is_inside_is_found() -> None:
    assert [c.name for c in parse_tool_calls("[" * (MAX_DEPTH + 50) + ADD, FUNCTIONS).calls] == ["add"]
    assert parse_tool_calls("[" * 3000 + ADD + "]" * 3000, FUNCTIONS).calls == []  # data, not a call
    assert loads_lenient("[" * 5000 + "]" * 5000)[0] is None  # no RecursionError either
    assert loads_lenient("[" * MAX_DEPTH + "]" * MAX_DEPTH)[0] is not None


def test_the_depth_limit_does_not_follow_the_interpreters_recursion_limit() -> None:
    """json.loads refuses deep nesting only up to sys.getrecursionlimit(), which any library may raise."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        value, error = loads_lenient("[" * 5000 + "]" * 5000)
    finally:
        sys.setrecursionlimit(before)
    assert value is None and error == f"it is nested more than {MAX_DEPTH} levels deep"


def test_lenient_values() -> None:
    assert loads_lenient("{a: 'it\\'s', b: [1, 2.5e1, True, None,],}") == (
        {"a": "it's", "b": [1, 25.0, True, None]}, None)
    assert loads_lenient('{"a": "line\nbreak", \'b\': \'x\ny\'}')[0] == {"a": "line\nbreak", "b": "x\ny"}
    for broken in ("{a}", '{"a":}', "[1 2]", "{'a': 1", "[,1]", "{1: 2}", "[1]]"):
        value, error = loads_lenient(broken)
        assert value is None and error, broken


# ----------------------------------------------------------------------------- linear work
def _lines_executed(run: Callable[[], Any]) -> int:
    """Python lines executed by ``run`` (a deterministic measure of work, unlike a clock)."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        run()
    finally:
        sys.settrace(None)
    return count


ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "open braces": lambda n: "{" * n,
    "nested lists": lambda n: "[" * (n // 2) + "]" * (n // 2),
    "open keys": lambda n: '{"a":' * (n // 5),
    "open name keys": lambda n: '{"name": ' * (n // 9),
    "quotes after braces": lambda n: "{'" * (n // 2),
    "mixed openers": lambda n: "[{" * (n // 2),
    "mismatched closers": lambda n: "[" * (n // 2) + "}" * (n // 2),
    "broken calls": lambda n: '{"name": "add", "arguments": {"a": 1 "b": 2}} ' * (n // 46),
    "good calls": lambda n: (ADD + "\n") * (n // 47),
    "fences": lambda n: "```json\n{\n```\n" * (n // 14),
    "prose": lambda n: "I'll think [about it], ok? " * (n // 27),
}


@pytest.mark.parametrize("shape", sorted(ADVERSARIAL))
def test_parsing_work_grows_linearly(shape: str) -> None:
    small, large = (_lines_executed(lambda n=n: parse_tool_calls(ADVERSARIAL[shape](n), FUNCTIONS))
                    for n in (1500, 6000))
    assert large <= 4 * 1.5 * small, f"{shape}: {small} lines for n, {large} for 4n"


def test_six_thousand_braces_give_a_plain_answer() -> None:
    parsed = parse_tool_calls("{" * 6000, FUNCTIONS)
    assert parsed.calls == [] and len(parsed.problems) <= 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('{}[]"\':,\\ ntruefalsTNo0123.-eaxm\n`<>/_')), max_size=300))
def test_any_text_parses_without_errors(text: str) -> None:
    parsed = parse_tool_calls(text, FUNCTIONS)
    assert isinstance(parsed.content, str)
    loads_lenient(text)
