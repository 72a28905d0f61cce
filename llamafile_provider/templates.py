"""Render a model's Jinja chat template exactly as llama-server does (pure: no I/O).

Why render locally: counting a conversation's tokens then costs one ``/tokenize`` request
instead of one per message, and the count equals the server's ``prompt_tokens``.

The server-side details reproduced here:

* the globals llama-server gives templates (``raise_exception``, ``strftime_now``,
  ``bos_token``, ``eos_token``; ``tools`` and ``add_generation_prompt`` only when set);
* ``tojson`` as Python's ``json.dumps`` with ``", "`` / ``": "`` separators and no HTML
  escaping (Jinja2's built-in filter escapes ``<`` ``>`` ``&`` ``'``, the server does not);
* a leading ``system`` message is merged into the next message with a newline when the
  template has no system role (the server's own workaround);
* a leading BOS text (trailing EOS text) is stripped when the tokenizer adds it itself;
* a trailing assistant message is continued (prefill), not closed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jinja2
import jinja2.sandbox

from llamafile_provider.errors import TemplateError


@dataclass(frozen=True)
class TemplateCaps:
    """What a chat template can express, as llama-server reports in ``chat_template_caps``."""

    supports_system_role: bool = True
    supports_tools: bool = False
    supports_tool_calls: bool = False
    supports_parallel_tool_calls: bool = False
    supports_string_content: bool = True
    requires_typed_content: bool = False
    supports_object_arguments: bool = False

    @classmethod
    def from_props(cls, caps: Mapping[str, Any] | None) -> TemplateCaps:
        caps = caps or {}
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: bool(value) for key, value in caps.items() if key in known})


class _RaisedByTemplate(Exception):
    """Carries a template's ``raise_exception`` message out of the renderer."""


def _raise_exception(message: str) -> None:
    raise _RaisedByTemplate(message)


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False,
            separators: Sequence[str] | None = None, sort_keys: bool = False) -> str:
    if separators is None:
        separators = (", ", ": ") if indent is None else (",", ": ")
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii,
                      separators=(separators[0], separators[1]), sort_keys=sort_keys)


def _environment() -> jinja2.Environment:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"],
        undefined=jinja2.Undefined,
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


_ENV = _environment()


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template plus the tokenizer facts that decide how its output is tokenized."""

    source: str
    bos_token: str = ""
    eos_token: str = ""
    add_bos: bool = False
    add_eos: bool = False
    caps: TemplateCaps = field(default_factory=TemplateCaps)

    def render(self, messages: Sequence[Mapping[str, Any]], *, tools: Sequence[Mapping[str, Any]] | None = None,
               add_generation_prompt: bool = True) -> str:
        """The prompt text the server would tokenize for these OpenAI-style messages.

        A conversation that ends with an assistant turn is a prefill the model continues:
        like the server, render the turns before it, add the generation prompt, then the
        assistant's text with no end-of-turn. Raises ``TemplateError`` with the template's
        own message when it rejects the messages.
        """
        prepared = self._prepare(messages)
        last = prepared[-1] if prepared else {}
        if add_generation_prompt and last.get("role") == "assistant" and not last.get("tool_calls"):
            head = self._render(prepared[:-1], tools, False)
            with_prompt = self._render(prepared[:-1], tools, True)
            common = len(os.path.commonprefix([head, with_prompt]))
            return head + with_prompt[common:] + str(last.get("content") or "")
        return self._render(prepared, tools, add_generation_prompt)

    def _render(self, messages: list[dict[str, Any]], tools: Sequence[Mapping[str, Any]] | None,
                add_generation_prompt: bool) -> str:
        context: dict[str, Any] = {"messages": messages, "bos_token": self.bos_token,
                                   "eos_token": self.eos_token}
        if tools:
            context["tools"] = list(tools)
        if add_generation_prompt:
            context["add_generation_prompt"] = True
        try:
            text = _compile(self.source).render(**context)
        except _RaisedByTemplate as exc:
            raise TemplateError(f"the chat template rejected the messages: {exc}",
                                server_message=str(exc)) from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"the chat template failed to render: {exc}", server_message=str(exc)) from exc
        if self.add_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token):]
        if self.add_eos and self.eos_token and text.endswith(self.eos_token):
            text = text[: -len(self.eos_token)]
        return text

    def _prepare(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        prepared = [dict(m) for m in messages]
        for message in prepared:
            if message.get("role") == "developer":
                message["role"] = "system"
            if self.caps.supports_tool_calls and "tool_calls" in message and "content" not in message:
                message["content"] = ""
            if self.caps.supports_object_arguments and message.get("tool_calls"):
                message["tool_calls"] = [_with_object_arguments(call) for call in message["tool_calls"]]
        if not self.caps.supports_system_role and prepared and prepared[0].get("role") == "system":
            system = prepared.pop(0)
            if prepared:
                prepared[0]["content"] = f"{system.get('content', '')}\n{prepared[0].get('content', '')}"
        return prepared


def _with_object_arguments(call: Mapping[str, Any]) -> dict[str, Any]:
    call = dict(call)
    function = dict(call.get("function") or {})
    if isinstance(function.get("arguments"), str):
        try:
            function["arguments"] = json.loads(function["arguments"])
        except json.JSONDecodeError as exc:
            raise TemplateError(f"tool call arguments are not JSON: {exc}") from exc
    call["function"] = function
    return call


_COMPILED: dict[str, jinja2.Template] = {}


def _compile(source: str) -> jinja2.Template:
    template = _COMPILED.get(source)
    if template is None:
        try:
            template = _ENV.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"the chat template does not parse: {exc}", server_message=str(exc)) from exc
        _COMPILED[source] = template
    return template
