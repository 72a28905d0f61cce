"""Server-backed tokenizers with an LRU cache and exact prompt-token counts.

``Tokenizer`` (sync, the shape AutoGPT's ``ModelTokenizer`` expects) and ``AsyncTokenizer``
share one counting rule:

* llama-server (template known from ``/props``): render the conversation locally exactly as
  the server does, then tokenize the whole prompt in ONE ``/tokenize`` request with the
  tokenizer's own special tokens. The result equals the server's ``prompt_tokens``.
* classic llamafile: it applies one of its built-in layouts and does not say which; one
  probe on first use finds out (``classic_probe``), then the conversation is rendered with
  that layout (``chat_formats``) and counted the same way, BOS included where it adds one.
* llamafiler (and a classic server whose layout no known one matches) does not expose its
  template: the conversation is rendered as ChatML and counted the same way. That is an
  estimate (usually within a few tokens per message) and is logged as one, once per tokenizer.

Counting the same text twice costs no second request: results are kept in an LRU cache.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from llamafile_provider import chat_formats
from llamafile_provider.dialects import Dialect, ServerInfo
from llamafile_provider.errors import TemplateError, UnsupportedFeatureError
from llamafile_provider.server import AsyncServerClient, ServerClient
from llamafile_provider.templates import ChatTemplate

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Messages = Sequence[Mapping[str, Any]]
Tools = Sequence[Mapping[str, Any]] | None

# Used when the server does not say which template it applies: ChatML is the most common
# layout among llamafiles, and its per-message overhead (~4 tokens) is typical of the rest.
ESTIMATE_TEMPLATE = ChatTemplate(
    source=(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] or '' }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
)


class LRUCache(Generic[K, V]):
    """A small thread-safe least-recently-used map."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def render_template(template: ChatTemplate, base_url: str, messages: Messages, tools: Tools) -> str:
    """The server's own template applied here, before sending; a refusal names whose template it
    is and what to do, as the server's 400 would."""
    try:
        return template.render(messages, tools=tools)
    except TemplateError as exc:
        raise TemplateError(
            f"{exc} (the chat template of {base_url}). Change the messages, or serve the model "
            "with another --chat-template-file.", url=base_url, server_message=exc.server_message) from exc


class _CountingRules:
    """How a conversation becomes one text to tokenize, per server; shared by both flavours."""

    def __init__(self, cache_size: int) -> None:
        self.cache: LRUCache[tuple[str, bool], tuple[int, ...] | tuple[str, ...]] = LRUCache(cache_size)
        self._warned = False

    def prompt(self, info: ServerInfo, messages: Messages, tools: Tools) -> tuple[str, bool]:
        """(prompt text, whether the tokenizer should add its special tokens)."""
        if info.template is not None:
            return render_template(info.template, info.base_url, messages, tools), True
        if info.chat_format:  # classic, layout probed; it ignores tools
            return chat_formats.render(info.chat_format, messages), bool(info.add_bos)
        if not self._warned:
            logger.warning(
                "%s (%s) does not expose its chat template: prompt token counts are estimates "
                "(ChatML layout), not exact.", info.base_url, info.dialect.value)
            self._warned = True
        # Classic /tokenize never adds BOS, but its prompts get one: count it (+1 below).
        return ESTIMATE_TEMPLATE.render(messages, tools=tools), True

    @staticmethod
    def adjust(info: ServerInfo, count: int, add_special: bool) -> int:
        return count + 1 if add_special and info.dialect is Dialect.CLASSIC else count

    @staticmethod
    def ids(info: ServerInfo, tokens: tuple[int, ...] | tuple[str, ...]) -> list[int]:
        if info.dialect is Dialect.LLAMAFILER:
            raise UnsupportedFeatureError(
                f"{info.base_url} is llamafiler: its /tokenize returns token pieces, not ids, so "
                "encode() cannot give ids there. count_tokens() works.", url=info.base_url)
        return list(tokens)  # type: ignore[arg-type]


class Tokenizer:
    """Blocking tokenizer for one server: ``encode``/``decode`` plus exact counting."""

    def __init__(self, client: ServerClient, *, cache_size: int = 4096) -> None:
        self.client = client
        self._rules = _CountingRules(cache_size)

    def _tokens(self, text: str, add_special: bool) -> tuple[int, ...] | tuple[str, ...]:
        key = (text, add_special)
        cached = self._rules.cache.get(key)
        if cached is None:
            cached = tuple(self.client.tokenize(text, add_special=add_special))  # type: ignore[assignment]
            self._rules.cache.put(key, cached)  # type: ignore[arg-type]
        return cached  # type: ignore[return-value]

    def encode(self, text: str) -> list[int]:
        return self._rules.ids(self.client.info(), self._tokens(text, False))

    def decode(self, tokens: list[int]) -> str:
        return self.client.detokenize(tokens)

    def count_tokens(self, text: str) -> int:
        return len(self._tokens(text, False))

    def count_message_tokens(self, messages: Messages, tools: Tools = None) -> int:
        """Tokens the server will count as ``prompt_tokens`` for these (already folded) messages."""
        info = self.client.info()
        if info.dialect is Dialect.CLASSIC and info.chat_format is None:
            info = self.client.detect_chat_format()
        text, add_special = self._rules.prompt(info, messages, tools)
        return self._rules.adjust(info, len(self._tokens(text, add_special)), add_special)

    def count_prompt_tokens(self, prompt: str) -> int:
        """Tokens of a prompt sent as raw text (a prefill continued through classic ``/completion``)."""
        info = self.client.info()
        add_special = info.template is not None or bool(info.add_bos)
        return self._rules.adjust(info, len(self._tokens(prompt, add_special)), add_special)


class AsyncTokenizer:
    """Non-blocking twin of ``Tokenizer`` for the async provider."""

    def __init__(self, client: AsyncServerClient, *, cache_size: int = 4096) -> None:
        self.client = client
        self._rules = _CountingRules(cache_size)

    async def _tokens(self, text: str, add_special: bool) -> tuple[int, ...] | tuple[str, ...]:
        key = (text, add_special)
        cached = self._rules.cache.get(key)
        if cached is None:
            cached = tuple(await self.client.tokenize(text, add_special=add_special))  # type: ignore[assignment]
            self._rules.cache.put(key, cached)  # type: ignore[arg-type]
        return cached  # type: ignore[return-value]

    async def encode(self, text: str) -> list[int]:
        return self._rules.ids(await self.client.info(), await self._tokens(text, False))

    async def decode(self, tokens: list[int]) -> str:
        return await self.client.detokenize(tokens)

    async def count_tokens(self, text: str) -> int:
        return len(await self._tokens(text, False))

    async def count_message_tokens(self, messages: Messages, tools: Tools = None) -> int:
        info = await self.client.info()
        if info.dialect is Dialect.CLASSIC and info.chat_format is None:
            info = await self.client.detect_chat_format()
        text, add_special = self._rules.prompt(info, messages, tools)
        return self._rules.adjust(info, len(await self._tokens(text, add_special)), add_special)

    async def count_prompt_tokens(self, prompt: str) -> int:
        info = await self.client.info()
        add_special = info.template is not None or bool(info.add_bos)
        return self._rules.adjust(info, len(await self._tokens(prompt, add_special)), add_special)
