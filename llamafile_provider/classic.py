"""What chat requests need on classic llamafile servers, as pure functions (no I/O).

Two quirks of the classic server (llama.cpp b2282, llamafile 0.8–0.9) are handled here:

* **Prefill.** Its chat endpoint always closes every turn and opens a new assistant turn, so
  a trailing assistant message (a prefill such as ``{"thoughts":``) is not continued: the
  model starts over and the reply repeats it. Instead the prompt is rendered here with the
  server's own layout (``chat_formats``, probed once), the prefill appended, and the text
  sent to ``/completion``, which continues it. ``completion_body`` carries the chat
  request's options over with the chat endpoint's own defaults; ``as_chat_completion``
  turns the answer back into a chat completion. ``prefill_route`` says, per server and
  request, whether the prefill goes in the chat request, through ``/completion``, or is
  dropped (a grammar-constrained reply, llamafiler, an unknown layout).
* **finish_reason.** Its chat endpoint says ``stop`` even when the reply was cut at
  ``max_tokens`` (the check it makes is always true). ``finish_reason`` says ``length`` when
  the reply used the whole budget: at exactly the budget the model may also have ended by
  itself, which the chat answer cannot tell apart, and a reply that must be continued is the
  safer reading.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from enum import Enum
from typing import Any

from llamafile_provider.dialects import Dialect, ServerInfo

# The chat endpoint's defaults where /completion's differ (b2282 oaicompat_completion_params_parse).
CHAT_DEFAULTS: dict[str, Any] = {"temperature": 0.0, "top_p": 1.0, "frequency_penalty": 0.0,
                                 "presence_penalty": 0.0, "cache_prompt": False}
CHAT_STOP = "<|im_end|>"  # the chat endpoint appends it to every request's stop words
_NOT_SAMPLING = {"model", "messages", "max_tokens", "stop", "stream", "stream_options", "extra_body",
                 "tools", "tool_choice", "response_format", "n"}


def completion_body(request: Mapping[str, Any], prompt: str) -> dict[str, Any]:
    """The ``/completion`` body that continues ``prompt`` as the chat ``request`` would reply.

    ``request`` is the openai SDK's keyword arguments (``extra_body`` holds llama.cpp's own
    options, such as a GBNF ``grammar``); ``tools`` / ``response_format`` are ignored by
    classic servers anyway and are dropped.
    """
    body: dict[str, Any] = dict(CHAT_DEFAULTS)
    body.update({k: v for k, v in request.items() if k not in _NOT_SAMPLING})
    body.update(request.get("extra_body") or {})
    stop = request.get("stop") or []
    body["stop"] = [stop, CHAT_STOP] if isinstance(stop, str) else [*stop, CHAT_STOP]
    body["n_predict"] = request["max_tokens"] if request.get("max_tokens") is not None else -1
    body["prompt"] = prompt
    body["stream"] = False
    return body


def as_chat_completion(answer: Mapping[str, Any], model: str) -> dict[str, Any]:
    """A ``/completion`` answer as an OpenAI chat completion (the fields the provider reads)."""
    prompt_tokens = int(answer.get("tokens_evaluated") or 0)
    completion_tokens = int(answer.get("tokens_predicted") or 0)
    stopped = answer.get("stopped_eos") or answer.get("stopped_word")
    reason = "length" if answer.get("stopped_limit") and not stopped else "stop"
    return {
        "id": f"completion-{time.time_ns()}",
        "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": reason,
                     "message": {"role": "assistant", "content": str(answer.get("content") or "")}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def finish_reason(dialect: Dialect, reported: str | None, completion_tokens: int | None,
                  max_tokens: int | None) -> str | None:
    """The true finish reason of a reply (classic chat replies always report ``stop``)."""
    if dialect is Dialect.CLASSIC and reported == "stop" and max_tokens is not None \
            and completion_tokens is not None and completion_tokens >= max_tokens > 0:
        return "length"
    return reported


class PrefillRoute(str, Enum):
    """How a prefilled reply (a trailing assistant turn to continue) is sent to a server."""

    CHAT = "chat"  # llama-server continues a trailing assistant message itself
    CONTINUE = "continue"  # classic: render the prompt here, continue it with /completion
    DROP = "drop"  # a constrained reply, or a server that would close the turn and repeat the prefill


def prefill_route(info: ServerInfo, prefill: str, shape: Mapping[str, Any]) -> PrefillRoute:
    """The route for ``prefill`` on this server, given the request's tool / structure ``shape``.

    A constrained reply (a GBNF grammar or a JSON schema) already decides how the reply starts,
    and its grammar matches a whole reply, not a continuation: every dialect drops the prefill
    there (llama-server refuses the pair with 400 "Failed to initialize samplers"). So do
    llamafiler (whose template is unknown) and a classic server whose layout the probe did not
    recognise, since they would close the prefilled turn and the reply would repeat it.
    """
    if not prefill:
        return PrefillRoute.CHAT
    if constrained(shape):
        return PrefillRoute.DROP
    if info.dialect is Dialect.LLAMA_SERVER:
        return PrefillRoute.CHAT
    if info.dialect is Dialect.CLASSIC and info.chat_format:
        return PrefillRoute.CONTINUE
    return PrefillRoute.DROP


def constrained(shape: Mapping[str, Any]) -> bool:
    """True when a request shape constrains the reply (a grammar or a JSON schema)."""
    return "grammar" in (shape.get("extra_body") or {}) or "response_format" in shape
