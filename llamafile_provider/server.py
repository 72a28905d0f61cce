"""The HTTP edge: the only module that talks to servers (the openai SDK rides on its client).

Each operation is written once, as a generator that yields ``httpx.Request`` objects and
receives the responses (a "sans-I/O" style); ``ServerClient`` drives it with a blocking
``httpx.Client`` (AutoGPT's tokenizer interface is sync) and ``AsyncServerClient`` with an
``httpx.AsyncClient`` (the provider is async). Both keep their connections alive.

One ``Endpoint`` per server holds what every request to it shares: the URL (credentials taken
out of it), the headers, the probed facts and the ``RetryPolicy`` (``retry.py``) — the one place
that decides timeouts and retries, for the edge's own requests and the SDK's alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import httpx
import openai

from llamafile_provider import classic_probe, dialects
from llamafile_provider.dialects import Dialect, ServerInfo, normalize_base_url
from llamafile_provider.errors import (
    ConfigurationError,
    ServerError,
    ServerLoadingError,
    ServerTimeoutError,
    ServerUnreachableError,
    UnsupportedFeatureError,
)
from llamafile_provider.redact import redact, split_credentials
from llamafile_provider.retry import RetryPolicy

T = TypeVar("T")
Operation = Generator[httpx.Request, httpx.Response, T]

START_HINT = (
    "Start it with ./llamafile-integration/serve.sh, or by hand: "
    "`./MODEL.llamafile --server --nobrowser --port PORT` (llamafile 0.8-0.9) / "
    "`llama-server -m MODEL.gguf --port PORT`."
)


class Endpoint:
    """One server: request building, response handling and error mapping shared by every client."""

    def __init__(self, base_url: str, api_key: str | None = None, policy: RetryPolicy | None = None) -> None:
        # Credentials in the URL are for a proxy in front of the server: they travel as a Basic
        # header, so ``base_url`` (used in every message and log line) never holds them.
        try:
            self.base_url, self.headers = split_credentials(normalize_base_url(base_url))
        except ConfigurationError as exc:
            raise ConfigurationError(redact(str(exc))) from None
        if api_key:
            # llama-server also reads the key from X-Api-Key when Authorization carries Basic.
            self.headers["X-Api-Key" if "Authorization" in self.headers else "Authorization"] = (
                api_key if "Authorization" in self.headers else f"Bearer {api_key}")
        self.policy = policy or RetryPolicy()
        self.info_cache: ServerInfo | None = None
        # False once GET /slots said it is off (--no-slots): not asked again on every call.
        self.slots_readable = True

    def __repr__(self) -> str:  # never shows the key
        return f"{type(self).__name__}({self.base_url!r})"

    def request(self, method: str, path: str, json: Any = None) -> httpx.Request:
        return httpx.Request(method, self.base_url + path, json=json, headers=self.headers)

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

    def chat_format(self, info: ServerInfo) -> Operation[ServerInfo]:
        """Classic: probe which built-in chat layout the server applies; kept in the facts."""
        info = yield from classic_probe.detect_chat_format(self, info)
        self.info_cache = info
        return info

    def complete(self, body: dict[str, Any]) -> Operation[dict[str, Any]]:
        """Classic ``POST /completion`` (continues a prompt the client rendered): the answer."""
        response = yield self.request("POST", "/completion", body)
        answer = self.checked(response, Dialect.CLASSIC).json()
        return answer if isinstance(answer, dict) else {}

    def busy_slots(self) -> Operation[frozenset[int]]:
        """The ids of the slots llama-server's ``GET /slots`` reports ``is_processing``; empty when
        the endpoint is off (``--no-slots``) or says nothing readable."""
        response = yield self.request("GET", "/slots")
        if response.status_code in (404, 405, 501):
            self.slots_readable = False
        body = response.json() if response.status_code == 200 else []
        if not isinstance(body, list):
            return frozenset()
        return frozenset(slot["id"] for slot in body
                         if isinstance(slot, dict) and isinstance(slot.get("id"), int) and slot.get("is_processing"))

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
        if isinstance(exc, httpx.RemoteProtocolError) and "complete message body" in str(exc):
            # Headers came, then the connection closed: the server went away mid-reply (crashed or stopped).
            return ServerUnreachableError(
                f"{self.base_url} closed the connection before its reply was complete ({exc}): the server "
                f"may have crashed or been stopped; see its log. {START_HINT}", url=self.base_url)
        return ServerUnreachableError(
            f"nothing answers at {self.base_url} ({type(exc).__name__}: {exc}). {START_HINT}", url=self.base_url)

    def sdk_error(self, exc: openai.APIError, dialect: Dialect) -> ServerError:
        """The package's error for a failure the openai SDK reports (also errors sent mid-stream)."""
        cause = exc.__cause__
        if isinstance(exc, openai.APIStatusError):
            return dialects.error_from_response(exc.response, self.base_url, dialect)
        if isinstance(cause, httpx.TransportError):  # APITimeoutError, APIConnectionError
            error = self.transport_error(cause)
            error.__cause__ = cause
            return error
        if isinstance(exc, openai.APIConnectionError):
            return ServerUnreachableError(f"nothing answers at {self.base_url} ({exc}). {START_HINT}",
                                          url=self.base_url)
        body = exc.body if isinstance(exc.body, dict) else {"message": str(exc.body or exc.message)}
        status = body.get("code") if isinstance(body.get("code"), int) else 500
        return dialects.error_from_response(httpx.Response(status, json={"error": body}), self.base_url, dialect)

    def stream_error(self, exc: openai.APIError | httpx.TransportError, dialect: Dialect,
                     partial_text: str) -> ServerError:
        """The package's error for a stream that broke after ``partial_text`` had come."""
        so_far = f"after {len(partial_text)} characters (the text so far is in .partial_text)"
        if isinstance(exc, openai.APIError):
            error = self.sdk_error(exc, dialect)
        elif isinstance(exc, httpx.TimeoutException):
            error = ServerTimeoutError(f"{self.base_url} stopped sending mid-stream {so_far} ({type(exc).__name__}); "
                                       "raise LLAMAFILE_TIMEOUT or retry.", url=self.base_url)
        else:
            error = ServerUnreachableError(
                f"the stream from {self.base_url} broke {so_far}: {type(exc).__name__}: {exc}. The server stopped "
                "or crashed; check its log, restart it and retry.", url=self.base_url)
        error.partial_text = partial_text
        return error

    def not_ready(self, timeout: float, loading: bool) -> ServerError:
        if loading:
            return ServerLoadingError(
                f"{self.base_url} was still loading its model after {timeout:.0f}s; wait longer "
                "(LLAMAFILE_STARTUP_TIMEOUT; large models take minutes) or check the server's log.", url=self.base_url)
        return ServerUnreachableError(
            f"no server became ready at {self.base_url} within {timeout:.0f}s. {START_HINT}", url=self.base_url)


