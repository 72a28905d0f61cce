"""Linear work: n vs 4n sized adversarial inputs cost at most ~4x the operations, never quadratic.

Why: the reader and the converter run inside the event loop; a reply or schema that makes them
quadratic stalls every request. Cost is counted as Python line events inside the package (via
sys.settrace), which is deterministic on a shared CI machine, unlike wall time; the bound (< 10 for
4x) is generous. Regex work in C is not counted; the patterns are linear by construction.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import llamafile_provider
from llamafile_provider.budget import bound_schema
from llamafile_provider.gbnf import schema_to_gbnf
from llamafile_provider.lenient_json import loads_lenient
from llamafile_provider.parsing import parse_tool_calls

pytestmark = pytest.mark.fuzz
_PACKAGE = str(Path(llamafile_provider.__file__).parent)
CALL = '{"name": "add", "arguments": {"a": 1}}'


def _operations(work: Callable[[], Any]) -> int:
    """Line events executed in the package's own code while ``work`` runs."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if not frame.f_code.co_filename.startswith(_PACKAGE):
            return None
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        work()
    except RecursionError as error:  # a depth limit is fine, a crash of the interpreter's stack is not
        raise AssertionError("the input made the code recurse past the interpreter's limit") from error
    finally:
        sys.settrace(None)
    return count


REPLIES: dict[str, Callable[[int], str]] = {
    "deep nesting": lambda n: "[" * n + CALL + "]" * n,
    "unclosed nesting": lambda n: "[{" * n + CALL,
    "many braces": lambda n: "{}" * n + CALL,
    "many closers": lambda n: "}]" * n + CALL,
    "long string": lambda n: '{"name": "add", "arguments": {"a": "' + "x\\" * n + '"}}',
    "unclosed string": lambda n: '{"a": "' + "{" * n,
    "many calls": lambda n: CALL * n,
    "many keys": lambda n: "{" + ",".join(f'"k{i}": {i}' for i in range(n)) + "}",
    "quotes": lambda n: "'\"" * n + CALL,
    "fences": lambda n: "```json\n" * n + CALL,
    "tags": lambda n: "<tool_call>" * n + CALL,
}


@pytest.mark.parametrize("shape", REPLIES)
def test_the_reader_is_linear(shape: str) -> None:
    make = REPLIES[shape]
    for read in (lambda t: parse_tool_calls(t), lambda t: loads_lenient(t)):
        small, large = (_operations(lambda n=n: read(make(n))) for n in (2000, 8000))
        assert large < 10 * max(small, 1), f"{shape}: {small} -> {large} operations for 4x the input"


def _nested(n: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for i in range(n):
        schema = {"type": "object", "properties": {f"p{i}": {"type": "array", "items": schema}}, "required": [f"p{i}"]}
    return schema


SCHEMAS: dict[str, Callable[[int], dict[str, Any]]] = {
    "deep nesting": _nested,
    "many properties": lambda n: {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(n)},
                                  "required": [f"p{i}" for i in range(n)]},
    "long enum": lambda n: {"enum": [f"v{i}" for i in range(n)]},
    "long const": lambda n: {"const": "\"\\{" * n},
    "many alternatives": lambda n: {"anyOf": [{"type": "object", "properties": {f"k{i}": {"const": i}}}
                                              for i in range(n)]},
    "many optional properties": lambda n: {"$defs": {f"d{i}": {"type": "integer"} for i in range(n)},
                            "type": "object", "properties": {f"p{i}": {"$ref": f"#/$defs/d{i}"} for i in range(n)}},
}


@pytest.mark.parametrize("shape", SCHEMAS)
def test_the_converter_is_linear(shape: str) -> None:
    make = SCHEMAS[shape]
    sizes = (20, 80) if shape == "deep nesting" else (100, 400)
    for convert in (lambda s: schema_to_gbnf(s), lambda s: schema_to_gbnf(bound_schema(s, 100_000).schema,
                                                                           bounded=True)):
        small, large = (_operations(lambda n=n: convert(make(n))) for n in sizes)
        assert large < 10 * max(small, 1), f"{shape}: {small} -> {large} operations for 4x the schema"
