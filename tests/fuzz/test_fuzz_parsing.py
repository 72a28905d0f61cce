"""Fuzz the compat tool-call reader: any reply text either reads or yields typed problems, never a crash.

Why: in compat mode the provider reads whatever a small model wrote; an exception other than the
package's own would escape ``create_chat_completion`` as a bare traceback. The strategies build
replies from the pieces that reader reacts to (fences, tags, brackets, quotes, call-shaped JSON,
truncations) so hypothesis reaches its branches, not just random unicode.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamafile_provider.errors import LlamafileError
from llamafile_provider.lenient_json import Node, loads_lenient, scan
from llamafile_provider.messages import FunctionCall, FunctionSpec
from llamafile_provider.parsing import ParsedToolCalls, parse_tool_calls

pytestmark = pytest.mark.fuzz

FUNCTIONS = [FunctionSpec(name="add", parameters={"type": "object", "properties": {"a": {"type": "integer"}}}),
             FunctionSpec(name="search")]
# JSON values only: json.dumps writes inf / nan as Infinity / NaN, which is not JSON (and no reply to read).
_SCALAR = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
_JSON = st.recursive(_SCALAR,
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.sampled_from(["name", "arguments", "a", "tool_calls", "function", "q"])
                                       | st.text(max_size=4), inner, max_size=4), max_leaves=12)
_CALL = st.builds(lambda name, args: {"name": name, "arguments": args},
                  st.sampled_from(["add", "search", "other", ""]), _JSON)
_PIECES = st.sampled_from(["{", "}", "[", "]", ",", ":", '"', "'", "\\", "```json\n", "```", "<tool_call>",
                           "</tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "True", "None", "null", "\x00",
                           "\n", " ", "name", "arguments", "1e999", "-", "0x1F", "/*", "//"])
_FRAGMENT = (_PIECES | st.text(max_size=6)
             | _CALL.map(json.dumps) | _JSON.map(json.dumps)
             | _CALL.map(json.dumps).flatmap(lambda s: st.integers(0, len(s)).map(lambda n: s[:n])))
REPLIES = st.lists(_FRAGMENT, max_size=12).map("".join)


def _check_nodes(nodes: list[Node], text: str) -> None:
    for node in nodes:
        assert 0 <= node.start <= node.end <= len(text)
        assert node.error is None or isinstance(node.error, str)
        _check_nodes(node.children, text)


@given(REPLIES)
def test_parse_tool_calls_returns_typed_results_or_typed_errors(text: str) -> None:
    try:
        parsed = parse_tool_calls(text, FUNCTIONS)
    except LlamafileError:
        return
    assert isinstance(parsed, ParsedToolCalls) and isinstance(parsed.content, str)
    assert all(isinstance(p, str) for p in parsed.problems)
    for call in parsed.calls:
        assert isinstance(call, FunctionCall) and isinstance(call.name, str) and isinstance(call.arguments, dict)
        json.dumps(call.arguments)  # what the provider sends back must serialise


@given(REPLIES)
def test_lenient_reader_returns_a_value_or_a_reason(text: str) -> None:
    try:
        value, error = loads_lenient(text)
        nodes = scan(text)
    except LlamafileError:
        return
    assert error is None or (isinstance(error, str) and value is None)
    if error is None:
        json.dumps(value)
    _check_nodes(nodes, text)


@given(_CALL, st.sampled_from(["{}", "```json\n{}\n```", "<tool_call>{}</tool_call>", "Sure: {} done",
                               "[TOOL_CALLS][{}]"]))
def test_a_wrapped_call_to_a_known_function_is_found(call: dict[str, Any], wrapper: str) -> None:
    parsed = parse_tool_calls(wrapper.replace("{}", json.dumps(call), 1), FUNCTIONS)
    if call["name"] in ("add", "search") and isinstance(call["arguments"], dict):
        assert [(c.name, c.arguments) for c in parsed.calls] == [(call["name"], call["arguments"])]
