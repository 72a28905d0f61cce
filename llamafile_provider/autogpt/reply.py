"""The constrained reply of AutoGPT's one-shot prompt strategy. Pure: dicts in, dicts out.

AutoGPT asks for ``{"thoughts": {...}, "use_tool": {"name", "arguments"}}`` (with its
functions API: the thoughts as text plus a tool call). A weak model rarely writes that on its
own, so the adapter sends ONE JSON schema that makes every sampled reply parse: the strategy's
own schema for ``thoughts`` (its strings bounded, so the object closes well inside the output
budget) and, for ``use_tool``, one alternative per offered command whose ``name`` is that
command and whose ``arguments`` match its parameters (built by the core's ``reply_schema``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from llamafile_provider.messages import FunctionSpec
from llamafile_provider.tools import reply_schema

# Bounds for free-text fields of the thoughts object: a small model fills every string it may,
# so without them the JSON does not close within a sane output budget (NOTES §5).
MAX_THOUGHT_CHARS = 240
MAX_PLAN_ITEMS = 4
GENERIC_TOOL = {"type": "object", "required": ["name", "arguments"], "additionalProperties": False,
                "properties": {"name": {"type": "string", "maxLength": 64}, "arguments": {"type": "object"}}}


def forge_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A command's ``dict[str, JSONSchema]`` (forge) as one JSON schema of an object."""
    properties = {name: clean_schema(spec.to_dict()) for name, spec in parameters.items()}
    required = [name for name, spec in parameters.items() if getattr(spec, "required", False)]
    return {"type": "object", "properties": properties, "required": required}


def clean_schema(schema: Any) -> Any:
    """forge's ``JSONSchema.to_dict`` writes ``minimum`` as "minumum"; put it right, recursively."""
    if isinstance(schema, list):
        return [clean_schema(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    return {("minimum" if key == "minumum" else key): clean_schema(value) for key, value in schema.items()}


def bounded(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a thoughts schema where every string has a ``maxLength`` and arrays a ``maxItems``."""
    result = copy.deepcopy(dict(schema))
    kind = result.get("type")
    if kind == "string" and "enum" not in result:
        result["maxLength"] = min(result.get("maxLength", MAX_THOUGHT_CHARS), MAX_THOUGHT_CHARS)
    elif kind == "array":
        result["maxItems"] = min(result.get("maxItems", MAX_PLAN_ITEMS), MAX_PLAN_ITEMS)
        if isinstance(result.get("items"), Mapping):
            result["items"] = bounded(result["items"])
    elif kind == "object" and isinstance(result.get("properties"), Mapping):
        result["properties"] = {k: bounded(v) for k, v in result["properties"].items()}
        result["required"] = list(result["properties"])
        result["additionalProperties"] = False
    return result


def agent_reply_schema(strategy_schema: Mapping[str, Any], commands: Sequence[FunctionSpec]) -> dict[str, Any]:
    """The whole reply: the strategy's properties (bounded) with ``use_tool`` pinned to ``commands``.

    Without commands (AutoGPT's functions API off), ``use_tool`` stays a generic name + object.
    """
    properties = {name: bounded(spec) for name, spec in (strategy_schema.get("properties") or {}).items()
                  if name != "use_tool"}
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False}
    if commands:
        calls = reply_schema(list(commands), "required")
        properties["use_tool"] = calls["properties"]["tool_calls"]["items"]
        if "$defs" in calls:
            schema["$defs"] = calls["$defs"]
    else:
        properties["use_tool"] = copy.deepcopy(GENERIC_TOOL)
    schema["properties"] = properties
    schema["required"] = list(properties)
    return schema


def split_reply(content: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(the reply object, the tool name, its arguments) from a constrained reply's text."""
    reply = json.loads(content)
    if not isinstance(reply, dict):
        raise ValueError(f"the reply is a JSON {type(reply).__name__}, not an object")
    tool = reply.get("use_tool")
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise ValueError('the reply has no "use_tool": {"name": ..., "arguments": {...}}')
    arguments = tool.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise ValueError('"use_tool.arguments" must be an object')
    return reply, tool["name"], arguments
