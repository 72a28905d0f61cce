"""A pinned slot busy with another client's long request neither fails nor waits for it."""

from __future__ import annotations

import asyncio
import json

import httpx

from llamafile_provider.placement import conversation_key
from llamafile_provider.provider import LlamafileProvider
from testbed.server import RunningServer
from tests.cache.conftest import agent_step


async def _occupy(url: str, slot: int, started: asyncio.Event, field: str = "id_slot") -> None:
    """Another client: a long streamed generation pinned to ``slot``."""
    body = {"prompt": "Tell a long story.", "n_predict": 6000, "ignore_eos": True, "stream": True, field: slot}
    async with httpx.AsyncClient(timeout=120) as http, http.stream("POST", url + "/completion", json=body) as reply:
        async for line in reply.aiter_lines():
            if line.startswith("data: ") and not json.loads(line[6:]).get("stop"):
                started.set()


async def test_busy_pinned_slot_goes_elsewhere(hermes_server: RunningServer) -> None:
    url = hermes_server.base_url  # a server of its own here: another test's requests would blur it
    async with LlamafileProvider(smart_llm_url=url) as llm:
        await llm.create_chat_completion(agent_step(1, "busy"), max_output_tokens=4, session="busy")
        pinned = llm.router.placement.pin_of(conversation_key([], "busy"))
        assert pinned is not None and pinned.slot is not None
        started = asyncio.Event()
        other = asyncio.create_task(_occupy(url, pinned.slot, started))
        try:
            await asyncio.wait_for(started.wait(), 60)
            reply = await llm.create_chat_completion(agent_step(2, "busy"), max_output_tokens=4, session="busy")
            assert not other.done()  # answered while the other client still held the slot
        finally:
            other.cancel()
    assert reply.message.content is not None
    moved = llm.router.placement.pin_of(conversation_key([], "busy"))
    assert moved is not None and moved.slot != pinned.slot


async def test_classic_busy_slot_falls_back(classic_server: RunningServer) -> None:
    """b2282 honours ``slot_id`` on /completion (the prefill route) and takes another free slot
    when that one is busy (its get_slot)."""
    url = classic_server.base_url
    async with LlamafileProvider(smart_llm_url=url) as llm:
        await llm.create_chat_completion(agent_step(1, "busy-c"), max_output_tokens=4, session="busy-c",
                                         prefill_response="Step")
        pinned = llm.router.placement.pin_of(conversation_key([], "busy-c"))
        assert pinned is not None and pinned.slot is not None
        started = asyncio.Event()
        other = asyncio.create_task(_occupy(url, pinned.slot, started, field="slot_id"))
        try:
            await asyncio.wait_for(started.wait(), 60)
            reply = await llm.create_chat_completion(agent_step(2, "busy-c"), max_output_tokens=4, session="busy-c",
                                                     prefill_response="Step")
            assert not other.done()
        finally:
            other.cancel()
    assert reply.message.content.startswith("Step")
    ran = llm.router.placement.pin_of(conversation_key([], "busy-c"))
    assert ran is not None and ran.slot != pinned.slot  # where the server says it ran
