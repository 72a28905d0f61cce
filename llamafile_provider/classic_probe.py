"""Edge: find out which built-in chat layout a classic llamafile server applies (one probe).

Classic servers render chat prompts with one of the hard-coded layouts in ``chat_formats``
and never say which. One cheap probe tells: a chat request (``max_tokens`` 1) with a short
conversation on which every known layout renders differently, then

1. ``GET /slots``: the slot that served it still holds the exact prompt text; the layout
   whose rendering equals it is the one (and ``prompt_tokens`` minus the text's token count
   says whether the server adds BOS);
2. where ``/slots`` is off (``--slots-endpoint-disable``) or the slot was reused meanwhile:
   every distinct rendering is tokenized, and the one layout whose count explains the
   reported ``prompt_tokens`` is taken.

No match leaves ``chat_format`` empty: counts then fall back to a logged estimate.
Written as a sans-I/O operation like those in ``server.py``; the clients drive it.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import httpx

from llamafile_provider import chat_formats
from llamafile_provider.dialects import Dialect, ServerInfo
from llamafile_provider.errors import MalformedResponseError

if TYPE_CHECKING:  # server.py drives this operation and imports this module
    from llamafile_provider.server import Endpoint

logger = logging.getLogger(__name__)


def detect_chat_format(endpoint: Endpoint, info: ServerInfo) -> Generator[httpx.Request, httpx.Response, ServerInfo]:
    """``info`` with ``chat_format`` and ``add_bos`` filled in (classic servers only)."""
    nonce = secrets.token_hex(6)
    messages = chat_formats.probe_messages(nonce)
    body = {"model": info.model_id or "local", "messages": messages, "max_tokens": 1, "temperature": 0.0}
    chat = yield endpoint.request("POST", "/v1/chat/completions", body)
    prompt_tokens = _prompt_tokens(endpoint.checked(chat, Dialect.CLASSIC), endpoint.base_url)
    slots = yield endpoint.request("GET", "/slots")
    rendered = _slot_prompt(slots, nonce)
    if rendered is not None:
        name = chat_formats.identify(rendered, messages)
        if name is not None:
            tokens = yield from endpoint.tokenize(info, rendered, False)
            return _found(info, name, prompt_tokens - len(tokens) == 1)
        logger.warning("%s renders chat prompts in a layout this version does not know; prompt token "
                       "counts there are estimates. Its prompt: %r", endpoint.base_url, rendered[:300])
        return dataclasses.replace(info, chat_format="")
    add_bos = yield from _adds_bos(endpoint, info)
    counts: dict[str, int] = {}
    for name, text in chat_formats.candidates(messages):
        counts[name] = len((yield from endpoint.tokenize(info, text, False)))
    match = chat_formats.match_count(prompt_tokens, counts, add_bos)
    if match is None:
        logger.warning("%s: no single known chat layout explains its prompt token count (%d); counts there "
                       "are estimates. Enable its /slots endpoint for an exact match.", endpoint.base_url,
                       prompt_tokens)
        return dataclasses.replace(info, chat_format="")
    return _found(info, match, add_bos)


def _adds_bos(endpoint: Endpoint, info: ServerInfo) -> Generator[httpx.Request, httpx.Response, bool]:
    """Whether prompts get a BOS: ``/completion`` counts it in ``tokens_evaluated``, ``/tokenize`` never."""
    text = "hello"
    answer = yield endpoint.request("POST", "/completion", {"prompt": text, "n_predict": 1})
    evaluated = endpoint.checked(answer, Dialect.CLASSIC).json().get("tokens_evaluated")
    tokens = yield from endpoint.tokenize(info, text, False)
    return isinstance(evaluated, int) and evaluated > len(tokens)


def _found(info: ServerInfo, name: str, add_bos: bool) -> ServerInfo:
    logger.info("%s applies the built-in %r chat layout (BOS %s)", info.base_url, name, "on" if add_bos else "off")
    return dataclasses.replace(info, chat_format=name, add_bos=add_bos)


def _prompt_tokens(response: httpx.Response, base_url: str) -> int:
    try:
        value = response.json()["usage"]["prompt_tokens"]
    except (ValueError, KeyError, TypeError):
        value = None
    if not isinstance(value, int):
        raise MalformedResponseError(f"{base_url}/v1/chat/completions answered without usage.prompt_tokens",
                                     url=base_url)
    return value


def _slot_prompt(response: httpx.Response, nonce: str) -> str | None:
    """The prompt text of the slot that served the probe, if ``/slots`` still shows it."""
    if response.status_code != 200:
        return None
    try:
        slots: Any = response.json()
    except ValueError:
        return None
    for slot in slots if isinstance(slots, list) else []:
        prompt = slot.get("prompt") if isinstance(slot, dict) else None
        if isinstance(prompt, str) and nonce in prompt:
            return prompt
    return None
