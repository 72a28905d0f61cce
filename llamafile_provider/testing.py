"""A scripted stand-in for ``LlamafileProvider`` in your own tests (no server, no I/O).

Agent tests need no model, and hand-rolled mocks drift from the real provider: ``ScriptedProvider``
has the surface an agent uses, returns queued replies in order and keeps what tests depend on
(tool calls validated, parser retries, ``response_schema``, ``prefill_response``, usage)::

    provider = ScriptedProvider([{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
                                 "It is sunny in Paris."])
    response = await provider.create_chat_completion(messages, functions=[weather_spec])  # the tool call

A reply is a ``str``, a ``ToolCall`` / ``FunctionCall`` or a list of them, a dict ``{"content": ...,
"tool_calls": [{"name": ..., "arguments": {...}}]}``, a ``ChatMessage``, or an exception instance,
raised instead of answering (``ServerUnreachableError``, ``InvalidToolCallError``... to test error
handling). A call that does not fit the request's functions / ``tool_choice`` raises
``ConfigurationError``: it is a bug in the test script, not model behaviour to simulate.

Tokens are estimated deterministically as words, ``len(text.split())``; a message counts its content
and each tool call's name and JSON arguments. Per attempt: prompt = messages + prefill, completion = reply.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from llamafile_provider.errors import CompletionError, ConfigurationError
from llamafile_provider.messages import (ChatMessage, ChatResponse, FunctionCall, FunctionSpec, MessageLike, Role,
                                         ToolCall, Usage, as_messages)
from llamafile_provider.request import FunctionLike, as_function_specs, schema_of
from llamafile_provider.routing import GROUPS, ModelInfo, alias_of
from llamafile_provider.tools import (ChoiceMode, ToolChoice, ToolChoiceLike, new_call_id, normalize_tool_choice,
                                      validate_call)

T = TypeVar("T")
Reply = (str | ToolCall | FunctionCall | Sequence[ToolCall | FunctionCall] | Mapping[str, Any]
         | ChatMessage | BaseException)


@dataclass
class RecordedCall:
    """What the agent sent in one ``create_chat_completion`` / ``stream_chat_completion`` call."""

    messages: list[ChatMessage]
    model_name: str
    functions: list[FunctionSpec] = field(default_factory=list)
    tool_choice: ToolChoiceLike = "auto"
    max_output_tokens: int | None = None
    prefill_response: str = ""
    response_schema: Any = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    session: str | None = None  # the conversation key the real provider pins to a server slot
    attempts: int = 0  # replies consumed: 1, plus one per parser retry


def count_tokens(text: str) -> int:
    """The double's token estimate: whitespace-separated words (stable across runs and platforms)."""
    return len(text.split())


def _message_tokens(message: ChatMessage) -> int:
    calls = " ".join(f"{c.function.name} {json.dumps(c.function.arguments)}" for c in message.tool_calls)
    return count_tokens(message.content) + count_tokens(calls)


def _as_call(item: Any) -> ToolCall:
    if isinstance(item, ToolCall):
        return item
    if isinstance(item, FunctionCall):
        return ToolCall(id=new_call_id(), function=item)
    if isinstance(item, Mapping) and isinstance(item.get("name"), str):
        try:
            return ToolCall(id=item.get("id") or new_call_id(),
                            function=FunctionCall(name=item["name"], arguments=item.get("arguments") or {}))
        except ValueError as exc:  # pydantic's ValidationError: arguments that are not an object
            raise ConfigurationError(f"scripted call {item['name']!r}: arguments must be an object ({exc})") from None
    raise ConfigurationError(f"not a scripted tool call: {item!r}; use a ToolCall, a FunctionCall or "
                             '{"name": ..., "arguments": {...}}.')


