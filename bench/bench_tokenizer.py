"""Benchmark: prompt-token counting, this package vs the naive way, in one run.

    python -m bench.bench_tokenizer            (from the repository root, test bed built)

Through ``LlamafileProvider.acount_message_tokens`` on real test-bed servers:

* p2, on llama-server with a ~2,500-token, 10-message conversation: the HTTP requests (counted
  by an httpx event hook on the provider's own client) of the first count on a fresh provider,
  the one-time probe included; then the requests a count of a new conversation makes; then calls
  per second when the same conversation is counted again and again, vs one uncached
  ``/tokenize`` request per message (what AutoGPT classic's own llamafile provider does, though
  it also opens a new connection each time);
* p3, exactness: counts equal to the server's ``prompt_tokens`` for the same arguments
  (``create_chat_completion`` right after, ``max_output_tokens=64``), over five conversation
  shapes (system, no system, multi-turn, a later system message, tools) on every dialect the
  test bed runs: llama-server with the 4 tiny templates and the 2 real models, and the classic
  b2282 server with the 4 tiny models.

Targets (issue 3): 1 request per new conversation; warm >= 100x naive; exactness 100 %.
``measure_counting`` (p2) and ``measure_exactness`` (p3) are ``bench.run`` sections.
Printed as JSON; ratios, not absolute times, are what to compare across machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.common import TINY, Progress, pool, real_config, reps, tiny_models
from llamafile_provider.errors import LlamafileError
from llamafile_provider.provider import LlamafileProvider
from testbed.real_models import REAL_MODELS
from testbed.server import ServerConfig

WORDS = "please help the agent search the web read a file write code then run the command and reply".split()


def conversation(n_messages: int = 10, words_per_message: int = 240) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": " ".join(WORDS[i % len(WORDS)] for i in range(words_per_message))}]
    for turn in range(1, n_messages):
        role = "user" if turn % 2 else "assistant"
        text = " ".join(WORDS[(i * 7 + turn) % len(WORDS)] for i in range(words_per_message))
        messages.append({"role": role, "content": f"turn {turn}: {text}"})
    return messages


async def rate(call: Callable[[], Awaitable[object]], seconds: float) -> float:
    """Calls per second over roughly ``seconds``."""
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        await call()
        calls += 1
    return calls / elapsed


async def naive_count(http: httpx.AsyncClient, base_url: str, messages: list[dict[str, str]]) -> int:
    """One uncached request per message (on a kept-alive connection, to be fair to it)."""
    total = 0
    for message in messages:
        response = await http.post(base_url + "/tokenize", json={"content": message["content"]})
        total += len(response.json()["tokens"])
    return total


def count_requests(provider: LlamafileProvider, paths: list[str]) -> None:
    """Record the path of every HTTP request the provider's servers send (edge and SDK alike)."""
    async def hook(request: httpx.Request) -> None:
        paths.append(request.url.path)
    for server in provider.router.groups["smart"]:
        server.http.event_hooks["request"].append(hook)


async def measure_counting(progress: Progress) -> dict[str, float]:
    """p2: HTTP requests of a first count on a fresh provider; repeated counts vs the naive way."""
    messages = conversation()
    seconds = reps(3, 1)
    with pool() as servers:
        url = servers.get(ServerConfig(model=tiny_models()["chatml"])).base_url
        async with LlamafileProvider(smart_llm_url=url) as provider:
            paths: list[str] = []
            count_requests(provider, paths)
            progress("p2: first count on a fresh provider")
            prompt_tokens = await provider.acount_message_tokens(messages)
            cold = len(paths)
            progress(f"p2: cold count sent {cold} requests: {' '.join(paths)}")
            paths.clear()
            await provider.acount_message_tokens(conversation(words_per_message=200))
            new_conversation = len(paths)
            progress(f"p2: {seconds}s of repeated counts vs {seconds}s of one /tokenize per message")
            warm = await rate(lambda: provider.acount_message_tokens(messages), seconds)
        async with httpx.AsyncClient() as plain:
            naive = await rate(lambda: naive_count(plain, url, messages), seconds)
    return {"p2_cold_requests_per_call": cold, "p2_probe_requests": cold - new_conversation,
            "p2_requests_per_new_conversation": new_conversation, "p2_prompt_tokens": prompt_tokens,
            "p2_warm_calls_per_s": round(warm, 1), "p2_naive_calls_per_s": round(naive, 1),
            "p2_warm_speedup": round(warm / naive, 1)}


WEATHER = {"name": "get_weather", "description": "Current weather in a city.",
           "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}
SHAPES: dict[str, tuple[list[dict[str, str]], list[dict[str, Any]] | None]] = {
    "system": ([{"role": "system", "content": "You are a careful agent."},
                {"role": "user", "content": "Read the file and reply."}], None),
    "no_system": ([{"role": "user", "content": "Search the web for the weather."}], None),
    "multi_turn": (conversation(5, 30), None),
    "two_systems": ([{"role": "system", "content": "You are a careful agent."},
                     {"role": "user", "content": "Run the command."},
                     {"role": "assistant", "content": "I ran the command."},
                     {"role": "system", "content": "ERROR PARSING YOUR RESPONSE: reply in JSON."}], None),
    "tools": ([{"role": "system", "content": "You are a careful agent."},
               {"role": "user", "content": "What is the weather in Paris?"}], [WEATHER]),
}


async def exactness(url: str, max_tokens: int) -> tuple[int, int]:
    """(exact, total): ``acount_message_tokens`` == the server's ``prompt_tokens`` of the same call."""
    exact = 0
    async with LlamafileProvider(smart_llm_url=url, fix_failed_parse_tries=0) as provider:
        for messages, functions in SHAPES.values():
            counted = await provider.acount_message_tokens(messages, functions=functions,
                                                           max_output_tokens=max_tokens)
            before = provider.usage.prompt_tokens
            with contextlib.suppress(LlamafileError):  # an invalid tool call still reported its usage
                await provider.create_chat_completion(messages, functions=functions, max_output_tokens=max_tokens,
                                                      temperature=0, seed=7)
            exact += counted == provider.usage.prompt_tokens - before
    return exact, len(SHAPES)


async def measure_exactness(progress: Progress) -> dict[str, float]:
    """p3: exact counts over every dialect the test bed runs (llama-server: 4 tiny templates and
    the 2 real models; the classic b2282 server: the 4 tiny models) and every conversation shape."""
    result: dict[str, float] = {}
    tiny = tiny_models()
    with pool() as servers, pool(classic=True) as classic:
        targets = [(name, lambda n=name: servers.get(ServerConfig(model=tiny[n]))) for name in TINY]
        targets += [(key, lambda k=key: servers.get(real_config(k))) for key in REAL_MODELS]
        targets += [(f"classic-{name}", lambda n=name: classic.get(ServerConfig(model=tiny[n], classic=True)))
                    for name in TINY]
        exact_all = total_all = 0
        for name, start in targets:
            exact, total = await exactness(start().base_url, 64)
            progress(f"p3: {name}: {exact}/{total} exact")
            result[f"p3_exact_{name}"] = exact / total
            exact_all, total_all = exact_all + exact, total_all + total
    return {"p3_exact_fraction": round(exact_all / total_all, 3), "p3_conversations": total_all, **result}


def main() -> None:
    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    async def both() -> dict[str, float]:
        return {**await measure_counting(progress), **await measure_exactness(progress)}

    result: dict[str, Any] = asyncio.run(both())
    result["targets"] = {"p2_requests_per_new_conversation": 1, "p2_warm_speedup": ">= 100",
                         "p3_exact_fraction": 1.0}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
