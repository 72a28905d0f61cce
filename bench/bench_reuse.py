"""Benchmark p6: prompt reuse across the steps of an agent loop, in one run.

    python -m bench.bench_reuse            (from the repository root, test bed built)

A simulated 10-step agent loop on a 4-slot test-bed llama-server (chatml model): a long system
prompt and a task, then each step appends an assistant reply and a tool result, as AutoGPT's
history does. Meanwhile another client sends unrelated requests to the same server (it takes
slots and would evict an unpinned prefix). The loop runs twice, with reuse (the default:
``cache_prompt`` and slot affinity) and without (``cache_prompt=False``), the same load.

* ``p6_reevaluated_fraction``: prompt tokens the server evaluated / prompt tokens sent, over
  steps 2-10 with reuse (the server's ``timings``). Target <= 0.10; without reuse it is 1.0.
* ``p6_reevaluated_fraction_off``: the same without reuse (the control).
* ``p6_wall_ratio``: the loop's wall time with reuse / without, same run (< 1 is faster).
Medians of 5 rounds, alternating which loop goes first; each round a new task (a new prefix).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

import httpx

from bench.common import run_alone
from llamafile_provider.provider import LlamafileProvider
from testbed import ensure_testbed
from testbed.server import ServerConfig, ServerPool

STEPS = 10
ROUNDS = 5
SYSTEM = ("You are Ada, an autonomous agent. Decide one command per step, explain your reasoning, "
          "and keep working until the task is done. Available commands: read_file(path), "
          "write_file(path, text), web_search(query), list_folder(path), finish(reason). ") * 12


def step_prompt(step: int, session: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Task {session}: collect the sizes of every file in ./data into a report."}]
    for i in range(step):
        messages += [{"role": "assistant", "content": f'{{"command": "list_folder", "args": {{"path": "./data/{i}"}}}}'},
                     {"role": "user", "content": f"Result of list_folder: a_{i}.csv b_{i}.csv notes_{i}.txt"}]
    return messages


async def _other_client(url: str, stop: asyncio.Event) -> None:
    """Unrelated requests, one after another, while the agent runs."""
    async with httpx.AsyncClient(timeout=120) as http:
        n = 0
        while not stop.is_set():
            n += 1
            await http.post(url + "/v1/chat/completions", json={
                "messages": [{"role": "user", "content": f"Unrelated question {n}: " + "words " * 200}],
                "max_tokens": 8})


async def _agent(url: str, reuse: bool, session: str) -> tuple[float, int, int]:
    """(wall seconds, evaluated, prompt tokens over steps 2-10) of one agent loop."""
    evaluated = prompt = 0
    stop = asyncio.Event()
    async with LlamafileProvider(smart_llm_url=url, cache_prompt=reuse, slot_affinity=reuse) as llm:
        other = asyncio.create_task(_other_client(url, stop))
        started = time.perf_counter()
        for step in range(STEPS):
            reply = await llm.create_chat_completion(step_prompt(step, session), max_output_tokens=16, temperature=0,
                                                     ignore_eos=True, session=session)
            if step >= 1:
                evaluated += reply.usage.evaluated_prompt_tokens or 0
                prompt += reply.usage.prompt_tokens
        wall = time.perf_counter() - started
        stop.set()
        await other
    return wall, evaluated, prompt


async def measure(progress: Callable[[str], None]) -> dict[str, float]:
    binary, models = ensure_testbed()
    pool = ServerPool(binary)
    try:
        # Two servers of the same config would be one process: each run gets a fresh one.
        on_url = pool.get(ServerConfig(model=models["chatml"], extra_args=("--alias", "p6-on"))).base_url
        off_url = pool.get(ServerConfig(model=models["chatml"], extra_args=("--alias", "p6-off"))).base_url
        ratios, fractions, fractions_off, prompts = [], [], [], 0
        for rnd in range(ROUNDS):  # alternate which goes first; the median ratio
            order = [True, False] if rnd % 2 == 0 else [False, True]
            walls = {}
            for reuse in order:
                progress(f"p6 round {rnd + 1}/{ROUNDS}: agent loop {'with' if reuse else 'without'} reuse")
                wall, evaluated, prompt = await _agent(on_url if reuse else off_url, reuse, f"p6-{rnd}")
                walls[reuse] = wall
                (fractions if reuse else fractions_off).append(evaluated / prompt)
                prompts = prompt
            ratios.append(walls[True] / walls[False])
    finally:
        pool.close()
    return {"p6_reevaluated_fraction": round(statistics.median(fractions), 3),
            "p6_reevaluated_fraction_off": round(statistics.median(fractions_off), 3),
            "p6_wall_ratio": round(statistics.median(ratios), 3),
            "p6_prompt_tokens_steps_2_10": float(prompts)}


if __name__ == "__main__":
    run_alone(measure)
