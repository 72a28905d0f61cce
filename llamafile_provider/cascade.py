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
from llamafile_provider.messages import ChatMessage, FunctionCall, FunctionSpec, Role
from llamafile_provider.lenient_json import scan
from llamafile_provider.parsing import loads_lenient, parse_tool_calls
from llamafile_provider.tools import (
    TOOL_CALL_KEY,
    ChoiceMode,
    ToolChoice,
    check_schema,
    combined_instructions,
    combined_schema,
    compat_instructions,
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
        if response_schema is not None and mode is not ToolMode.COMPAT:  # see combined_request
            return combined_schema(response_schema, functions, choice)
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


def combined_request(info: ServerInfo, mode: ToolMode, functions: Sequence[FunctionSpec], choice: ToolChoice,
                     response_schema: Mapping[str, Any], budget: OutputBudget | None = None) -> dict[str, Any]:
    """SDK keyword arguments for ONE reply holding a ``response_schema``'s fields and a tool call
    (``tools.combined_schema``); empty for compat, whose prompt asks for it instead.

    llama-server lets ``response_format`` win over ``tools`` (the call is lost), so native mode
    constrains the combined object too, and still sends the tools with ``tool_choice: "none"``:
    the template describes them the way the model knows, and the server parses no call."""
    if mode is ToolMode.COMPAT:
        return {}
    shape = constrain(info, combined_schema(response_schema, functions, choice), budget)
    if mode is ToolMode.NATIVE:
        offered = [f for f in functions if choice.mode is not ChoiceMode.FUNCTION or f.name == choice.name]
        shape.update({"tools": [f.to_openai() for f in offered], "tool_choice": "none"})
    return shape


def request_conversation(messages: Sequence[ChatMessage], mode: ToolMode | None, functions: Sequence[FunctionSpec],
                         choice: ToolChoice | None, response_schema: Mapping[str, Any] | None, prefill: str,
                         extra: Sequence[ChatMessage] = ()) -> list[ChatMessage]:
    """The turns a chat request sends, before folding: the caller's with the compat
    instructions right after their leading system message(s), the feedback turns so far, the
    prefill. Token counting builds its prompt with this too.

    The instructions go at a fixed place, never after the history: an agent's next step then
    renders the same prompt prefix (the server reuses its cache) and only appends turns."""
    conversation = list(messages)
    if mode is ToolMode.COMPAT and choice:
        lead = next((i for i, m in enumerate(conversation) if m.role is not Role.SYSTEM), len(conversation))
        conversation.insert(lead, ChatMessage.system(
            combined_instructions(response_schema, functions, choice) if response_schema is not None
            else compat_instructions(functions, choice)))
    conversation += extra
    if prefill:
        conversation.append(ChatMessage.assistant(prefill))
    return conversation


def request_shape(info: ServerInfo, mode: ToolMode | None, functions: Sequence[FunctionSpec],
                  choice: ToolChoice | None, response_schema: Mapping[str, Any] | None,
                  budget: OutputBudget | None = None) -> dict[str, Any]:
    """How a chat request asks for tools and structure: native tools, a constraint, both, or nothing."""
    if mode and choice and response_schema is not None:
        return combined_request(info, mode, functions, choice, response_schema, budget)
    if mode and choice:
        return tool_request(info, mode, functions, choice, budget)
    return constrain(info, response_schema, budget) if response_schema is not None else {}


def check_schemas(functions: Sequence[FunctionSpec], choice: ToolChoice | None,
                  response_schema: Mapping[str, Any] | None) -> None:
    """Bad schemas fail before any request: each function's parameters, the response schema, and
    whether the latter can hold a tool call when both are given."""
    for spec in functions:
        check_schema(spec.parameters, f"the parameters of function {spec.name}")
    if response_schema is not None:
        check_schema(response_schema, "response_schema")
        if choice is not None and choice.mode is not ChoiceMode.NONE:
            combined_schema(response_schema, functions, choice)


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
    return _checked(reply, functions, choice)


def _checked(reply: Reply, functions: Sequence[FunctionSpec], choice: ToolChoice) -> Reply:
    """``reply`` with the problems of its calls added: invalid arguments, wrong or missing call."""
    for call in reply.calls:
        reply.problems += validate_call(call, functions)
    if choice.mode is ChoiceMode.FUNCTION:
        reply.problems += [f"the call must be to {choice.name}, not {c.name}" for c in reply.calls
                           if c.name != choice.name]
    if choice.must_call and not reply.calls:
        reply.problems.append("a tool call is required, but the reply has none")
    return reply


def read_combined(mode: ToolMode, content: str | None, functions: Sequence[FunctionSpec],
                  choice: ToolChoice) -> Reply:
    """A combined reply: ``content`` becomes the JSON of the schema's fields alone (what a
    ``response_schema`` parser expects), ``calls`` the validated call under ``tool_call``.
    Compat replies are free text: their first JSON object that reads is taken."""
    content = content or ""
    if mode is ToolMode.COMPAT:
        objects = [n.value for n in scan(content) if n.error is None and isinstance(n.value, dict)]
        body: Any = next((o for o in objects if TOOL_CALL_KEY in o), objects[0] if objects else None)
        if body is None:
            return _checked(Reply(content, problems=["the reply holds no JSON object"]), functions, choice)
    else:
        body, unreadable = _json_reply(content)
        if unreadable is not None:
            return unreadable
    if not isinstance(body, dict):
        return Reply(content, problems=["the reply must be a JSON object"])
    call = body.pop(TOOL_CALL_KEY, None)
    reply = Reply(json.dumps(body, ensure_ascii=False))
    if isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("arguments", {}), dict):
        reply.calls.append(FunctionCall(name=call["name"], arguments=call.get("arguments") or {}))
    elif call is not None:
        reply.problems.append(f'"{TOOL_CALL_KEY}" must be {{"name": "<function>", "arguments": {{...}}}}')
    return _checked(reply, functions, choice)


