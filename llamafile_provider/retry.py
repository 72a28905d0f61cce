"""The one retry and timeout policy of the HTTP edge, applied to every request to a server.

Kept apart from ``server.py`` so the rule reads in one place: the edge's own requests (probe,
tokenize) and the openai SDK's (chat, embeddings; the SDK's own retries are off) both go
through ``RetryPolicy.call`` / ``acall``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from llamafile_provider.errors import ServerError, ServerInternalError, ServerLoadingError, ServerUnreachableError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Timeouts and retries for every request to one server.

    The connect timeout is short so a down server fails over in seconds; the read timeout is
    long because a 7B model on a laptop is slow. Retried, with jittered exponential backoff:
    503 "loading", other 5xx, refused / reset connections. Never retried: timeouts (a server
    that accepted the work and is busy would only get it twice; a host that does not even
    accept connections is down) and 4xx.
    """

    retries: int = 0
    timeout: float = 600.0
    connect_timeout: float = 5.0
    backoff: float = 0.25
    max_backoff: float = 4.0

    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=min(self.connect_timeout, self.timeout))

    @staticmethod
    def should_retry(exc: ServerError) -> bool:
        if isinstance(exc, (ServerLoadingError, ServerInternalError)):
            return True
        return isinstance(exc, ServerUnreachableError) and not isinstance(exc.__cause__, httpx.TimeoutException)

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.0)  # noqa: S311

    def call(self, attempt: Callable[[], T]) -> T:
        for n in range(self.retries + 1):
            try:
                return attempt()
            except ServerError as exc:
                if n == self.retries or not self.should_retry(exc):
                    raise
            time.sleep(self.delay(n))
        raise AssertionError("unreachable")  # pragma: no cover

    async def acall(self, attempt: Callable[[], Awaitable[T]]) -> T:
        for n in range(self.retries + 1):
            try:
                return await attempt()
            except ServerError as exc:
                if n == self.retries or not self.should_retry(exc):
                    raise
            await asyncio.sleep(self.delay(n))
        raise AssertionError("unreachable")  # pragma: no cover
