"""Tool calls for models and servers without reliable native tool calling. Pure, no I/O.

Best first: *constrained* — ``reply_schema`` goes out as ``response_format`` (or as a grammar via
``gbnf``) so the server can only sample a reply that IS a valid call; *compat* — the server cannot
constrain, so ``compat_instructions`` asks for JSON and ``parsing.parse_tool_calls`` digs the
calls out of whatever a small model wrote; *feedback* — ``validate_call`` finds what is wrong and
``feedback_message`` tells the model, for a bounded retry. Inputs are never mutated.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing.exceptions import Unresolvable

from llamafile_provider.errors import ConfigurationError
from llamafile_provider.messages import FunctionCall, FunctionSpec, ToolCall

DEFAULT_MAX_PARALLEL_CALLS = 8  # bounds the array so that a looping small model still stops


class ChoiceMode(str, Enum):
    AUTO = "auto"          # the model decides: calls or a plain-text answer
    REQUIRED = "required"  # at least one call, to any offered function
    NONE = "none"          # plain text only
    FUNCTION = "function"  # calls to the function in ``ToolChoice.name`` only


@dataclass(frozen=True)
class ToolChoice:
    """A normalised ``tool_choice``: a mode, plus the function name for ``FUNCTION``."""

    mode: ChoiceMode
    name: str | None = None

    @property
    def must_call(self) -> bool:
        return self.mode in (ChoiceMode.REQUIRED, ChoiceMode.FUNCTION)


ToolChoiceLike = ToolChoice | str | Mapping[str, Any] | None
_MODES = {"auto": ChoiceMode.AUTO, "required": ChoiceMode.REQUIRED, "any": ChoiceMode.REQUIRED,
          "none": ChoiceMode.NONE}


def normalize_tool_choice(choice: ToolChoiceLike, functions: Sequence[FunctionSpec]) -> ToolChoice:
    """Every spelling callers use (OpenAI's, Mistral's "any", a bare name), checked in one place.

    A keyword beats a function of the same name (use the dict form); ``None`` means "auto".
    """
    names = [f.name for f in functions]
    if choice is None or isinstance(choice, ToolChoice):
        mode, name = (choice.mode, choice.name) if choice else (ChoiceMode.AUTO, None)
    elif isinstance(choice, str):
        mode = _MODES.get(choice, ChoiceMode.FUNCTION)
        name = choice if mode is ChoiceMode.FUNCTION else None
    elif isinstance(choice, Mapping):
        function = choice.get("function")
        mode, name = ChoiceMode.FUNCTION, function.get("name") if isinstance(function, Mapping) else None
        if choice.get("type", "function") != "function" or not isinstance(name, str):
            raise ConfigurationError(f"tool_choice {dict(choice)!r} is not understood; use 'auto', 'required', "
                                     "'none', a function name or {\"type\": \"function\", \"function\": "
                                     "{\"name\": \"...\"}}.")
    else:
        raise ConfigurationError(f"tool_choice must be a string or a dict, not {type(choice).__name__}.")
    if mode is ChoiceMode.FUNCTION and name not in names:
        raise ConfigurationError(f"tool_choice names the unknown function {name!r}; "
                                 f"available: {', '.join(names) or '(none)'}.")
    if mode is ChoiceMode.REQUIRED and not names:
        raise ConfigurationError("tool_choice 'required' needs at least one function.")
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigurationError(f"function names must be unique; repeated: {', '.join(duplicates)}.")
    return ToolChoice(mode, name if mode is ChoiceMode.FUNCTION else None)


def _chosen(functions: Sequence[FunctionSpec], choice: ToolChoiceLike) -> tuple[ToolChoice, list[FunctionSpec]]:
    normalized = normalize_tool_choice(choice, functions)
    return normalized, [f for f in functions if normalized.mode is not ChoiceMode.NONE and
                        (normalized.mode is not ChoiceMode.FUNCTION or f.name == normalized.name)]


CONTENT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"content": {"type": "string"}},
                                  "required": ["content"], "additionalProperties": False}


def reply_schema(functions: Sequence[FunctionSpec], choice: ToolChoiceLike = "required", *,
                 allow_parallel: bool = False,
                 max_parallel_calls: int = DEFAULT_MAX_PARALLEL_CALLS) -> dict[str, Any]:
    """The JSON schema of a constrained reply, such that every reply it allows IS a valid call.

    ``{"tool_calls": [{"name": ..., "arguments": ...}]}``; for "auto" alternatively
    ``{"content": "..."}``; for "none" (or no functions) only the latter, though callers
    normally constrain nothing then. ``$ref``s in a parameters schema are re-rooted under the
    top-level ``$defs``, because once embedded their ``#`` would point at the reply.
    """
    normalized, chosen = _chosen(functions, choice)
    if not chosen:
        return copy.deepcopy(CONTENT_SCHEMA)
    defs: dict[str, Any] = {}
    shapes = [{"type": "object",
               "properties": {"name": {"const": spec.name}, "arguments": _arguments_schema(spec, defs)},
               "required": ["name", "arguments"], "additionalProperties": False} for spec in chosen]
    calls = {"type": "object", "required": ["tool_calls"], "additionalProperties": False,
             "properties": {"tool_calls": {
                 "type": "array", "minItems": 1, "items": {"anyOf": shapes},
                 "maxItems": max(1, max_parallel_calls) if allow_parallel else 1}}}
    schema = calls if normalized.must_call else {"anyOf": [calls, copy.deepcopy(CONTENT_SCHEMA)]}
    return {"$defs": defs, **schema} if defs else schema


TOOL_CALL_KEY = "tool_call"  # where a combined reply (response_schema + functions) holds its call


def combined_schema(response_schema: Mapping[str, Any], functions: Sequence[FunctionSpec],
                    choice: ToolChoiceLike = "auto") -> dict[str, Any]:
    """ONE reply object holding both a ``response_schema``'s fields and a tool call.

    AutoGPT's one-shot strategy needs both in one turn (its JSON thoughts plus a tool). Two
    constraints cannot be sent (llama-server lets ``response_format`` win over ``tools`` and
    drops the call), and a weak model gets one object right more often than two outputs, so
    the schema's own properties come first, then ``"tool_call": {"name", "arguments"}`` with one
    alternative per offered function (``null`` allowed unless a call is required). Raises
    ``ConfigurationError`` for a schema that has no object properties to put the call next to.
    """
    normalized, chosen = _chosen(functions, choice)
    properties = response_schema.get("properties")
    if response_schema.get("type") != "object" or not isinstance(properties, Mapping):
        raise ConfigurationError("with functions, response_schema must describe a JSON object with "
                                 "\"properties\" (the tool call goes next to them); wrap other shapes "
                                 "in an object property.")
    if TOOL_CALL_KEY in properties:
        raise ConfigurationError(f"response_schema has a {TOOL_CALL_KEY!r} property, which is where the "
                                 "tool call goes when functions are given too; rename it.")
    if not chosen:
        raise ConfigurationError("combined_schema needs at least one function that may be called.")
    calls = reply_schema(chosen, "required")
    defs = dict(response_schema.get("$defs") or {})
    if clash := sorted(set(defs) & set(calls.get("$defs") or {})):
        raise ConfigurationError(f"response_schema's $defs {', '.join(clash)} have the names of functions; "
                                 "rename them.")
    call: dict[str, Any] = calls["properties"]["tool_calls"]["items"]
    if not normalized.must_call:
        call = {"anyOf": [*call["anyOf"], {"type": "null"}]}
    combined = {key: value for key, value in copy.deepcopy(dict(response_schema)).items()
                if key not in ("$defs", "$schema", "$id")}
    combined["properties"] = {**combined["properties"], TOOL_CALL_KEY: call}
    combined["required"] = [*(combined.get("required") or []), TOOL_CALL_KEY]
    defs.update(calls.get("$defs") or {})
    return {"$defs": copy.deepcopy(defs), **combined} if defs else combined


def _arguments_schema(spec: FunctionSpec, defs: dict[str, Any]) -> dict[str, Any]:
    """A stricter deep copy of the parameters: always an object, objects with ``properties`` closed.

    Closing (``additionalProperties: false`` where absent; llama-server's converter assumes it
    too) stops small models inventing keys: allowed extra keys, the test-bed model appended them
    until ``max_tokens``. ``allOf`` parts stay open (closed, they would exclude one another);
    ``$schema``/``$id`` are dropped (they would re-base the refs).
    """
    params = {k: v for k, v in copy.deepcopy(spec.parameters).items() if k not in ("$schema", "$id")}
    params.setdefault("type", "object")
    if not _tighten(params, f"#/$defs/{spec.name}"):
        return params
    defs[spec.name] = params
    return {"$ref": f"#/$defs/{spec.name}"}


def _tighten(node: Any, ref_root: str, in_all_of: bool = False) -> bool:
    """In place, on every subschema (never on data such as ``enum``): close objects, re-root
    local ``$ref``s under ``ref_root``. True if there was any ``$ref``."""
    if not isinstance(node, dict):
        return False
    has_ref = isinstance(node.get("$ref"), str) and node["$ref"].startswith("#")
    if has_ref:
        node["$ref"] = ref_root + node["$ref"][1:]
    if isinstance(node.get("properties"), dict) and not in_all_of and "allOf" not in node and not any(
            k in node for k in ("additionalProperties", "patternProperties", "unevaluatedProperties")):
        node["additionalProperties"] = False
    for key, sub in node.items():
        if key in ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas"):
            subs = list(sub.values()) if isinstance(sub, dict) else []
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            subs = sub if isinstance(sub, list) else []
        else:
            subs = [sub] if key in ("items", "additionalProperties", "contains", "not", "if", "then",
                                    "else") else []
        has_ref = any([_tighten(s, ref_root, in_all_of or key == "allOf") for s in subs]) or has_ref
    return has_ref


def compat_instructions(functions: Sequence[FunctionSpec], choice: ToolChoiceLike = "auto", *,
                        allow_parallel: bool = False) -> str:
    """Prompt text for servers that cannot constrain output: the functions and the reply format.

    The format is the ``{"tool_calls": [...]}`` object of the constrained modes, so one parser
    serves all modes; the example uses a real function because small models copy examples.
    """
    normalized, chosen = _chosen(functions, choice)
    if not chosen:
        return "Answer in plain text. Do not call any function."
    lines = ["You can call these functions:", ""]
    for spec in chosen:
        lines += [f"- {spec.name}: {spec.description or '(no description)'}",
                  f"  parameters (JSON schema): {json.dumps(spec.parameters, ensure_ascii=False)}"]
    example = {"tool_calls": [{"name": chosen[0].name, "arguments": _example_arguments(chosen[0].parameters)}]}
    lines += ["", "To call a function, reply with only a JSON object in a ```json fence, like this:",
              "```json", json.dumps(example, ensure_ascii=False), "```",
              "The arguments must match the function's parameters schema.",
              "You may put several calls in the tool_calls list." if allow_parallel
              else "Put exactly one call in the tool_calls list.",
              {ChoiceMode.AUTO: "If no function is needed, answer in plain text instead, without any JSON.",
               ChoiceMode.FUNCTION: f"You must call the function {normalized.name}."}.get(
                  normalized.mode, "You must call one of these functions.")]
    return "\n".join(lines)


def combined_instructions(response_schema: Mapping[str, Any], functions: Sequence[FunctionSpec],
                          choice: ToolChoiceLike = "auto") -> str:
    """Prompt text for a combined reply on a server that cannot constrain it (compat mode)."""
    normalized, chosen = _chosen(functions, choice)
    lines = ["You can call these functions:", ""]
    for spec in chosen:
        lines += [f"- {spec.name}: {spec.description or '(no description)'}",
                  f"  parameters (JSON schema): {json.dumps(spec.parameters, ensure_ascii=False)}"]
    schema = json.dumps(combined_schema(response_schema, functions, choice), ensure_ascii=False)
    lines += ["", "Reply with only one JSON object, in a ```json fence, valid for this JSON schema:", schema,
              f'Its "{TOOL_CALL_KEY}" is the call: {{"name": "<function>", "arguments": {{...}}}}'
              + ("." if normalized.must_call else ", or null if no function is needed.")]
    return "\n".join(lines)


def _example_arguments(schema: Mapping[str, Any]) -> dict[str, Any]:
    props = {k: v if isinstance(v, dict) else {} for k, v in (schema.get("properties") or {}).items()}
    samples = {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}
    return {key: props[key]["const"] if "const" in props[key] else (props[key].get("enum") or [None])[0]
            or samples.get(str(props[key].get("type")), "...")
            for key in [k for k in schema.get("required") or [] if k in props] or list(props)[:1]}


# ------------------------------------------------------------------------- validation and ids
@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    try:
        Draft202012Validator.check_schema(schema := json.loads(schema_json))
    except SchemaError as exc:
        raise ConfigurationError(f"a function's parameters are not a valid JSON schema: {exc.message}") from exc
    return Draft202012Validator(schema)


def check_schema(schema: Mapping[str, Any], what: str) -> None:
    """Refuse a JSON schema that is not one (``{"type": 5}``) before any request is sent,
    instead of failing later on the server or in ``validate_call``."""
    try:
        Draft202012Validator.check_schema(dict(schema))
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(top level)"
        raise ConfigurationError(f"{what} is not a valid JSON schema: at {where}: {_clip(exc.message, 200)}. "
                                 "Fix the schema (see https://json-schema.org).") from None


def validate_call(call: FunctionCall, functions: Sequence[FunctionSpec]) -> list[str]:
    """What is wrong with one call, each problem with its place (``arguments.unit``); [] = valid."""
    spec = next((f for f in functions if f.name == call.name), None)
    if spec is None:
        names = ", ".join(f.name for f in functions) or "(none)"
        return [f"unknown function {call.name!r}; valid names: {names}"]
    validator = _validator(json.dumps(spec.parameters, sort_keys=True, default=str))
    try:
        errors = sorted(validator.iter_errors(call.arguments),
                        key=lambda e: ([str(p) for p in e.absolute_path], e.message))
    except Unresolvable as exc:
        raise ConfigurationError(f"the parameters of {spec.name} have an unresolvable $ref: {exc}") from exc
    return [f"{call.name}: at {_path(e.absolute_path)}: {_clip(e.message, 200)}" for e in errors]


def _path(parts: Iterable[Any]) -> str:
    return "arguments" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def new_call_id() -> str:
    """An OpenAI-like id ("call_" + 24 hex digits): constrained and compat replies carry none."""
    return "call_" + secrets.token_hex(12)


def to_tool_calls(calls: Iterable[FunctionCall]) -> list[ToolCall]:
    """``ToolCall``s with fresh ids, so tool results can be matched to calls as in the OpenAI API."""
    return [ToolCall(id=new_call_id(), function=call) for call in calls]


def feedback_message(problems: Sequence[str], functions: Sequence[FunctionSpec], *, limit: int = 5,
                     combined: bool = False) -> str:
    """The correction sent back to the model: short, bounded so gibberish cannot flood the context.

    ``combined``: the reply asked for is ``combined_schema``'s object, not a bare call."""
    shown = [f"- {_clip(p, 240)}" for p in problems[:limit]] or ["- no tool call was found"]
    shown += [f"- ... and {len(problems) - limit} more"] if len(problems) > limit else []
    names = " | ".join(f.name for f in functions) or "(none)"
    call = '{"name": "<' + names + '>", "arguments": {...}}'
    wanted = (f'holding the fields asked for and "{TOOL_CALL_KEY}": {call},' if combined
              else '{"tool_calls": [' + call + "]}")
    return ("Your last reply did not contain a valid tool call:\n" + "\n".join(shown) + "\n"
            f"Reply again with only a JSON object {wanted} whose arguments match that function's parameters.")


__all__ = ["CONTENT_SCHEMA", "ChoiceMode", "DEFAULT_MAX_PARALLEL_CALLS", "TOOL_CALL_KEY", "ToolChoice",
           "ToolChoiceLike", "check_schema", "combined_instructions", "combined_schema", "compat_instructions",
           "feedback_message", "new_call_id",
           "normalize_tool_choice", "reply_schema", "to_tool_calls", "validate_call"]
