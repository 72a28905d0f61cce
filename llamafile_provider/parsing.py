"""Last-resort tolerant parsing of tool calls out of a model's free text (compat mode). Pure, no I/O.

When a server can neither call tools natively nor constrain its output, the calls must be dug out
of whatever a small model wrote: JSON in ```json fences or ``<tool_call>`` tags, surrounded by
prose, with trailing commas, bare keys or single quotes, as Python literals (``True``/``None``),
with arguments as a JSON string, in OpenAI, Hermes, Mistral or Llama wrappers. This is kept apart
from ``tools`` (schemas, choices, validation, feedback) because it is the one heuristic part:
it only *finds* calls; ``tools.validate_call`` then judges them.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llamafile_provider.messages import FunctionCall, FunctionSpec


@dataclass(frozen=True)
class ParsedToolCalls:
    """What ``parse_tool_calls`` found: the calls, the prose around them, and what went wrong."""

    calls: list[FunctionCall] = field(default_factory=list)
    content: str = ""
    problems: list[str] = field(default_factory=list)


_OPENER = re.compile(r"[\[{]")
_CLOSERS = {"{": "}", "[": "]"}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', re.S)
_CALLISH = re.compile(r"""["']?\b(?:name|tool_calls|function|arguments)\b["']?\s*:""")
_FENCE_SPENT = re.compile(r"```[\w+-]*[ \t]*\n?[\s,]*(?:\x00[\s,]*)+(?:```|$)")
_TAG_SPENT = re.compile(r"<(tool_call|function_call)>[\s,]*(?:\x00[\s,]*)+(?:</\1>)?")
_MARKERS = re.compile(r"</?(?:tool_call|function_call)>|\[TOOL_CALLS\]|<\|python_tag\|>")
_ARG_KEYS = ("arguments", "parameters", "args", "input", "tool_input")
_NAME_KEYS = ("name", "function", "tool", "tool_name")
_Found = tuple[list[FunctionCall], list[str], list[str]]  # calls, contents, problems


def parse_tool_calls(text: str, functions: Sequence[FunctionSpec] = ()) -> ParsedToolCalls:
    """Find the tool calls in a free-form reply (compat mode), tolerating what small models write.

    Every ``{``/``[`` starts a candidate; a balanced one (quotes respected, so fences, tags and
    prose around it do not matter) is read leniently and consumed if call-shaped. JSON that is
    not a call stays in the prose. Calls are returned in reading order.
    """
    text, known, found = text.replace("\x00", ""), {f.name for f in functions}, ParsedToolCalls()
    contents: list[str] = []
    spans: list[tuple[int, int]] = []
    pos, unfinished_reported = 0, False
    while (match := _OPENER.search(text, pos)) is not None:
        start, pos = match.start(), match.start() + 1
        end = _balanced_end(text, start)
        value, error = loads_lenient(text[start:end]) if end else (None, "it is unfinished or unbalanced")
        if error is not None:
            if _CALLISH.search(text, start, end or len(text)) and not (end is None and unfinished_reported):
                found.problems.append(f"could not read {_clip(text[start:end])} as JSON: {error}")
                unfinished_reported = unfinished_reported or end is None
            continue
        assert end is not None
        pos = end  # valid JSON: a call, or data that stays in the prose
        if (parts := _interpret(value, known)) is not None:
            found.calls.extend(parts[0])
            contents.extend(parts[1])
            found.problems.extend(parts[2])
            spans.append((start, end))
    return ParsedToolCalls(calls=found.calls, content=_prose(text, spans, contents), problems=found.problems)


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the bracket closing ``text[start]``; None if it never closes properly."""
    stack, quote, i = [_CLOSERS[text[start]]], "", start + 1
    while i < len(text) and stack:
        char = text[i]
        if quote:
            i += char == "\\"
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in _CLOSERS:
            stack.append(_CLOSERS[char])
        elif char in "}]" and stack.pop() != char:
            return None
        i += 1
    return None if stack else i


def _outside_strings(text: str, fix: Callable[[str], str]) -> str:
    """Apply ``fix`` only to the code between quoted strings, so string contents stay intact."""
    out, last = [], 0
    for match in _STRING.finditer(text):
        out += [fix(text[last:match.start()]), match.group()]
        last = match.end()
    return "".join([*out, fix(text[last:])])


def loads_lenient(text: str) -> tuple[Any, str | None]:
    """(value, None) for JSON, JSON with trailing commas or bare keys, or a Python literal; else (None, why)."""
    try:
        return json.loads(text, strict=False), None
    except (ValueError, RecursionError) as exc:
        first_error = str(exc)
    repaired = _outside_strings(text.strip(), lambda code: re.sub(  # bare keys, then trailing commas
        r"([{,]\s*)([A-Za-z_]\w*)(\s*:)", r'\1"\2"\3', re.sub(r",(\s*[}\]])", r"\1", code)))
    try:
        return json.loads(repaired, strict=False), None
    except (ValueError, RecursionError):
        pass
    python = _outside_strings(repaired, lambda code: re.sub(
        r"\b(true|false|null)\b", lambda m: {"true": "True", "false": "False"}.get(m[1], "None"), code))
    try:  # the round trip turns tuples into lists and refuses sets, bytes and the like
        return json.loads(json.dumps(ast.literal_eval(python))), None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None, first_error


def _interpret(value: Any, known: set[str]) -> _Found | None:
    """(calls, contents, problems) if ``value`` is call-shaped in any supported variant, else None."""
    if isinstance(value, list):
        parts = [_interpret(item, known) for item in value]
        kept = [p for p in parts if p is not None]
        skipped = [f"ignored a list item that is not a tool call: {_clip(json.dumps(v))}"
                   for v, p in zip(value, parts, strict=True) if p is None]
        return ([c for p in kept for c in p[0]], [c for p in kept for c in p[1]],
                [q for p in kept for q in p[2]] + skipped) if kept else None
    if not isinstance(value, dict):
        return None
    content = [value["content"]] if isinstance(value.get("content"), str) and value["content"].strip() else []
    if "tool_calls" in value:
        inner = _interpret(value["tool_calls"], known) if value["tool_calls"] else ([], [], [])
        return (inner[0], content + inner[1], inner[2]) if inner else ([], content,
                                                                        ["tool_calls holds no call"])
    for wrapper in ("function_call", "function", "tool_call"):
        if isinstance(value.get(wrapper), dict):
            return _interpret(value[wrapper], known)
    if set(value) == {"content"}:
        return [], content, []
    name = next((value[k] for k in _NAME_KEYS if isinstance(value.get(k), str)), None)
    if name is None:  # {"get_weather": {"city": ...}}
        key, arguments = next(iter(value.items())) if len(value) == 1 else (None, None)
        if key in known and isinstance(arguments, dict):
            return [FunctionCall(name=key, arguments=arguments)], [], []
        return None
    arg_key = next((k for k in _ARG_KEYS if k in value), None)
    if arg_key is None and (name not in known or set(value) - {*_NAME_KEYS, "id", "type"}):
        return None  # e.g. {"name": "Alice", "age": 3}
    arguments = value.get(arg_key) if arg_key else {}
    if arg_key == "parameters" and "description" in value and isinstance(arguments, dict) \
            and "properties" in arguments:
        return None  # a function *definition* echoed back, not a call
    if isinstance(arguments, str):
        arguments, error = loads_lenient(arguments) if arguments.strip() else ({}, None)
        if error is not None:
            return [], [], [f"the arguments of {name} are not valid JSON: {error}"]
    if arguments is not None and not isinstance(arguments, dict):
        return [], [], [f"the arguments of {name} must be a JSON object, not {_clip(json.dumps(arguments))}"]
    return [FunctionCall(name=name, arguments=arguments or {})], [], []


def _prose(text: str, spans: list[tuple[int, int]], contents: list[str]) -> str:
    """The reply minus consumed calls, the fences/tags they emptied and tool-call markers."""
    pieces, last = [], 0
    for start, end in spans:
        pieces += [text[last:start], "\x00"]
        last = end
    prose = "".join([*pieces, text[last:]])
    if spans:
        prose = _MARKERS.sub("", _TAG_SPENT.sub("", _FENCE_SPENT.sub("", prose)))
    prose = re.sub(r"\n{3,}", "\n\n", prose.replace("\x00", "")).strip()
    return "\n\n".join(part.strip() for part in [prose, *contents] if part.strip())


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["ParsedToolCalls", "loads_lenient", "parse_tool_calls"]
