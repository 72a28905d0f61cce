"""One server URL and its connection set: the edge's client, the openai SDK on the same HTTP
client, the tokenizers, and what was learned about it (tool mode, slots).

Every request to one server goes through here, under its one ``RetryPolicy``; the router
(``routing.py``) decides which ``Server`` a call uses.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletion

from llamafile_provider.cascade import ToolMode, choose_tool_mode
from llamafile_provider.dialects import Dialect, ServerInfo
from llamafile_provider.errors import ConfigurationError, MalformedResponseError
from llamafile_provider.retry import RetryPolicy
from llamafile_provider.server import AsyncServerClient, Endpoint, ServerClient
from llamafile_provider.settings import LlamafileSettings
from llamafile_provider.tokenizer import AsyncTokenizer, Tokenizer


class Server:
    """One server URL and everything kept per server: one ``Endpoint`` (URL, headers, probed
    facts, retry policy), one ``httpx.AsyncClient`` shared by the edge and the openai SDK, and
    one blocking client made on first use by the sync methods, with the same policy."""

    def __init__(self, url: str, settings: LlamafileSettings, aliases: Sequence[str] = ()) -> None:
        self.settings = settings
        self.aliases = list(aliases)
        self.learned_mode: ToolMode | None = None
        key = settings.api_key_value()
        policy = RetryPolicy(retries=settings.max_retries, timeout=settings.timeout,
                             connect_timeout=settings.connect_timeout)
        self.endpoint = Endpoint(url, key, policy)
        self.url = self.endpoint.base_url  # credentials never in it
        # Redirects followed as the SDK's own client does (a proxy moving http to https).
        self.http = httpx.AsyncClient(timeout=policy.httpx_timeout(), follow_redirects=True)
        self.client = AsyncServerClient(endpoint=self.endpoint, http_client=self.http)
        self.tokenizer = AsyncTokenizer(self.client, cache_size=settings.tokenizer_cache_size)
        # The SDK rides on the same client; retries are the edge's (RetryPolicy), not the SDK's.
        self.sdk = openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key or "sk-no-key-required",
                                      http_client=self.http, max_retries=0, timeout=policy.httpx_timeout(),
                                      default_headers=self.endpoint.headers)
        self._sync: Tokenizer | None = None

    def __repr__(self) -> str:
        return f"Server({self.url!r}, aliases={self.aliases})"

    @property
    def slot_count(self) -> int | None:
        """Slots the server reported (placement spreads in-flight requests over them)."""
        info = self.client.cached_info
        return info.slots if info else None

    @property
    def alias(self) -> str:
        """The first group that lists this URL (log lines, model listings)."""
        return self.aliases[0]

    def tool_mode(self, info: ServerInfo, preference: str) -> ToolMode:
        """The mode learned from a refusal, else the best one the server supports."""
        return self.learned_mode or choose_tool_mode(info, preference)

    async def chat(self, dialect: Dialect, request: dict[str, Any]) -> Any:
        """One chat request through the SDK under the server's retry policy; errors come out typed,
        and a reply that is not a chat completion with choices is a ``MalformedResponseError``."""
        result = await self._sdk_call(dialect, lambda: self.sdk.chat.completions.create(**request))
        if not request.get("stream") and not (isinstance(result, ChatCompletion) and result.choices):
            raise MalformedResponseError(
                f"{self.url}/v1/chat/completions answered {type(result).__name__} without choices, not a chat "
                "completion: check that a llamafile or llama.cpp server listens at that URL.", url=self.url)
        return result

    async def embed(self, dialect: Dialect, model: str, texts: list[str]) -> list[list[float]]:
        """One embeddings request, under the same policy."""
        result = await self._sdk_call(dialect, lambda: self.sdk.embeddings.create(model=model, input=texts))
        return [list(item.embedding) for item in result.data]

    async def _sdk_call(self, dialect: Dialect, send: Callable[[], Awaitable[Any]]) -> Any:
        async def attempt() -> Any:
            try:
                return await send()
            except openai.APIError as exc:
                error = self.endpoint.sdk_error(exc, dialect)
                raise error from error.__cause__  # the transport cause decides retries
            except json.JSONDecodeError as exc:  # the SDK could not decode the body
                raise MalformedResponseError(
                    f"{self.url} answered with a body that is not JSON ({exc}): check that a llamafile or "
                    "llama.cpp server listens at that URL.", url=self.url) from exc
        return await self.endpoint.policy.acall(attempt)

    def sync_tokenizer(self) -> Tokenizer:
        if self._sync is None:
            client = ServerClient(endpoint=self.endpoint)  # same URL, headers, facts and policy
            self._sync = Tokenizer(client, cache_size=self.settings.tokenizer_cache_size)
        return self._sync

    def token_limit(self) -> int:
        info = self.sync_tokenizer().client.info()
        limit = self.context_limit(info)
        if limit:
            return limit
        raise ConfigurationError(
            f"{self.url} ({info.dialect.value}) does not report its context size; set LLAMAFILE_CONTEXT_SIZE "
            "to the -c value it was started with (divided by its number of slots).")

    def context_limit(self, info: ServerInfo) -> int | None:
        """Tokens per slot: what the server reports, else ``LLAMAFILE_CONTEXT_SIZE``."""
        return info.context_size or self.settings.context_size

    async def aclose(self) -> None:
        await self.sdk.close()  # closes self.http, which the edge client shares
        if self._sync is not None:
            self._sync.client.close()
