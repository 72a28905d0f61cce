"""The HTTP edge: the only module (with the openai SDK for chat) that talks to servers.

Each operation is written once, as a generator that yields ``httpx.Request`` objects and
receives the responses (a "sans-I/O" style); ``ServerClient`` drives it with a blocking
``httpx.Client`` (AutoGPT's tokenizer interface is sync) and ``AsyncServerClient`` with an
``httpx.AsyncClient`` (the provider is async). Both keep their connections alive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import Any, TypeVar

import httpx

from llamafile_provider import dialects
from llamafile_provider.dialects import Dialect, ServerInfo, normalize_base_url
from llamafile_provider.errors import (
    ServerError,
    ServerLoadingError,
    ServerTimeoutError,
    ServerUnreachableError,
    UnsupportedFeatureError,
)

T = TypeVar("T")
Operation = Generator[httpx.Request, httpx.Response, T]

START_HINT = (
    "Start it with ./llamafile-integration/serve.sh, or by hand: "
    "`./MODEL.llamafile --server --nobrowser --port PORT` (llamafile 0.8-0.9) / "
    "`llama-server -m MODEL.gguf --port PORT`."
)


class _Operations:
    """Request building and response handling shared by the sync and async clients."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = normalize_base_url(base_url)
        # Every dialect accepts (or ignores) a Bearer header, so it goes on every request.
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.info_cache: ServerInfo | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"{type(self).__name__}({self.base_url!r})"

    def request(self, method: str, path: str, json: Any = None) -> httpx.Request:
        return httpx.Request(method, self.base_url + path, json=json, headers=self._headers)

    def checked(self, response: httpx.Response, dialect: Dialect) -> httpx.Response:
        if response.status_code >= 400:
            raise dialects.error_from_response(response, self.base_url, dialect)
        return response

    def probe(self) -> Operation[ServerInfo]:
        """Detect the dialect and read model, context size, slots and template."""
        props = yield self.request("GET", "/props")
        dialect, body = dialects.detect(self.base_url, props)
        models = yield self.request("GET", "/v1/models")
        add_bos = add_eos = None
        if dialect is Dialect.LLAMA_SERVER:
            add_bos, add_eos = yield from self._special_flags(body)
        info = dialects.info_from_props(self.base_url, dialect, body, props.headers.get("server"),
                                        models, add_bos, add_eos)
        self.info_cache = info
        return info

    def _special_flags(self, props: dict[str, Any]) -> Operation[tuple[bool, bool]]:
        """Whether the tokenizer adds BOS / EOS itself (decides how templates are stripped)."""
        empty = yield self.request("POST", "/tokenize", dialects.tokenize_body(Dialect.LLAMA_SERVER, "", True))
        added = dialects.parse_tokens(self.checked(empty, Dialect.LLAMA_SERVER), self.base_url, Dialect.LLAMA_SERVER)
        if len(added) != 1:
            return len(added) >= 2, len(added) >= 2
        bos_text = props.get("bos_token") or ""
        if not bos_text:
            return False, True
        bos = yield self.request("POST", "/tokenize", dialects.tokenize_body(Dialect.LLAMA_SERVER, bos_text, False))
        bos_ids = dialects.parse_tokens(self.checked(bos, Dialect.LLAMA_SERVER), self.base_url, Dialect.LLAMA_SERVER)
        is_bos = bos_ids == added
        return is_bos, not is_bos

    def tokenize(self, info: ServerInfo, text: str, add_special: bool) -> Operation[list[int] | list[str]]:
        body = dialects.tokenize_body(info.dialect, text, add_special)
        response = yield self.request("POST", "/tokenize", body)
        return dialects.parse_tokens(self.checked(response, info.dialect), self.base_url, info.dialect)

    def detokenize(self, info: ServerInfo, tokens: list[int]) -> Operation[str]:
        if info.dialect is Dialect.LLAMAFILER:
            raise UnsupportedFeatureError(
                f"{self.base_url} is llamafiler, which has no /detokenize and exposes no token ids; "
                "decode() cannot work there (counting tokens does).", url=self.base_url)
        response = yield self.request("POST", "/detokenize", {"tokens": list(tokens)})
        return dialects.parse_detokenized(self.checked(response, info.dialect), self.base_url)

    def health(self) -> Operation[bool]:
        """True when ready; False while loading. Llamafiler has no /health: ask /v1/models."""
        response = yield self.request("GET", "/health")
        if response.status_code == 404:
            response = yield self.request("GET", "/v1/models")
        if response.status_code == 503:
            return False
        self.checked(response, Dialect.LLAMA_SERVER)
        return True

    def transport_error(self, exc: httpx.TransportError) -> ServerError:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return ServerTimeoutError(
                f"{self.base_url} did not answer in time ({type(exc).__name__}). The model may be "
                "busy on a long prompt: raise the timeout or retry.", url=self.base_url)
        return ServerUnreachableError(
            f"nothing answers at {self.base_url} ({type(exc).__name__}: {exc}). {START_HINT}", url=self.base_url)

    def not_ready(self, timeout: float, loading: bool) -> ServerError:
        if loading:
            return ServerLoadingError(
                f"{self.base_url} was still loading its model after {timeout:.0f}s; wait longer "
                "(large models take minutes) or check the server's log.", url=self.base_url)
        return ServerUnreachableError(
            f"no server became ready at {self.base_url} within {timeout:.0f}s. {START_HINT}", url=self.base_url)


