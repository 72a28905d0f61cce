"""A blocking facade for scripts that are not async (BabyAGI-style loops, notebooks).

``SyncLlamafileProvider`` runs the async ``LlamafileProvider`` on one event loop of its own,
kept for its whole life, so its connections are reused from call to call (a fresh
``asyncio.run`` per call would rebuild them and break the pooled async clients).
``complete()`` is the one-liner on a shared facade made on first use and closed at exit.

Called from inside a running event loop, it refuses with a clear error: blocking there would
stall every other task of that loop, and the async API is the right one.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Awaitable, Iterator, Sequence
from typing import Any, TypeVar

from llamafile_provider.errors import ConfigurationError
from llamafile_provider.messages import ChatResponse, MessageLike, Usage
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.request import FunctionLike
from llamafile_provider.routing import ModelInfo
from llamafile_provider.settings import LlamafileSettings
from llamafile_provider.tokenizer import Tokenizer

T = TypeVar("T")


class SyncLlamafileProvider:
    """``LlamafileProvider`` with blocking methods of the same names and arguments."""

    def __init__(self, settings: LlamafileSettings | None = None, **overrides: Any) -> None:
        self.provider = LlamafileProvider(settings, **overrides)
        self._loop = asyncio.new_event_loop()

    def _run(self, awaitable: Awaitable[T]) -> T:
        problem = self._refusal()
        if problem:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()  # never to be awaited: no "never awaited" warning
            raise ConfigurationError(problem)
        return self._loop.run_until_complete(awaitable)

    def _refusal(self) -> str | None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return "this SyncLlamafileProvider is closed; make a new one." if self._loop.is_closed() else None
        return ("SyncLlamafileProvider (and llamafile_provider.complete) block, and this code runs inside an "
                "event loop: use the async API instead, e.g. `async with LlamafileProvider() as llm: "
                "await llm.create_chat_completion(...)`.")

    # ---- the async provider's methods, blocking
    def create_chat_completion(self, model_prompt: Sequence[MessageLike] | MessageLike, model_name: str = "smart",
                               *args: Any, **kwargs: Any) -> ChatResponse[Any]:
        return self._run(self.provider.create_chat_completion(model_prompt, model_name, *args, **kwargs))

    def stream_chat_completion(self, model_prompt: Sequence[MessageLike] | MessageLike, model_name: str = "smart",
                               max_output_tokens: int | None = None, **kwargs: Any) -> Iterator[str]:
        """Yield the reply's text as it comes; leaving the loop early closes the HTTP stream."""
        stream = self.provider.stream_chat_completion(model_prompt, model_name, max_output_tokens, **kwargs)
        try:
            while True:
                try:
                    yield self._run(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():
                self._loop.run_until_complete(stream.aclose())

    def create_embedding(self, texts: Sequence[str] | str, model_name: str = "fast") -> list[list[float]]:
        return self._run(self.provider.create_embedding(texts, model_name))

    def get_available_models(self) -> list[ModelInfo]:
        return self._run(self.provider.get_available_models())

    # ---- already blocking on the provider
    def count_tokens(self, text: str, model_name: str = "smart") -> int:
        return self.provider.count_tokens(text, model_name)

    def count_message_tokens(self, messages: Sequence[MessageLike] | MessageLike, model_name: str = "smart",
                             functions: Sequence[FunctionLike] | None = None, **request: Any) -> int:
        """The prompt tokens of the request ``create_chat_completion`` would send with the same
        arguments (``tool_choice``, ``prefill_response``, ``response_schema``, ``max_output_tokens``)."""
        return self.provider.count_message_tokens(messages, model_name, functions, **request)

    def get_token_limit(self, model_name: str = "smart") -> int:
        return self.provider.get_token_limit(model_name)

    def get_tokenizer(self, model_name: str = "smart") -> Tokenizer:
        return self.provider.get_tokenizer(model_name)

    @property
    def usage(self) -> Usage:
        return self.provider.usage

    @property
    def usage_by_model(self) -> dict[str, Usage]:
        return self.provider.usage_by_model

    def complete(self, prompt: str | Sequence[MessageLike], model_name: str = "smart", **kwargs: Any) -> str:
        """The reply's text for a prompt (a string is one user message)."""
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return self.create_chat_completion(messages, model_name, **kwargs).message.content

    def close(self) -> None:
        """Close the connections and the loop; safe to call twice."""
        if not self._loop.is_closed():
            self._run(self.provider.aclose())
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            # Its executor threads (getaddrinfo and the like) end here, not after close() returns.
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
            self._loop.close()

    def __enter__(self) -> SyncLlamafileProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_shared: SyncLlamafileProvider | None = None
_shared_lock = threading.Lock()


def complete(prompt: str | Sequence[MessageLike], model_name: str = "smart", **kwargs: Any) -> str:
    """The reply's text, from a facade shared by every call (settings from env / ``.env``).

    Calls from several threads take turns: the facade's one loop runs one call at a time."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SyncLlamafileProvider()
            atexit.register(_shared.close)
        return _shared.complete(prompt, model_name, **kwargs)
