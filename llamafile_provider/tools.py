"""Tool calls for models and servers without reliable native tool calling. Pure, no I/O.

Best first: *constrained* — ``reply_schema`` goes out as ``response_format`` (or as a grammar via
``gbnf``) so the server can only sample a reply that IS a valid call; *compat* — the server cannot
constrain, so ``compat_instructions`` asks for JSON and ``parse_tool_calls`` digs the calls out of
whatever a small model wrote; *feedback* — ``validate_call`` finds what is wrong and
``feedback_message`` tells the model, for a bounded retry. Inputs are never mutated.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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


def _example_arguments(schema: Mapping[str, Any]) -> dict[str, Any]:
    props = {k: v if isinstance(v, dict) else {} for k, v in (schema.get("properties") or {}).items()}
    samples = {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}
    return {key: props[key]["const"] if "const" in props[key] else (props[key].get("enum") or [None])[0]
            or samples.get(str(props[key].get("type")), "...")
            for key in [k for k in schema.get("required") or [] if k in props] or list(props)[:1]}


# ----------------------------------------------------------------------------------- parsing
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
                   for v, p in zip(value, parts) if p is None]
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


# ------------------------------------------------------------------------- validation and ids
@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    try:
        Draft202012Validator.check_schema(schema := json.loads(schema_json))
    except SchemaError as exc:
        raise ConfigurationError(f"a function's parameters are not a valid JSON schema: {exc.message}") from exc
    return Draft202012Validator(schema)


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


def new_call_id() -> str:
    """An OpenAI-like id ("call_" + 24 hex digits): constrained and compat replies carry none."""
    return "call_" + secrets.token_hex(12)


def to_tool_calls(calls: Iterable[FunctionCall]) -> list[ToolCall]:
    """``ToolCall``s with fresh ids, so tool results can be matched to calls as in the OpenAI API."""
    return [ToolCall(id=new_call_id(), function=call) for call in calls]


def feedback_message(problems: Sequence[str], functions: Sequence[FunctionSpec], *, limit: int = 5) -> str:
    """The correction sent back to the model: short, bounded so gibberish cannot flood the context."""
    shown = [f"- {_clip(p, 240)}" for p in problems[:limit]] or ["- no tool call was found"]
    shown += [f"- ... and {len(problems) - limit} more"] if len(problems) > limit else []
    names = " | ".join(f.name for f in functions) or "(none)"
    return ("Your last reply did not contain a valid tool call:\n" + "\n".join(shown) + "\n"
            'Reply again with only a JSON object {"tool_calls": [{"name": "<' + names + '>", '
            '"arguments": {...}}]} whose arguments match that function\'s parameters.')


__all__ = ["CONTENT_SCHEMA", "ChoiceMode", "DEFAULT_MAX_PARALLEL_CALLS", "ParsedToolCalls", "ToolChoice",
           "ToolChoiceLike", "compat_instructions", "feedback_message", "loads_lenient", "new_call_id",
           "normalize_tool_choice", "parse_tool_calls", "reply_schema", "to_tool_calls", "validate_call"]
