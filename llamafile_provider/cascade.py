"""The tool-call cascade and structured output, per server (pure: no I/O).

How a request asks for tool calls depends on what the server can do:

1. ``native``      — the server's template supports tools (llama-server with a tools template):
   send OpenAI ``tools`` / ``tool_choice``; the server parses the calls.
2. ``constrained`` — the reply is forced to match a JSON schema built from the function specs,
   so the reply IS a valid call: ``response_format`` (llama-server, llamafiler) or a GBNF
   ``grammar`` (classic llamafile, which ignores ``response_format``).
3. ``compat``      — last resort: instructions in the prompt, tolerant parsing of the reply.

Whatever the mode, calls are validated against the function's parameters; problems go back
to the provider, which feeds them to the model and retries a bounded number of times.

With an ``OutputBudget`` (the caller's ``max_output_tokens``), the reply is narrowed by
``budget.bound_schema`` so that it always closes before the server stops it, and ``max_tokens``
becomes the bounded reply's worst case (never less than the budget): constrained on classic
and llama-server, our own compact GBNF grammar, whose length is exactly what the bound counts;
constrained on llamafiler, the bounded JSON schema; native, the offered functions' parameters
bounded the same way. Where the server converts a JSON schema itself (llamafiler, native
tools), its grammar allows whitespace at every structural character (llama-server: up to
``SERVER_WHITESPACE`` characters), and the tags around a native call cost a few tokens:
``max_tokens`` reserves both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from llamafile_provider.budget import BoundedSchema, bound_schema
from llamafile_provider.dialects import Dialect, ServerInfo
from llamafile_provider.gbnf import schema_to_gbnf
from llamafile_provider.messages import FunctionCall, FunctionSpec
from llamafile_provider.parsing import loads_lenient, parse_tool_calls
from llamafile_provider.tools import (
    ChoiceMode,
    ToolChoice,
    reply_schema,
    validate_call,
)


# llama-server's JSON-schema converter: `space ::= | " " | "\n"{1,2} [ \t]{0,20}` between tokens.
SERVER_WHITESPACE = 22
NATIVE_TAGS = 16  # a native call's wrapper (<tool_call> ... </tool_call>, [TOOL_CALLS] ...), generously


class ToolMode(str, Enum):
    NATIVE = "native"
    CONSTRAINED = "constrained"
    COMPAT = "compat"

    def fallback(self) -> ToolMode | None:
        """The next mode down the cascade when the server refuses this one."""
        return {ToolMode.NATIVE: ToolMode.CONSTRAINED, ToolMode.CONSTRAINED: ToolMode.COMPAT}.get(self)


def choose_tool_mode(info: ServerInfo, preference: str = "auto") -> ToolMode:
    """The best mode this server supports, unless the settings force one."""
    if preference != "auto":
        return ToolMode(preference)
    if info.dialect is Dialect.LLAMA_SERVER and info.caps.supports_tool_calls:
        return ToolMode.NATIVE
    return ToolMode.CONSTRAINED  # every known dialect can constrain output one way or another


@dataclass(frozen=True)
class OutputBudget:
    """The caller's ``max_output_tokens`` and the measured token counts of the reply schema's
    fixed pieces (``budget.skeleton_pieces``; missing pieces count one token per character)."""

    max_tokens: int
    piece_tokens: Mapping[str, int] = field(default_factory=dict)


def constrain(info: ServerInfo, schema: Mapping[str, Any], budget: OutputBudget | None = None) -> dict[str, Any]:
    """SDK keyword arguments that make the server's reply match ``schema`` (and, with a
    budget, close within it: see the module docstring)."""
    if budget is not None:
        bounded = bound_schema(schema, budget.max_tokens, budget.piece_tokens)
        if info.dialect is Dialect.LLAMAFILER:
            return {"response_format": {"type": "json_schema", "json_schema": bounded.schema},
                    "max_tokens": _server_converted(bounded)}
        grammar = schema_to_gbnf(bounded.schema, bounded=True, max_digits=bounded.max_digits)
        return {"extra_body": {"grammar": grammar}, "max_tokens": bounded.max_tokens}
    if info.dialect is Dialect.CLASSIC:
        return {"extra_body": {"grammar": schema_to_gbnf(dict(schema))}}
    if info.dialect is Dialect.LLAMAFILER:  # llamafiler reads the schema itself from json_schema
        return {"response_format": {"type": "json_schema", "json_schema": dict(schema)}}
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": dict(schema)}}}


def constrained_schema(mode: ToolMode | None, functions: Sequence[FunctionSpec], choice: ToolChoice | None,
                       response_schema: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The schema a request in ``mode`` will constrain the reply to, if any (for measuring
    its fixed pieces before ``tool_request`` / ``constrain``)."""
    if mode is not None and choice is not None:
        if not functions or choice.mode is ChoiceMode.NONE or mode is ToolMode.COMPAT:
            return None
        # native: the server's grammar holds one call in its own wrapper, much like our reply
        return reply_schema(_offered(functions, choice), "required") if mode is ToolMode.NATIVE \
            else reply_schema(functions, choice)
    return dict(response_schema) if response_schema is not None else None


