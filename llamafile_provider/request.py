"""What one chat call sends: its plan (tool mode, choice, schema), the request body, and the
sampling options passed through.

Pure: built from the server's probed facts (``ServerInfo``), sent by the provider.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
from pydantic import BaseModel, ValidationError

from llamafile_provider import cascade, chat_formats, classic
from llamafile_provider.cascade import ToolMode
from llamafile_provider.dialects import Dialect, ServerInfo
from llamafile_provider.errors import ConfigurationError, ServerError, UnsupportedFeatureError
from llamafile_provider.folding import fold_messages
from llamafile_provider.messages import ChatMessage, FunctionSpec
from llamafile_provider.tools import ToolChoice

FunctionLike = FunctionSpec | Mapping[str, Any]

# Sampling options the local servers understand (OpenAI's, then llama.cpp's own, which the SDK
# only carries in ``extra_body``); anything else newer callers pass is dropped.
OPENAI_SAMPLING = {"temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty"}
LLAMA_SAMPLING = {"top_k", "min_p", "repeat_penalty", "typical_p", "mirostat", "ignore_eos"}
PASSTHROUGH = OPENAI_SAMPLING | LLAMA_SAMPLING


def sampling_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """SDK keyword arguments for the sampling options among ``kwargs``."""
    chosen = {k: v for k, v in kwargs.items() if k in OPENAI_SAMPLING and v is not None}
    extra = {k: v for k, v in kwargs.items() if k in LLAMA_SAMPLING and v is not None}
    return {**chosen, "extra_body": extra} if extra else chosen


@dataclass(frozen=True)
class Plan:
    """A chat call's decisions before its first request: the tool mode, the tool choice, the
    response schema. The request is then built as the provider's ``_converse`` builds it."""

    messages: list[ChatMessage]
    mode: ToolMode | None
    specs: list[FunctionSpec]
    choice: ToolChoice | None
    target: dict[str, Any] | None

    def budget_target(self) -> dict[str, Any] | None:
        return cascade.constrained_schema(self.mode, self.specs, self.choice, self.target)

    def request(self, info: ServerInfo, prefill: str,
                budget: cascade.OutputBudget | None) -> tuple[dict[str, Any], str | None]:
        """The first chat request, and the raw prompt instead when the prefill is continued
        through classic ``/completion`` (``_continue``)."""
        shape = cascade.request_shape(info, self.mode, self.specs, self.choice, self.target, budget)
        route = classic.prefill_route(info, prefill, shape)
        conversation = cascade.request_conversation(self.messages, self.mode, self.specs, self.choice,
                                                    self.target, prefill if route is classic.PrefillRoute.CHAT else "")
        request = chat_request(info, conversation, native_tools=self.mode is ToolMode.NATIVE, max_output_tokens=None,
                               parts=(shape,))
        if route is classic.PrefillRoute.CONTINUE:
            return request, chat_formats.render(info.chat_format or "", request["messages"]) + prefill
        return request, None


def reuse_part(dialect: Dialect, cache_prompt: bool, slot: int | None) -> dict[str, Any]:
    """The request part for prompt reuse: ``cache_prompt`` (classic b2282 defaults it to false,
    llama-server to true, so "off" is sent as false) and the slot that holds the conversation's prefix (``id_slot`` on
    llama-server, ``slot_id`` on classic, where only ``/completion`` honours it: b2282's chat
    endpoint drops it). Llamafiler gets neither: it documents no such fields."""
    if dialect is Dialect.LLAMAFILER:
        return {}
    extra: dict[str, Any] = {"cache_prompt": cache_prompt}
    if slot is not None:
        extra["id_slot" if dialect is Dialect.LLAMA_SERVER else "slot_id"] = slot
    return {"extra_body": extra}


