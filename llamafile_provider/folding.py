"""Fold any conversation into messages the model's chat template accepts (pure: no I/O).

Why this exists: agents such as AutoGPT send conversations that many chat templates refuse.
They append feedback ("ERROR PARSING YOUR RESPONSE: ...") as a *system* message in the middle
of a conversation, put two turns of the same role next to each other, and send ``tool``
results to models whose template has no tool role. Measured on llama-server: the Mistral
template answers 400 to non-alternating roles, to any ``tool`` message and to a
mid-conversation system message; two trailing assistant messages are a 400 on every
template; llamafiler rejects empty content. Folding on every request removes all of these.

Every decision is driven by ``TemplateCaps`` (what the server reports about the template),
never by model names, so an unknown model behaves like a known one with the same template.

The result:

* an optional leading ``system`` message (only when the template has a system role),
* then turns that start with ``user`` and alternate user/assistant. In native tool mode a run
  of ``tool`` messages answering the previous assistant's calls takes the user's place
  (it may be followed by a user turn, which templates render as a separate user block),
* at most one trailing assistant turn, never with native tool calls (llama-server prefills a
  trailing assistant message and refuses one that carries calls),
* no empty user content, and the text of every non-empty input message kept verbatim.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from llamafile_provider.errors import ConfigurationError
from llamafile_provider.messages import ChatMessage, MessageLike, Role, ToolCall, as_message
from llamafile_provider.templates import TemplateCaps

#: The user turn put before a conversation that starts with the assistant: templates such as
#: Mistral's raise unless the first turn is the user's.
CONTINUE_PROMPT = "Continue."

#: Merged turns are joined with a blank line so the model still sees them as separate parts.
SEPARATOR = "\n\n"

Turn = dict[str, Any]

__all__ = ["CONTINUE_PROMPT", "SEPARATOR", "fold_messages"]


def fold_messages(messages: Sequence[MessageLike], caps: TemplateCaps, *, native_tools: bool) -> list[Turn]:
    """OpenAI-style message dicts for ``messages`` that the template described by ``caps`` accepts.

    ``native_tools``: the caller sends ``tools`` with this request and wants tool calls in the
    template's own format. It only takes effect when ``caps.supports_tool_calls``; otherwise
    tool calls and results are written out as text, because a template without tool support
    either raises on them or silently drops them (the model would never see its results).

    Raises ``ConfigurationError`` when no message has any content.
    """
    native = native_tools and caps.supports_tool_calls
    parsed = [as_message(m) for m in messages]
    system, rest = _leading_system(parsed)
    turns: list[Turn] = []
    call_names: dict[str, str] = {}
    for message in rest:
        if message.role is Role.ASSISTANT:
            call_names.update({call.id: call.function.name for call in message.tool_calls})
            _add_assistant(turns, message, native)
        elif message.role is Role.TOOL:
            if native and _answers_open_call(turns, message.tool_call_id):
                turns.append({"role": "tool", "tool_call_id": message.tool_call_id,
                              "content": message.content})
            else:
                _add_user(turns, _tool_result_text(message, call_names))
        elif message.content:
            # user turns, and system messages after the first turn: many templates (Mistral,
            # Gemma, ...) raise on a system message that is not first, and the model reads
            # agent feedback just as well in the user's voice.
            _add_user(turns, message.content)

    if not turns:
        if not system:
            raise ConfigurationError(
                f"cannot send an empty conversation: none of the {len(parsed)} message(s) has any "
                "content. Pass at least one message with text, e.g. ChatMessage.user('Hello')."
            )
        # A system-only prompt (some agent prompt strategies send one): on a template without
        # a system role llama-server renders it as an EMPTY prompt (measured on Mistral v0.2);
        # as a user turn it reaches the model everywhere.
        return [{"role": "user", "content": system}]
    _calls_as_text_if_last(turns)
    if turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": CONTINUE_PROMPT})
    if not system:
        return turns
    if caps.supports_system_role:
        return [{"role": "system", "content": system}, *turns]
    turns[0]["content"] = system + SEPARATOR + turns[0]["content"]
    return turns


def _leading_system(messages: list[ChatMessage]) -> tuple[str, list[ChatMessage]]:
    """The text of the system messages before the first other message, and the rest.

    Several leading system messages are one instruction block split up; joining them keeps
    the result a single system message, which is all most templates allow.
    """
    index = 0
    while index < len(messages) and messages[index].role is Role.SYSTEM:
        index += 1
    parts = [m.content for m in messages[:index] if m.content]
    return SEPARATOR.join(parts), messages[index:]


def _join(first: str, second: str) -> str:
    return SEPARATOR.join(part for part in (first, second) if part)


def _add_user(turns: list[Turn], text: str) -> None:
    """Append user text, merging it into a directly preceding user turn (strict alternation)."""
    if turns and turns[-1]["role"] == "user":
        turns[-1]["content"] = _join(turns[-1]["content"], text)
    else:
        turns.append({"role": "user", "content": text})


def _add_assistant(turns: list[Turn], message: ChatMessage, native: bool) -> None:
    """Append an assistant turn, merging it into a directly preceding assistant turn.

    Merging matters most at the end: llama-server treats a trailing assistant message as a
    prefill and refuses two of them. An assistant turn with neither text nor calls is
    dropped, since it says nothing and empty content is refused by llamafiler.
    """
    if native:
        content = message.content
        calls = [_native_call(call) for call in message.tool_calls]
    else:
        content = _join(message.content, "\n".join(
            _call_text(call.function.name, call.function.arguments) for call in message.tool_calls))
        calls = []
    if not content and not calls:
        return
    if turns and turns[-1]["role"] == "assistant":
        last = turns[-1]
        last["content"] = _join(last["content"], content)
        if calls:
            last.setdefault("tool_calls", []).extend(calls)
        return
    turn: Turn = {"role": "assistant", "content": content}
    if calls:
        turn["tool_calls"] = calls
    turns.append(turn)


def _native_call(call: ToolCall) -> Turn:
    """The OpenAI wire form of a call: ``arguments`` is a JSON *string*, as clients send it."""
    return {"id": call.id, "type": "function",
            "function": {"name": call.function.name,
                         "arguments": json.dumps(call.function.arguments, ensure_ascii=False, default=str)}}


def _call_text(name: str, arguments: Any) -> str:
    """A call as one line of JSON, the shape models are prompted to emit in text mode."""
    return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False, default=str)


def _calls_as_text_if_last(turns: list[Turn]) -> None:
    """Write the calls of a *trailing* assistant turn as text.

    llama-server continues (prefills) a trailing assistant message and answers 400 "Cannot
    continue an assistant message that contains tool calls" when it has any; as text the
    calls still reach the model.
    """
    last = turns[-1]
    if last["role"] != "assistant" or not last.get("tool_calls"):
        return
    calls = last.pop("tool_calls")
    last["content"] = _join(last["content"], "\n".join(
        _call_text(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls))


def _answers_open_call(turns: list[Turn], call_id: str | None) -> bool:
    """Whether a tool result can stay native: it must answer a not-yet-answered call of the
    assistant turn right before the current run of tool messages.

    Templates pair results with calls by position; an orphan result (after a user turn, or
    for an unknown id) is shown as user text instead so its content still reaches the model.
    """
    answered: set[str] = set()
    for turn in reversed(turns):
        if turn["role"] == "tool":
            answered.add(turn["tool_call_id"])
            continue
        if turn["role"] == "assistant":
            ids = {call["id"] for call in turn.get("tool_calls", ())}
            return call_id is not None and call_id in ids and call_id not in answered
        return False
    return False


def _tool_result_text(message: ChatMessage, call_names: dict[str, str]) -> str:
    """A tool result as user text, naming the function so the model can tell results apart."""
    call_id = message.tool_call_id
    name = call_names.get(call_id) if call_id is not None else None
    if name is not None:
        header = f"Result of {name} (call {call_id}):"
    elif call_id:
        header = f"Result of call {call_id}:"
    else:
        header = "Result of a tool call:"
    return f"{header}\n{message.content or '(no output)'}"