class ServerClient:
    """Blocking client for one server (used by the sync tokenizer AutoGPT expects)."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 60.0,
                 http_client: httpx.Client | None = None, info: ServerInfo | None = None) -> None:
        """``info``: facts another client already probed at this URL, so they are not asked again."""
        self._ops = _Operations(base_url, api_key)
        self._ops.info_cache = info
        self._http = http_client or httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0))
        self.base_url = self._ops.base_url

    def __repr__(self) -> str:
        return repr(self._ops)

    @property
    def cached_info(self) -> ServerInfo | None:
        """What the last probe learned, without probing."""
        return self._ops.info_cache

    def _run(self, operation: Operation[T]) -> T:
        try:
            request = next(operation)
            while True:
                try:
                    response = self._http.send(request)
                except httpx.TransportError as exc:
                    raise self._ops.transport_error(exc) from exc
                request = operation.send(response)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def info(self, *, refresh: bool = False) -> ServerInfo:
        """The probed server facts (probed once, then cached)."""
        if self._ops.info_cache is None or refresh:
            return self._run(self._ops.probe())
        return self._ops.info_cache

    def tokenize(self, text: str, *, add_special: bool = False) -> list[int] | list[str]:
        return self._run(self._ops.tokenize(self.info(), text, add_special))

    def detokenize(self, tokens: list[int]) -> str:
        return self._run(self._ops.detokenize(self.info(), tokens))

    def is_ready(self) -> bool:
        return self._run(self._ops.health())

    def wait_until_ready(self, timeout: float = 60.0, interval: float = 0.25) -> ServerInfo:
        """Block until the server serves (refused and 503 mean "not yet"), then probe it."""
        deadline, loading = time.monotonic() + timeout, False
        while True:
            try:
                if self.is_ready():
                    return self.info(refresh=True)
                loading = True
            except (ServerUnreachableError, ServerTimeoutError):
                pass
            if time.monotonic() >= deadline:
                raise self._ops.not_ready(timeout, loading)
            time.sleep(interval)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncServerClient:
    """Non-blocking client for one server (used by the async provider)."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 60.0,
                 http_client: httpx.AsyncClient | None = None) -> None:
        self._ops = _Operations(base_url, api_key)
        self._http = http_client or httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=5.0))
        self.base_url = self._ops.base_url
        self._probe_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return repr(self._ops)

    @property
    def cached_info(self) -> ServerInfo | None:
        """What the last probe learned, without probing."""
        return self._ops.info_cache

    async def _run(self, operation: Operation[T]) -> T:
        try:
            request = next(operation)
            while True:
                try:
                    response = await self._http.send(request)
                except httpx.TransportError as exc:
                    raise self._ops.transport_error(exc) from exc
                request = operation.send(response)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def info(self, *, refresh: bool = False) -> ServerInfo:
        if self._ops.info_cache is not None and not refresh:
            return self._ops.info_cache
        async with self._probe_lock:  # concurrent first calls share one probe
            if self._ops.info_cache is None or refresh:
                return await self._run(self._ops.probe())
            return self._ops.info_cache

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int] | list[str]:
        return await self._run(self._ops.tokenize(await self.info(), text, add_special))

    async def detokenize(self, tokens: list[int]) -> str:
        return await self._run(self._ops.detokenize(await self.info(), tokens))

    async def is_ready(self) -> bool:
        return await self._run(self._ops.health())

    async def wait_until_ready(self, timeout: float = 60.0, interval: float = 0.25) -> ServerInfo:
        deadline, loading = time.monotonic() + timeout, False
        while True:
            try:
                if await self.is_ready():
                    return await self.info(refresh=True)
                loading = True
            except (ServerUnreachableError, ServerTimeoutError):
                pass
            if time.monotonic() >= deadline:
                raise self._ops.not_ready(timeout, loading)
            await asyncio.sleep(interval)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncServerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