def _offered(functions: Sequence[FunctionSpec], choice: ToolChoice) -> list[FunctionSpec]:
    return [f for f in functions if choice.mode is not ChoiceMode.FUNCTION or f.name == choice.name]


def _server_converted(bounded: BoundedSchema, wrapper: int = 0) -> int:
    """``max_tokens`` for a bounded schema that the server turns into a grammar itself."""
    return bounded.max_tokens + SERVER_WHITESPACE * bounded.whitespace_slots + wrapper


def tool_request(info: ServerInfo, mode: ToolMode, functions: Sequence[FunctionSpec],
                 choice: ToolChoice, budget: OutputBudget | None = None) -> dict[str, Any]:
    """SDK keyword arguments that offer ``functions`` in ``mode`` (empty for compat)."""
    if choice.mode is ChoiceMode.NONE or not functions:
        return {}
    if mode is ToolMode.NATIVE:
        offered = [f for f in functions if choice.mode is not ChoiceMode.FUNCTION or f.name == choice.name]
        # llama-server treats a named tool_choice object as "auto": offer only that one, required.
        wire_choice = "required" if choice.must_call else "auto"
        tools = [f.to_openai() for f in offered]
        if budget is None:
            return {"tools": tools, "tool_choice": wire_choice}
        bounded = bound_schema(reply_schema(offered, "required"), budget.max_tokens, budget.piece_tokens)
        calls = bounded.schema["properties"]["tool_calls"]["items"]["anyOf"]
        tools = [{**tool, "function": {**tool["function"], "parameters": call["properties"]["arguments"]}}
                 for tool, call in zip(tools, calls)]
        return {"tools": tools, "tool_choice": wire_choice, "max_tokens": _server_converted(bounded, NATIVE_TAGS)}
    if mode is ToolMode.CONSTRAINED:
        return constrain(info, reply_schema(functions, choice), budget)
    return {}


@dataclass
class Reply:
    """An assistant reply read back from the server, with whatever is wrong with it."""

    content: str
    calls: list[FunctionCall] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_reply(mode: ToolMode | None, content: str | None, native_calls: Sequence[Mapping[str, Any]] | None,
               functions: Sequence[FunctionSpec], choice: ToolChoice | None) -> Reply:
    """Turn the server's message into content + validated calls (or problems to feed back)."""
    content = content or ""
    if mode is None or choice is None or choice.mode is ChoiceMode.NONE:
        return Reply(content)
    if mode is ToolMode.NATIVE:
        reply = _native(content, native_calls or [])
    elif mode is ToolMode.CONSTRAINED:
        reply = _constrained(content)
    else:
        parsed = parse_tool_calls(content, functions)
        reply = Reply(parsed.content if parsed.calls else content, list(parsed.calls), list(parsed.problems))
    for call in reply.calls:
        reply.problems += validate_call(call, functions)
    if choice.mode is ChoiceMode.FUNCTION:
        reply.problems += [f"the call must be to {choice.name}, not {c.name}" for c in reply.calls
                           if c.name != choice.name]
    if choice.must_call and not reply.calls:
        reply.problems.append("a tool call is required, but the reply has none")
    return reply


def _native(content: str, calls: Sequence[Mapping[str, Any]]) -> Reply:
    reply = Reply(content)
    for call in calls:
        function = call.get("function") or {}
        arguments, error = loads_lenient(function.get("arguments") or "{}")
        if error or not isinstance(arguments, dict):
            reply.problems.append(f"the arguments of {function.get('name')} are not a JSON object: {error}")
            continue
        reply.calls.append(FunctionCall(name=str(function.get("name") or ""), arguments=arguments))
    return reply


def _constrained(content: str) -> Reply:
    try:
        body = json.loads(content)
    except json.JSONDecodeError as exc:  # cut off by max_tokens, most likely
        return Reply(content, problems=[f"the reply is not complete JSON ({exc.msg}); keep it shorter"])
    if isinstance(body, dict) and isinstance(body.get("tool_calls"), list):
        calls = [FunctionCall(name=str(c.get("name", "")), arguments=c.get("arguments") or {})
                 for c in body["tool_calls"] if isinstance(c, dict) and isinstance(c.get("arguments", {}), dict)]
        return Reply("", calls)
    if isinstance(body, dict) and isinstance(body.get("content"), str):
        return Reply(body["content"])
    return Reply(content, problems=["the reply matched neither a tool call nor a text answer"])
