"""Still loading: llama-server answers 503 with its exact "Loading model" body while it loads
(a loopback stand-in keeps it loading forever, so the wait must end at the setting)."""

from __future__ import annotations

from collections.abc import Callable

from llamafile_provider.errors import ServerLoadingError
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.sync import SyncLlamafileProvider

from .support import HI, LOADING_503, PROBE, Loopback, check_fault, check_fault_sync, reply

LOADING = {path: reply(503, LOADING_503) for path in [*PROBE, "/v1/chat/completions"]}


async def test_a_server_that_never_finishes_loading_is_a_loading_error(loopback: Callable[..., Loopback]) -> None:
    server = loopback(LOADING)

    async def fault() -> None:
        async with LlamafileProvider(smart_llm_url=server.url, max_retries=1, startup_timeout=1.5) as llm:
            await llm.create_chat_completion(HI)

    error = await check_fault(fault, ServerLoadingError)
    assert server.url in str(error) and "still loading" in str(error) and "wait longer" in str(error)


def test_the_blocking_facade_says_the_same(loopback: Callable[..., Loopback]) -> None:
    server = loopback(LOADING)

    def fault() -> None:
        with SyncLlamafileProvider(smart_llm_url=server.url, max_retries=0, startup_timeout=0) as llm:
            llm.create_chat_completion(HI)

    error = check_fault_sync(fault, ServerLoadingError)
    assert "still loading" in str(error)
