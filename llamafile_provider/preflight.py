"""Context pre-flight: a prompt that cannot fit one server slot never leaves the client.

Why here and not on the server: llama-server answers 400, but a classic llamafile silently
truncates the prompt (an agent loses the middle of its prompt without knowing), so the size is
checked the same way on every dialect before sending: the server-exact prompt count plus the
reply budget (``max_output_tokens``) against the slot's context. Too large -> a
``ContextOverflowError`` that says what to do, or, when the caller opted in
(``LLAMAFILE_TRIM_HISTORY``), the oldest non-system turns are dropped until it fits, and logged.

The check costs no request in the common case: a rendered prompt never has more tokens than
UTF-8 bytes, so a prompt whose byte length fits is sent without being counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from llamafile_provider.dialects import ServerInfo
from llamafile_provider.errors import ContextOverflowError
from llamafile_provider.messages import ChatMessage, Role
from llamafile_provider.tokenizer import render_template

if TYPE_CHECKING:
    from llamafile_provider.connection import Server

logger = logging.getLogger(__name__)

Build = Callable[[list[ChatMessage]], dict[str, Any]]
# BOS, EOS and an SPM space prefix are tokens the rendered text may not spell out.
_SPECIAL_SLACK = 4


def droppable_turns(turns: Sequence[ChatMessage]) -> list[list[int]]:
    """Indices of the turns that may be dropped, oldest first, in groups dropped together.

    System messages and the last turn (the question being asked) are never dropped; an
    assistant turn with tool calls takes its tool results with it, so no result is orphaned.
    """
    groups: list[list[int]] = []
    for index, turn in enumerate(turns[:-1]):
        if turn.role is Role.SYSTEM:
            continue
        if turn.role is Role.TOOL and groups and turns[groups[-1][0]].tool_calls and groups[-1][-1] == index - 1:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def without(turns: Sequence[ChatMessage], groups: Sequence[list[int]]) -> list[ChatMessage]:
    dropped = {index for group in groups for index in group}
    return [turn for index, turn in enumerate(turns) if index not in dropped]


async def prompt_tokens(server: Server, info: ServerInfo, request: dict[str, Any], budget: int) -> int:
    """The server-exact prompt size of ``request``; a cheap bound instead when that is within budget."""
    messages, tools = request["messages"], request.get("tools")
    if info.template is not None:
        bound = len(render_template(info.template, info.base_url, messages, tools).encode("utf-8")) + _SPECIAL_SLACK
        if bound <= budget:
            return bound
    return await server.tokenizer.count_message_tokens(messages, tools)


async def fit_context(server: Server, info: ServerInfo, turns: list[ChatMessage], build: Build,
                      max_output_tokens: int | None, *, trim: bool) -> dict[str, Any]:
    """The request ``build`` makes for ``turns``, checked (and, with ``trim``, trimmed) to fit."""
    request = build(turns)
    limit = server.context_limit(info)
    if not limit:  # llamafiler without LLAMAFILE_CONTEXT_SIZE: only the server knows
        return request
    reply = max_output_tokens or 1
    budget = limit - reply
    size = await prompt_tokens(server, info, request, budget)
    if size <= budget:
        return request
    groups = droppable_turns(turns)
    if not trim or not groups:
        raise _overflow(server, info, size, reply, limit, trimmed=trim)
    # Fewest dropped groups that fit, by bisection: log2(turns) counts, not one per turn.
    low, high, best = 1, len(groups), None
    while low <= high:
        middle = (low + high) // 2
        candidate = build(without(turns, groups[:middle]))
        fitted = await prompt_tokens(server, info, candidate, budget)
        if fitted <= budget:
            high, best = middle - 1, (middle, candidate, fitted)
        else:
            low = middle + 1
    if best is None:
        raise _overflow(server, info, size, reply, limit, trimmed=True)
    count, request, fitted = best
    logger.warning("dropped the %d oldest turn(s) of the conversation to fit the context of %s: prompt %d -> "
                   "at most %d tokens, %d per slot (LLAMAFILE_TRIM_HISTORY)", sum(len(g) for g in groups[:count]),
                   server.url, size, fitted, limit)
    return request


def _overflow(server: Server, info: ServerInfo, size: int, reply: int, limit: int, *,
              trimmed: bool) -> ContextOverflowError:
    what = (f"the prompt ({size} tokens) plus room for the reply ({reply}) does not fit the context of "
            f"{server.url} ({info.dialect.value}: {limit} tokens per slot)")
    advice = ("even with every older turn dropped; shorten the system prompt or the last message"
              if trimmed else "shorten the conversation, lower max_output_tokens, set LLAMAFILE_TRIM_HISTORY=true "
              "to drop the oldest turns automatically")
    return ContextOverflowError(f"{what}; nothing was sent. To fix: {advice}, or restart the server with a larger "
                                "-c / fewer slots (-np).", url=server.url, prompt_tokens=size, context_size=limit,
                                status_code=None)
