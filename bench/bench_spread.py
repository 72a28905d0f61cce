"""Benchmark p8: load spread of concurrent agent loops over equivalent servers, in one run.

    python -m bench.bench_spread           (from the repository root, test bed built)

8 concurrent agent loops (5 steps each, each step appending an assistant reply and a tool
result; 32 generated tokens per step, ``ignore_eos``) on two 4-slot test-bed llama-servers
(chatml model, ONE thread each, so that each server has a core of its own, as two machines
would) listed as one group, vs on one of them alone.

* ``p8_spread_speedup``: wall time on 1 server / on 2, through the provider (placement spreads
  new conversations to the least busy server and keeps each on its slot).
* ``p8_raw_speedup``: the same requests sent by hand with a raw client, split evenly
  (agents 0-3 on one server, 4-7 on the other): the ceiling. With two threads per server on
  2 cores the two servers fight over the same cores and both ratios fall far below 1.
Medians of 3 rounds, provider and raw alternating which goes first.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx

from bench.common import run_alone
from llamafile_provider.provider import LlamafileProvider
from testbed import ensure_testbed
from testbed.server import ServerConfig, ServerPool

AGENTS, STEPS, ROUNDS, TOKENS = 8, 5, 3, 32
SYSTEM = "You are an autonomous agent. Pick one command per step and explain why. " * 10
Step = Callable[[int, list[dict[str, str]]], Awaitable[object]]


def step_prompt(agent: str, step: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Task of agent {agent}."}]
    for i in range(step):
        messages += [{"role": "assistant", "content": f"Step {i}: searching."},
                     {"role": "user", "content": f"Result {i}: three files found."}]
    return messages


async def _loops(step: Step, label: str) -> float:
    async def loop(agent: int) -> None:
        for i in range(STEPS):
            await step(agent, step_prompt(f"{label}-{agent}", i))
    started = time.perf_counter()
    await asyncio.gather(*(loop(agent) for agent in range(AGENTS)))
    return time.perf_counter() - started


async def _provider(urls: list[str], label: str) -> float:
    async with LlamafileProvider(smart_llm_url=",".join(urls)) as llm:
        async def step(agent: int, messages: list[dict[str, str]]) -> object:
            return await llm.create_chat_completion(messages, max_output_tokens=TOKENS, ignore_eos=True)
        return await _loops(step, label)


async def _raw(urls: list[str], label: str) -> float:
    async with httpx.AsyncClient(timeout=300) as http:
        async def step(agent: int, messages: list[dict[str, str]]) -> object:
            url = urls[agent * len(urls) // AGENTS]  # split evenly, by hand
            return await http.post(url + "/v1/chat/completions", json={
                "messages": messages, "max_tokens": TOKENS, "ignore_eos": True, "cache_prompt": True})
        return await _loops(step, label)


async def measure(progress: Callable[[str], None]) -> dict[str, float]:
    binary, models = ensure_testbed()
    pool = ServerPool(binary)
    try:
        urls = [pool.get(ServerConfig(model=models["chatml"], threads=1, extra_args=("--alias", f"p8-{i}"))).base_url
                for i in range(2)]
        ours, theirs = [], []
        for rnd in range(ROUNDS):
            for kind in (("provider", "raw") if rnd % 2 == 0 else ("raw", "provider")):
                run = _provider if kind == "provider" else _raw
                progress(f"p8 round {rnd + 1}/{ROUNDS}: {kind}, 1 server then 2")
                one = await run(urls[:1], f"{kind}{rnd}a")
                two = await run(urls, f"{kind}{rnd}b")
                (ours if kind == "provider" else theirs).append(one / two)
    finally:
        pool.close()
    return {"p8_spread_speedup": round(statistics.median(ours), 3),
            "p8_raw_speedup": round(statistics.median(theirs), 3)}


if __name__ == "__main__":
    run_alone(measure)
