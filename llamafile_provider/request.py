"""What one chat call sends: its plan (tool mode, choice, schema), the request body, and the
sampling options passed through.

Pure: built from the server's probed facts (``ServerInfo``), sent by the provider.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llamafile_provider import cascade, chat_formats, classic
from llamafile_provider.cascade import ToolMode
from llamafile_provider.dialects import ServerInfo
from llamafile_provider.errors import ServerError, UnsupportedFeatureError
from llamafile_provider.folding import fold_messages
from llamafile_provider.messages import ChatMessage, FunctionSpec
from llamafile_provider.tools import ToolChoice

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
