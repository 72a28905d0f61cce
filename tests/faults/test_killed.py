"""A server killed mid-request (a long generation) and mid-stream (the text so far is kept in
``partial_text``): typed errors, no hang, nothing left open, and the killed process is gone."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from llamafile_provider.errors import ServerError, ServerUnreachableError
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.sync import SyncLlamafileProvider
from testbed.server import RunningServer

from .support import BOUND, HI, assert_no_leaks, bounded, resources, steady_resources

pytestmark = pytest.mark.server
# ignore_eos keeps the tiny model talking until max_tokens, so there is a generation to cut.
ENDLESS = {"max_output_tokens": 6000, "ignore_eos": True, "temperature": 0}


def wait_until_generating(server: RunningServer) -> None:
    """Block until the server's one slot is busy (its /slots says so), bounded."""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        slots = httpx.get(server.base_url + "/slots", timeout=10).json()
        if any(slot.get("is_processing") for slot in slots):
            return
        time.sleep(0.05)
    raise AssertionError("the long generation never started")


async def warm_up(server: RunningServer) -> None:
    """One ordinary call first, so lazily created pools exist before the leak count."""
    async with LlamafileProvider(smart_llm_url=server.base_url, startup_timeout=0) as llm:
        await llm.create_chat_completion(HI, max_output_tokens=4)


async def test_a_server_killed_mid_request_is_unreachable(own_server: RunningServer) -> None:
    await warm_up(own_server)
    before = resources()
    async with LlamafileProvider(smart_llm_url=own_server.base_url, max_retries=2, startup_timeout=0) as llm:
        call = asyncio.create_task(bounded(llm.create_chat_completion(HI, **ENDLESS)))
        watcher = threading.Thread(target=wait_until_generating, args=(own_server,))
        watcher.start()  # its own thread: the loop's executor threads are the provider's to count
        while watcher.is_alive():
            await asyncio.sleep(0.05)
        own_server.process.kill()
        with pytest.raises(ServerUnreachableError) as caught:
            await call
    assert own_server.process.wait(timeout=10) is not None
    assert_no_leaks(before)
    assert own_server.base_url in str(caught.value) and "serve.sh" in str(caught.value)


async def test_a_server_killed_mid_stream_keeps_the_partial_text(own_server: RunningServer) -> None:
    await warm_up(own_server)
    before = resources()
    received: list[str] = []
    async with LlamafileProvider(smart_llm_url=own_server.base_url, max_retries=0, startup_timeout=0) as llm:
        async def consume() -> None:
            async for text in llm.stream_chat_completion(HI, **ENDLESS):
                received.append(text)
                if len(received) == 3:
                    own_server.process.kill()

        with pytest.raises(ServerError) as caught:
            await bounded(consume())
    assert own_server.process.wait(timeout=10) is not None
    assert_no_leaks(before)
    assert len(received) >= 3 and caught.value.partial_text == "".join(received)
    assert "partial_text" in str(caught.value)


def test_the_blocking_facade_keeps_the_partial_text_too(own_server: RunningServer) -> None:
    asyncio.run(warm_up(own_server))
    with SyncLlamafileProvider(smart_llm_url=own_server.base_url, startup_timeout=0) as llm:
        llm.create_chat_completion(HI, max_output_tokens=4)  # the facade's own loop and pools, warm
    before = steady_resources()
    received: list[str] = []
    with SyncLlamafileProvider(smart_llm_url=own_server.base_url, max_retries=0, startup_timeout=0) as llm:
        with pytest.raises(ServerError) as caught:
            for text in llm.stream_chat_completion(HI, **ENDLESS):
                received.append(text)
                if len(received) == 3:
                    own_server.process.kill()
    assert own_server.process.wait(timeout=10) is not None
    assert_no_leaks(before)
    assert len(received) >= 3 and caught.value.partial_text == "".join(received)
