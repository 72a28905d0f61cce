"""A conversation stays on its server slot across calls, and the server says so."""

from __future__ import annotations

import re

from llamafile_provider.placement import conversation_key
from llamafile_provider.messages import as_messages
from llamafile_provider.provider import LlamafileProvider
from testbed.server import RunningServer
from tests.cache.conftest import agent_step


async def test_two_sessions_keep_their_slots(chatml_server: RunningServer) -> None:
    async with LlamafileProvider(smart_llm_url=chatml_server.base_url) as llm:
        pins = {}
        for step in (1, 2, 3):
            for session in ("aff-a", "aff-b"):
                await llm.create_chat_completion(agent_step(step, session), max_output_tokens=4, session=session)
                pin = llm.router.placement.pin_of(conversation_key([], session))
                assert pin is not None and pin.slot is not None
                assert pins.setdefault(session, pin.slot) == pin.slot
    assert pins["aff-a"] != pins["aff-b"]  # a new conversation takes the slot nobody is pinned to
    # llama-server logs the slot it was asked for by id: ours, each time.
    chosen = re.findall(r"selected slot by id \((\d+)\)", chatml_server.log_tail(4000))
    assert {str(pins["aff-a"]), str(pins["aff-b"])} <= set(chosen)


async def test_the_first_messages_are_the_key_without_a_session(chatml_server: RunningServer) -> None:
    async with LlamafileProvider(smart_llm_url=chatml_server.base_url) as llm:
        await llm.create_chat_completion(agent_step(1, "aff-hash"), max_output_tokens=4)
        key = conversation_key(as_messages(agent_step(5, "aff-hash")))
        first = llm.router.placement.pin_of(key)
        second_step = await llm.create_chat_completion(agent_step(2, "aff-hash"), max_output_tokens=4)
    assert first is not None and llm.router.placement.pin_of(key) == first
    assert second_step.usage.cached_prompt_tokens