def _native(content: str, calls: Sequence[Mapping[str, Any]]) -> Reply:
    reply = Reply(content)
    for call in calls:
        function = call.get("function") or {}
        arguments, error = native_arguments(function.get("arguments"))
        if error or not isinstance(arguments, dict):
            reply.problems.append(f"the arguments of {function.get('name')} are not a JSON object: {error}")
            continue
        reply.calls.append(FunctionCall(name=str(function.get("name") or ""), arguments=arguments))
    return reply


def native_arguments(raw: Any) -> tuple[Any, str | None]:
    """A native call's arguments: a JSON string as the OpenAI API sends them, or already an
    object (some servers and templates send that); (value, None) or (None, why)."""
    if isinstance(raw, dict):
        return raw, None
    if raw is None or isinstance(raw, str):
        return loads_lenient(raw or "{}")
    return None, f"they are a JSON {type(raw).__name__}, not an object"


def _json_reply(content: str) -> tuple[Any, Reply | None]:
    """A constrained reply's JSON, or the problem reply that says why it does not read."""
    try:
        return json.loads(content), None
    except json.JSONDecodeError as exc:  # cut off by max_tokens, most likely
        return None, Reply(content, problems=[f"the reply is not complete JSON ({exc.msg}); keep it shorter"])
    except RecursionError:
        return None, Reply(content, problems=["the reply is nested too deeply; keep it flat"])


def _constrained(content: str) -> Reply:
    body, unreadable = _json_reply(content)
    if unreadable is not None:
        return unreadable
    if isinstance(body, dict) and isinstance(body.get("tool_calls"), list):
        calls = [FunctionCall(name=str(c.get("name", "")), arguments=c.get("arguments") or {})
                 for c in body["tool_calls"] if isinstance(c, dict) and isinstance(c.get("arguments", {}), dict)]
        return Reply("", calls)
    if isinstance(body, dict) and isinstance(body.get("content"), str):
        return Reply(body["content"])
    return Reply(content, problems=["the reply matched neither a tool call nor a text answer"])
