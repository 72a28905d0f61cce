"""Load spreads over equivalent servers, and a server stopped mid-run loses no request."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from llamafile_provider.provider import LlamafileProvider
from testbed.server import ServerPool
from tests.cache.conftest import agent_step, own_servers


async def _loop(llm: LlamafileProvider, agent: int, steps: int, where: Counter[str]) -> None:
    for step in range(1, steps + 1):
        reply = await llm.create_chat_completion(agent_step(step, f"spread-{agent}"), max_output_tokens=8,
                                                 ignore_eos=True)
        where[reply.server_url] += 1


async def test_eight_conversations_use_both_servers(server_pool: ServerPool, models: dict[str, Path]) -> None:
    servers = own_servers(server_pool, models["chatml"], "spread")
    where: Counter[str] = Counter()
    async with LlamafileProvider(smart_llm_url=",".join(s.base_url for s in servers)) as llm:
        await asyncio.gather(*(_loop(llm, agent, 3, where) for agent in range(8)))
        assert all(llm.router.placement.in_flight(s.base_url) == 0 for s in servers)
    assert set(where) == {s.base_url for s in servers}
    assert min(where.values()) >= 6  # 24 requests: neither server gets only a few


async def test_a_server_stopped_mid_run_loses_no_request(server_pool: ServerPool, models: dict[str, Path]) -> None:
    servers = own_servers(server_pool, models["chatml"], "stop")
    where: Counter[str] = Counter()

    async def stop_when_both_served() -> None:
        while not (where[servers[0].base_url] and where[servers[1].base_url]):
            await asyncio.sleep(0.01)
        await asyncio.to_thread(servers[0].stop)

    async with LlamafileProvider(smart_llm_url=",".join(s.base_url for s in servers)) as llm:
        await asyncio.gather(stop_when_both_served(), *(_loop(llm, agent, 6, where) for agent in range(8)))
    assert servers[0].process.poll() is not None
    assert sum(where.values()) == 8 * 6  # every request answered, the stopped server's by the other one
    assert where[servers[1].base_url] > where[servers[0].base_url]
