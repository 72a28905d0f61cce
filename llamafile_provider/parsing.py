"""Last-resort tolerant parsing of tool calls out of a model's free text (compat mode). Pure, no I/O.

When a server can neither call tools natively nor constrain its output, the calls must be dug out
of whatever a small model wrote: JSON in ```json fences or ``<tool_call>`` tags, surrounded by
prose, with trailing commas, bare keys or single quotes, as Python literals (``True``/``None``),
with arguments as a JSON string, in OpenAI, Hermes, Mistral or Llama wrappers. This is kept apart
from ``tools`` (schemas, choices, validation, feedback) because it is the one heuristic part:
it only *finds* calls; ``tools.validate_call`` then judges them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llamafile_provider.lenient_json import Node, loads_lenient, scan
from llamafile_provider.messages import FunctionCall, FunctionSpec


@dataclass(frozen=True)
class ParsedToolCalls:
    """What ``parse_tool_calls`` found: the calls, the prose around them, and what went wrong."""

    calls: list[FunctionCall] = field(default_factory=list)
    content: str = ""
    problems: list[str] = field(default_factory=list)


_FENCE_SPENT = re.compile(r"```[\w+-]*[ \t]*\n?[\s,]*(?:\x00[\s,]*)+(?:```|$)")
_TAG_SPENT = re.compile(r"<(tool_call|function_call)>[\s,]*(?:\x00[\s,]*)+(?:</\1>)?")
_MARKERS = re.compile(r"</?(?:tool_call|function_call)>|\[TOOL_CALLS\]|<\|python_tag\|>")
_ARG_KEYS = ("arguments", "parameters", "args", "input", "tool_input")
_NAME_KEYS = ("name", "function", "tool", "tool_name")
_MAX_LIST_NESTING = 8  # [[call]] is still a call; deeper lists are data
_Found = tuple[list[FunctionCall], list[str], list[str]]  # calls, contents, problems


def parse_tool_calls(text: str, functions: Sequence[FunctionSpec] = ()) -> ParsedToolCalls:
    """Find the tool calls in a free-form reply (compat mode), tolerating what small models write.

    One linear pass (``lenient_json.scan``) reads every bracket pair; outermost first, a pair
    that is a value is consumed if call-shaped (JSON that is not a call stays in the prose), and
    the pairs inside one that is not a value are tried in turn. Calls come in reading order.
    JSON that cannot be read is a problem only when no call was found at all, so that prose such
    as ``Sure [I'll add them]:`` before a good call does not send the reply back.
    """
    text, known = text.replace("\x00", ""), {f.name for f in functions}
    calls: list[FunctionCall] = []
    contents: list[str] = []
    problems: list[str] = []   # about call-shaped values: always reported
    unreadable: list[str] = []  # about text that did not read as JSON: reported if nothing else
    spans: list[tuple[int, int]] = []
    pending: list[tuple[Node, bool]] = [(node, False) for node in reversed(scan(text))]
    while pending:
        node, reported = pending.pop()
        if node.error is not None:  # not a value: try the pairs inside it
            if node.callish and not reported:
                unreadable.append(f"could not read {_clip(text[node.start:node.start + 240])} as JSON: "
                                  f"{node.error}")
                reported = True
            pending += [(child, reported) for child in reversed(node.children)]
            continue
        if (parts := _interpret(node.value, known)) is not None:
            calls += parts[0]
            contents += parts[1]
            problems += parts[2]
            spans.append((node.start, node.end))
    return ParsedToolCalls(calls=calls, content=_prose(text, spans, contents),
                           problems=problems + ([] if calls else unreadable))


def _interpret(value: Any, known: set[str], lists: int = 0) -> _Found | None:
    """(calls, contents, problems) if ``value`` is call-shaped in any supported variant, else None."""
    if isinstance(value, list):
        if lists >= _MAX_LIST_NESTING:
            return None
        parts = [_interpret(item, known, lists + 1) for item in value]
        kept = [p for p in parts if p is not None]
        skipped = [f"ignored a list item that is not a tool call: {_clip(json.dumps(v))}"
                   for v, p in zip(value, parts, strict=True) if p is None]
        return ([c for p in kept for c in p[0]], [c for p in kept for c in p[1]],
                [q for p in kept for q in p[2]] + skipped) if kept else None
    if not isinstance(value, dict):
        return None
    content = [value["content"]] if isinstance(value.get("content"), str) and value["content"].strip() else []
    if "tool_calls" in value:
        inner = _interpret(value["tool_calls"], known, lists) if value["tool_calls"] else ([], [], [])
        return (inner[0], content + inner[1], inner[2]) if inner else ([], content,
                                                                        ["tool_calls holds no call"])
    for wrapper in ("function_call", "function", "tool_call"):
        if isinstance(value.get(wrapper), dict):
            return _interpret(value[wrapper], known, lists)
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