def cache_counts(usage: Any, extra: Mapping[str, Any] | None,
                 prompt_tokens: int) -> tuple[int | None, int | None]:
    """(cached, evaluated) prompt tokens as the server reports them, else (None, None).

    llama-server: ``timings.cache_n`` / ``timings.prompt_n`` (kept by the SDK in ``model_extra``),
    or ``usage.prompt_tokens_details.cached_tokens``; classic ``/completion`` (read back by
    ``classic.as_chat_completion``): ``timings.prompt_n`` evaluated of ``tokens_evaluated``
    (= ``prompt_tokens``). Classic chat replies and llamafiler report neither: None, not 0.
    """
    timings = (extra or {}).get("timings")
    if isinstance(timings, Mapping) and isinstance(timings.get("prompt_n"), int):
        evaluated = int(timings["prompt_n"])
        cached = timings.get("cache_n")
        return (int(cached) if isinstance(cached, int) else max(prompt_tokens - evaluated, 0)), evaluated
    details = usage.get("prompt_tokens_details") if isinstance(usage, Mapping) \
        else getattr(usage, "prompt_tokens_details", None)
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else getattr(details, "cached_tokens", None)
    if isinstance(cached, int):
        return cached, max(prompt_tokens - cached, 0)
    return None, None


def chat_request(info: ServerInfo, messages: Sequence[ChatMessage], *, native_tools: bool,
                 max_output_tokens: int | None, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """SDK arguments for one chat request: folded messages plus each part's arguments, with
    every part's ``extra_body`` (llama.cpp sampling options, a grammar) merged into one."""
    request: dict[str, Any] = {"model": info.model_id or "local",
                               "messages": fold_messages(messages, info.caps, native_tools=native_tools)}
    extra_body: dict[str, Any] = {}
    for part in parts:
        extra_body.update(part.get("extra_body", {}))
        request.update({key: value for key, value in part.items() if key != "extra_body"})
    if extra_body:
        request["extra_body"] = extra_body
    if max_output_tokens is not None:  # a bounded constrained reply may reserve more (cascade.constrain)
        request["max_tokens"] = max(max_output_tokens, request.get("max_tokens", max_output_tokens))
    return request


def call_text(call: dict[str, Any]) -> str:
    """A native call as the JSON object the model meant (arguments parsed where they parse)."""
    function = call.get("function") or {}
    arguments, error = cascade.native_arguments(function.get("arguments"))
    return json.dumps({"name": function.get("name"), "arguments": function.get("arguments") if error else arguments},
                      ensure_ascii=False, default=str)


def mode_refused(exc: ServerError) -> bool:
    """True when the error means "this server cannot do that tool mode", not a bad request."""
    text = str(exc).lower()
    return isinstance(exc, UnsupportedFeatureError) or any(
        marker in text for marker in ("grammar", "tools", "json_schema", "response_format", "sampler"))


def as_function_specs(functions: Sequence[FunctionLike] | None) -> list[FunctionSpec]:
    """``FunctionSpec``s from specs, OpenAI ``tools`` entries or ``{name, description, parameters}``."""
    specs = []
    for function in functions or []:
        if isinstance(function, FunctionSpec):
            specs.append(function)
            continue
        data = dict(function)
        if data.get("type") == "function" and isinstance(data.get("function"), Mapping):
            data = dict(data["function"])
        try:
            specs.append(FunctionSpec.model_validate(data))
        except ValidationError as exc:
            raise ConfigurationError(f"invalid function spec {function!r}: {exc.errors()[0]['msg']}. Expected "
                                     '{"name": ..., "description": ..., "parameters": {JSON schema}}') from None
    return specs


@dataclass(frozen=True)
class ResponseSchema:
    """A structured-output request: the JSON schema sent to the server and how to read a reply."""

    json_schema: dict[str, Any]
    parse: Callable[[str], Any]


def schema_of(response_schema: Any) -> ResponseSchema | None:
    """Accept a pydantic model class or a JSON-schema dict."""
    if response_schema is None:
        return None
    if isinstance(response_schema, type) and issubclass(response_schema, BaseModel):
        model = response_schema

        def parse_model(content: str) -> Any:
            return model.model_validate_json(content)

        return ResponseSchema(model.model_json_schema(), parse_model)
    if isinstance(response_schema, Mapping):
        schema = dict(response_schema)
        try:
            validator = jsonschema.Draft202012Validator(schema)
        except jsonschema.SchemaError as exc:
            raise ConfigurationError(f"response_schema is not a valid JSON schema: {exc.message}") from None

        def parse_json(content: str) -> Any:
            value = json.loads(content)
            validator.validate(value)
            return value

        return ResponseSchema(schema, parse_json)
    raise ConfigurationError(f"response_schema must be a pydantic model class or a JSON-schema dict, "
                             f"not {type(response_schema).__name__}")
