"""A slow server: it accepts the request and says nothing; the read timeout ends the call,
once (timeouts are never retried), as a ServerTimeoutError."""

from __future__ import annotations

from collections.abc import Callable

from llamafile_provider.errors import ServerTimeoutError
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.sync import SyncLlamafileProvider

from .support import HI, Loopback, check_fault, check_fault_sync, silent

SILENCE = 30.0  # seconds the server stays silent: far beyond the 1 s timeout, within the bound


async def test_a_silent_chat_reply_times_out(loopback: Callable[..., Loopback]) -> None:
    server = loopback({"/v1/chat/completions": silent(SILENCE)})

    async def fault() -> None:
        async with LlamafileProvider(smart_llm_url=server.url, timeout=1, max_retries=3, startup_timeout=0) as llm:
            await llm.create_chat_completion(HI)

    error = await check_fault(fault, ServerTimeoutError)
    assert server.url in str(error) and "raise the timeout" in str(error)


def test_a_silent_probe_times_out_in_the_blocking_facade(loopback: Callable[..., Loopback]) -> None:
    server = loopback({"/props": silent(SILENCE)})

    def fault() -> None:
        with SyncLlamafileProvider(smart_llm_url=server.url, timeout=1, max_retries=3, startup_timeout=0) as llm:
            llm.create_chat_completion(HI)

    error = check_fault_sync(fault, ServerTimeoutError)
    assert "raise the timeout" in str(error)