class ServerClient:
    """Blocking client for one server (used by the sync tokenizer AutoGPT expects)."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None, timeout: float = 60.0,
                 http_client: httpx.Client | None = None, info: ServerInfo | None = None,
                 endpoint: Endpoint | None = None) -> None:
        """``endpoint``: the server's shared state (URL, headers, probed facts, retry policy), so a
        sync and an async client of one server probe once and follow one policy. ``info``: facts
        already probed at this URL. Without either, a fresh endpoint that does not retry."""
        if endpoint is None:
            if base_url is None:
                raise TypeError("ServerClient needs a base_url or an endpoint")
            endpoint = Endpoint(base_url, api_key, RetryPolicy(timeout=timeout))
        self.endpoint = endpoint
        if info is not None:
            endpoint.info_cache = info
        self._http = http_client or httpx.Client(timeout=endpoint.policy.httpx_timeout())
        self.base_url = endpoint.base_url

    def __repr__(self) -> str:
        return repr(self.endpoint)

    @property
    def cached_info(self) -> ServerInfo | None:
        """What the last probe learned, without probing."""
        return self.endpoint.info_cache

    def _run(self, make: Callable[[], Operation[T]], *, retry: bool = True) -> T:
        return self.endpoint.policy.call(lambda: self._drive(make())) if retry else self._drive(make())

    def _drive(self, operation: Operation[T]) -> T:
        try:
            request = next(operation)
            while True:
                try:
                    response = self._http.send(request)
                except httpx.TransportError as exc:
                    raise self.endpoint.transport_error(exc) from exc
                request = operation.send(response)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def info(self, *, refresh: bool = False) -> ServerInfo:
        """The probed server facts (probed once, then cached)."""
        if self.endpoint.info_cache is None or refresh:
            return self._run(self.endpoint.probe)
        return self.endpoint.info_cache

    def tokenize(self, text: str, *, add_special: bool = False) -> list[int] | list[str]:
        info = self.info()
        return self._run(lambda: self.endpoint.tokenize(info, text, add_special))

    def detokenize(self, tokens: list[int]) -> str:
        info = self.info()
        return self._run(lambda: self.endpoint.detokenize(info, tokens))

    def detect_chat_format(self) -> ServerInfo:
        """The facts with a classic server's chat layout probed (once; other dialects: as is)."""
        info = self.info()
        if info.dialect is not Dialect.CLASSIC or info.chat_format is not None:
            return info
        return self._run(lambda: self.endpoint.chat_format(info))

    def is_ready(self) -> bool:
        return self._run(self.endpoint.health, retry=False)

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
                raise self.endpoint.not_ready(timeout, loading)
            time.sleep(interval)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncServerClient:
    """Non-blocking client for one server (used by the async provider)."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None, timeout: float = 60.0,
                 http_client: httpx.AsyncClient | None = None, endpoint: Endpoint | None = None) -> None:
        if endpoint is None:
            if base_url is None:
                raise TypeError("AsyncServerClient needs a base_url or an endpoint")
            endpoint = Endpoint(base_url, api_key, RetryPolicy(timeout=timeout))
        self.endpoint = endpoint
        self._http = http_client or httpx.AsyncClient(timeout=endpoint.policy.httpx_timeout())
        self.base_url = endpoint.base_url
        self._probe_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return repr(self.endpoint)

    @property
    def cached_info(self) -> ServerInfo | None:
        """What the last probe learned, without probing."""
        return self.endpoint.info_cache

    async def _run(self, make: Callable[[], Operation[T]], *, retry: bool = True) -> T:
        if retry:
            return await self.endpoint.policy.acall(lambda: self._drive(make()))
        return await self._drive(make())

    async def _drive(self, operation: Operation[T]) -> T:
        try:
            request = next(operation)
            while True:
                try:
                    response = await self._http.send(request)
                except httpx.TransportError as exc:
                    raise self.endpoint.transport_error(exc) from exc
                request = operation.send(response)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def info(self, *, refresh: bool = False) -> ServerInfo:
        if self.endpoint.info_cache is not None and not refresh:
            return self.endpoint.info_cache
        async with self._probe_lock:  # concurrent first calls share one probe
            if self.endpoint.info_cache is None or refresh:
                return await self._run(self.endpoint.probe)
            return self.endpoint.info_cache

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int] | list[str]:
        info = await self.info()
        return await self._run(lambda: self.endpoint.tokenize(info, text, add_special))

    async def detokenize(self, tokens: list[int]) -> str:
        info = await self.info()
        return await self._run(lambda: self.endpoint.detokenize(info, tokens))

    async def detect_chat_format(self) -> ServerInfo:
        info = await self.info()
        if info.dialect is not Dialect.CLASSIC or info.chat_format is not None:
            return info
        async with self._probe_lock:  # concurrent first counts share one probe
            info = self.endpoint.info_cache or info
            if info.chat_format is not None:
                return info
            return await self._run(lambda: self.endpoint.chat_format(info))

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Classic ``/completion`` under the server's retry policy."""
        return await self._run(lambda: self.endpoint.complete(body))

    async def busy_slots(self) -> frozenset[int]:
        """Slots the server reports busy right now (one quick request, not retried; none once
        the server said its ``/slots`` is off)."""
        if not self.endpoint.slots_readable:
            return frozenset()
        return await self._run(self.endpoint.busy_slots, retry=False)

    async def is_ready(self) -> bool:
        return await self._run(self.endpoint.health, retry=False)

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
                raise self.endpoint.not_ready(timeout, loading)
            await asyncio.sleep(interval)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncServerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
