"""Message and result types shared by every layer (pydantic models, no I/O).

They mirror AutoGPT classic's provider schema closely enough that its adapter only copies
fields, while staying usable without AutoGPT: plain ``{"role", "content"}`` dicts are
accepted wherever a ``ChatMessage`` is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from llamafile_provider.errors import ConfigurationError

T = TypeVar("T")


class Role(str, Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class FunctionCall(BaseModel):
    """A call the model asked for; ``arguments`` are already parsed from JSON."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One turn of a conversation."""

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None

    @classmethod
    def system(cls, content: str) -> ChatMessage:
        return cls(role=Role.SYSTEM, content=content)

    @classmethod
    def user(cls, content: str) -> ChatMessage:
        return cls(role=Role.USER, content=content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: Iterable[ToolCall] = ()) -> ChatMessage:
        return cls(role=Role.ASSISTANT, content=content, tool_calls=list(tool_calls))

    @classmethod
    def tool_result(cls, content: str, tool_call_id: str) -> ChatMessage:
        return cls(role=Role.TOOL, content=content, tool_call_id=tool_call_id)

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI wire form (arguments serialised back to a JSON string)."""
        message: dict[str, Any] = {"role": self.role.value, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": call.id, "type": "function",
                 "function": {"name": call.function.name, "arguments": json.dumps(call.function.arguments)}}
                for call in self.tool_calls
            ]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


MessageLike = ChatMessage | Mapping[str, Any]


def as_message(message: MessageLike) -> ChatMessage:
    """Accept a ``ChatMessage`` or an OpenAI-style dict; refuse anything else clearly."""
    if isinstance(message, ChatMessage):
        return message
    try:
        data = dict(message)
        if data.get("tool_calls"):  # copied: the caller's dicts are never rewritten
            data["tool_calls"] = [dict(call) for call in data["tool_calls"]]
        for call in data.get("tool_calls") or []:
            arguments = call.get("function", {}).get("arguments")
            if isinstance(arguments, str):
                call["function"] = {**call["function"], "arguments": json.loads(arguments or "{}")}
        if data.get("content") is None:
            data["content"] = ""
        return ChatMessage.model_validate(data)
    except (ValidationError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigurationError(
            f"not a chat message: {message!r}. Pass ChatMessage objects or dicts like "
            '{"role": "user", "content": "..."} (roles: system, user, assistant, tool).'
        ) from exc


def as_messages(messages: Iterable[MessageLike] | MessageLike) -> list[ChatMessage]:
    if isinstance(messages, (ChatMessage, Mapping)):
        messages = [messages]
    return [as_message(m) for m in messages]


class FunctionSpec(BaseModel):
    """A function the model may call; ``parameters`` is a JSON schema of an object."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


class Usage(BaseModel):
    """Tokens used by one call, or accumulated over many.

    ``cached_prompt_tokens`` / ``evaluated_prompt_tokens``: how much of the prompt the server
    took from its prompt cache and how much it computed, only where the server says so
    (llama-server's ``timings``, ``prompt_tokens_details``, classic ``/completion``'s timings).
    None means "not reported" (classic chat replies and llamafiler report nothing), never zero;
    a total adds the calls that reported and stays None while none has.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    cached_prompt_tokens: int | None = None
    evaluated_prompt_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.requests += other.requests
        if other.cached_prompt_tokens is not None:
            self.cached_prompt_tokens = (self.cached_prompt_tokens or 0) + other.cached_prompt_tokens
        if other.evaluated_prompt_tokens is not None:
            self.evaluated_prompt_tokens = (self.evaluated_prompt_tokens or 0) + other.evaluated_prompt_tokens


class ChatResponse(BaseModel, Generic[T]):
    """What one ``create_chat_completion`` call returns."""

    message: ChatMessage
    parsed_result: T
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    server_url: str = ""
    tool_mode: str | None = None  # "native", "constrained" or "compat" when functions were given

    model_config = {"arbitrary_types_allowed": True}