def as_reply(reply: Reply) -> ChatMessage | BaseException:
    """A scripted reply as the assistant message it stands for (or the exception to raise)."""
    if isinstance(reply, BaseException):
        return reply
    if isinstance(reply, str):
        return ChatMessage.assistant(reply)
    if isinstance(reply, ChatMessage):
        if reply.role is not Role.ASSISTANT:
            raise ConfigurationError(f"a scripted reply must be an assistant message, not {reply.role.value}.")
        return reply
    if isinstance(reply, (ToolCall, FunctionCall)):
        return ChatMessage.assistant("", [_as_call(reply)])
    if isinstance(reply, Mapping):
        if extra := set(reply) - {"content", "tool_calls"}:
            raise ConfigurationError(f"a scripted reply dict has 'content' and 'tool_calls' only, not {sorted(extra)}.")
        return ChatMessage.assistant(str(reply.get("content") or ""), map(_as_call, reply.get("tool_calls") or []))
    if isinstance(reply, Sequence):
        return ChatMessage.assistant("", map(_as_call, reply))
    raise ConfigurationError(f"cannot script a reply of type {type(reply).__name__}; use str, ToolCall, "
                             "FunctionCall, a list of them, a dict, a ChatMessage or an exception instance.")


class ScriptedProvider:
    """Answers like ``LlamafileProvider`` from a queue of scripted replies; records every call."""

    def __init__(self, replies: Iterable[Reply] = (), *, fix_failed_parse_tries: int = 3, token_limit: int = 8192):
        self._replies: deque[ChatMessage | BaseException] = deque()
        self.fix_failed_parse_tries = fix_failed_parse_tries
        self.token_limit = token_limit
        self.calls: list[RecordedCall] = []
        self.usage = Usage()
        self.usage_by_model: dict[str, Usage] = {}
        self.closed = False
        self.queue(*replies)

    def queue(self, *replies: Reply) -> ScriptedProvider:
        """Append replies (checked now, so a typo fails where it is written); returns self to chain."""
        self._replies.extend(as_reply(r) for r in replies)
        return self

    @property
    def pending(self) -> int:
        """Replies not consumed yet: assert ``== 0`` to check that the agent used the whole script."""
        return len(self._replies)

    def _next(self) -> ChatMessage:
        if not self._replies:
            raise ConfigurationError(f"no scripted reply left (call {len(self.calls)}); queue more with .queue(...)")
        reply = self._replies.popleft()
        if isinstance(reply, BaseException):
            raise reply
        return reply.model_copy(deep=True)  # callers may mutate what they get

    def _alias(self, model_name: str) -> str:
        """Accept what the real router accepts for smart/fast, plus the names listed by get_available_models."""
        alias = alias_of(re.sub(r"^scripted-", "", model_name.strip().lower()))
        if alias is not None:
            return alias
        raise ConfigurationError(f"unknown model {model_name!r}; use one of: fast, smart")

    def _count(self, alias: str, prompt: int, completion: int) -> Usage:
        usage = Usage(prompt_tokens=prompt, completion_tokens=completion, requests=1)
        self.usage.add(usage)
        self.usage_by_model.setdefault(alias, Usage()).add(usage)
        return usage

    async def create_chat_completion(
        self, model_prompt: Sequence[MessageLike] | MessageLike, model_name: str = "smart",
        completion_parser: Callable[[ChatMessage], T] | None = None, functions: Sequence[FunctionLike] | None = None,
        max_output_tokens: int | None = None, prefill_response: str = "", *, tool_choice: ToolChoiceLike = "auto",
        response_schema: Any = None, session: str | None = None, **kwargs: Any,
    ) -> ChatResponse[T]:
        """The next reply as one assistant turn, checked and parsed as the real provider does; a parser
        or ``response_schema`` failure consumes the next reply as the retry (``fix_failed_parse_tries``)."""
        messages, specs = as_messages(model_prompt), as_function_specs(functions)
        choice = normalize_tool_choice(tool_choice, specs) if specs else None
        schema, alias = schema_of(response_schema), self._alias(model_name)
        record = RecordedCall(messages, model_name, specs, tool_choice, max_output_tokens, prefill_response,
                              response_schema, dict(kwargs), session=session)
        self.calls.append(record)
        prompt_tokens = sum(map(_message_tokens, messages)) + count_tokens(prefill_response)
        total, last_exc = Usage(), None
        for _ in range(self.fix_failed_parse_tries + 1):
            message = self._next()
            record.attempts += 1
            self._check_calls(message, specs, choice)
            total.add(self._count(alias, prompt_tokens, _message_tokens(message)))
            if prefill_response and not message.tool_calls:
                message.content = prefill_response + message.content
            try:
                if completion_parser is not None:
                    parsed = completion_parser(message)
                else:
                    parsed = schema.parse(message.content) if schema else None
            except Exception as exc:  # noqa: BLE001 - as in the real provider, any parser error is retried
                last_exc = exc
                continue
            uses_tools = choice is not None and choice.mode is not ChoiceMode.NONE
            return ChatResponse[T](message=message, parsed_result=parsed, usage=total, model=f"scripted-{alias}",
                                   finish_reason="tool_calls" if message.tool_calls else "stop",
                                   server_url=f"scripted://{alias}", tool_mode="native" if uses_tools else None)
        raise CompletionError(f"the scripted reply could not be parsed in {record.attempts} attempts: "
                              f"{type(last_exc).__name__}: {last_exc}") from last_exc

    @staticmethod
    def _check_calls(message: ChatMessage, specs: list[FunctionSpec], choice: ToolChoice | None) -> None:
        """Refuse scripted replies the real provider would never return for this request."""
        calls = [c.function for c in message.tool_calls]
        if calls and (choice is None or choice.mode is ChoiceMode.NONE):
            problems = ["the request allows no tool call (no functions, or tool_choice 'none')"]
        else:
            allowed = [s for s in specs if choice and choice.name in (None, s.name)]
            problems = [p for call in calls for p in validate_call(call, allowed)]
            if choice and choice.must_call and not calls:
                problems.append(f"tool_choice {choice.mode.value!r} requires a tool call, but the reply has none")
        if problems:
            raise ConfigurationError("invalid scripted reply (a bug in the test script): " + "; ".join(problems))

    async def stream_chat_completion(self, model_prompt: Sequence[MessageLike] | MessageLike, model_name: str = "smart",
                                     max_output_tokens: int | None = None, **kwargs: Any) -> AsyncIterator[str]:
        """The next scripted text reply, word by word (with its leading whitespace), like a stream."""
        messages, alias = as_messages(model_prompt), self._alias(model_name)
        self.calls.append(RecordedCall(messages, model_name, max_output_tokens=max_output_tokens,
                                       kwargs=dict(kwargs), stream=True, attempts=1))
        message = self._next()
        if message.tool_calls:
            raise ConfigurationError("invalid scripted reply (a bug in the test script): "
                                     "stream_chat_completion yields text, but the reply has tool calls")
        for piece in re.findall(r"\s*\S+|\s+$", message.content):
            yield piece
        self._count(alias, sum(map(_message_tokens, messages)), _message_tokens(message))

    def count_tokens(self, text: str, model_name: str = "smart") -> int:
        self._alias(model_name)  # unknown models raise, as with the real provider
        return count_tokens(text)

    def count_message_tokens(self, messages: Sequence[MessageLike] | MessageLike, model_name: str = "smart") -> int:
        self._alias(model_name)
        return sum(map(_message_tokens, as_messages(messages)))

    async def acount_message_tokens(self, messages: Sequence[MessageLike] | MessageLike,
                                    model_name: str = "smart") -> int:
        return self.count_message_tokens(messages, model_name)

    def get_token_limit(self, model_name: str = "smart") -> int:
        self._alias(model_name)
        return self.token_limit

    async def get_available_models(self) -> list[ModelInfo]:
        return [ModelInfo(name=f"scripted-{alias}", alias=alias, url=f"scripted://{alias}", dialect="scripted",
                          context_size=self.token_limit, slots=1, tool_mode="native", has_function_call_api=True)
                for alias in GROUPS]

    get_available_chat_models = get_available_models

    async def aclose(self) -> None:  # nothing to release; recorded so tests can check cleanup
        self.closed = True

    async def __aenter__(self) -> ScriptedProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["RecordedCall", "Reply", "ScriptedProvider", "as_reply", "count_tokens"]
