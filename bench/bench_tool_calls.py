"""Benchmark: first-try tool calls at a small output budget, bounded vs unbounded, in one run.

    python -m bench.bench_tool_calls [--requests 20] [--max-output-tokens 64] [--models a,b]

For each model — the tiny random-weight test-bed models (mistral, chatml, llama3, hermes
templates) on llama-server and on the classic b2282 server (``classic-<name>``: the GBNF path),
and the real SmolLM2-135M-Instruct and Gemma 3 270M (``testbed.real_models``) — 20
requests "What is the weather / time in <City>?" offering get_weather(city) and get_time(city),
``tool_choice="required"``,
``max_output_tokens=64``, ``fix_failed_parse_tries=0`` (so only the first try counts), a fixed
seed per request. Counted: replies that are a valid call (``valid``), and calls that name the
function and the ``city`` asked for (``args_right``). Every model runs twice side by side: ``unbounded`` (the
schema sent as it is, as before ``budget.py``) and ``bounded`` (the schema narrowed to close
within the budget). The hermes model runs natively (its template has tools) and, forced, in
constrained mode. Prints a table and the JSON of the counts.

Target: bounded ``valid`` = requests on every row. ``measure`` is ``bench.run``'s p4 section:
constrained vs compat, bounded, on every model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from bench.common import TINY, Progress, pool, real_config, reps, tiny_models
from llamafile_provider import provider as provider_module
from llamafile_provider.errors import LlamafileError
from llamafile_provider.provider import LlamafileProvider
from testbed.real_models import REAL_MODELS
from testbed.server import ServerConfig, ServerPool

WEATHER = {"name": "get_weather", "description": "Current weather in a city.",
           "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}
TIME = {"name": "get_time", "description": "Current local time in a city.",
        "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}
# Every third request asks for the time: the right call names the function AND the city asked for.
QUESTIONS = ((WEATHER, "What is the weather in {city}?"), (WEATHER, "Is it raining in {city}?"),
             (TIME, "What time is it in {city}?"))
CITIES = ["Paris", "Berlin", "Tokyo", "Madrid", "Rome", "Cairo", "Lima", "Oslo", "Vienna", "Dublin",
          "Lisbon", "Prague", "Warsaw", "Athens", "Nairobi", "Sydney", "Toronto", "Chicago", "Seoul", "Mumbai"]
CLASSIC = tuple(f"classic-{name}" for name in TINY)


@contextmanager
def unbounded() -> Iterator[None]:
    """The provider as it was before bounding: no budget reaches ``cascade.constrain``."""
    async def no_budget(*_args: Any) -> None:
        return None
    with mock.patch.object(provider_module, "_output_budget", no_budget):
        yield


async def run(url: str, tool_mode: str, requests: int, max_tokens: int) -> dict[str, Any]:
    valid = right = tokens = 0
    modes: set[str] = set()
    async with LlamafileProvider(smart_llm_url=url, fast_llm_url=url, tool_mode=tool_mode,
                                 fix_failed_parse_tries=0) as llm:
        for i in range(requests):
            city = CITIES[i % len(CITIES)]
            function, question = QUESTIONS[i % len(QUESTIONS)]
            try:
                reply = await llm.create_chat_completion(
                    [{"role": "user", "content": question.format(city=city)}], functions=[WEATHER, TIME],
                    tool_choice="required", max_output_tokens=max_tokens, seed=i)
            except LlamafileError:
                continue
            valid += 1
            tokens = max(tokens, reply.usage.completion_tokens)
            modes.add(reply.tool_mode or "")
            calls = reply.message.tool_calls
            right += bool(calls) and calls[0].function.name == function["name"] and str(
                calls[0].function.arguments.get("city", "")).strip().lower() == city.lower()
    return {"valid": valid, "args_right": right, "max_completion_tokens": tokens, "mode": ",".join(sorted(modes))}


def _url(name: str, servers: ServerPool, classic: ServerPool) -> str:
    """Where ``name`` (a tiny model, ``classic-<tiny>`` or a real model) is served."""
    tiny = tiny_models()
    if name in CLASSIC:
        return classic.get(ServerConfig(model=tiny[name.removeprefix("classic-")], classic=True)).base_url
    return servers.get(real_config(name) if name in REAL_MODELS else ServerConfig(model=tiny[name])).base_url


async def bench(models: list[str], requests: int, max_tokens: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with pool() as servers, pool(classic=True) as classic:
        for name in models:
            url = _url(name, servers, classic)
            for tool_mode in ("auto", "constrained") if name == "hermes" else ("auto",):
                for variant in ("unbounded", "bounded"):
                    started = time.monotonic()
                    if variant == "unbounded":
                        with unbounded():
                            counts = await run(url, tool_mode, requests, max_tokens)
                    else:
                        counts = await run(url, tool_mode, requests, max_tokens)
                    rows.append({"model": name, "tool_mode": tool_mode, "variant": variant, "requests": requests,
                                 **counts, "seconds": round(time.monotonic() - started, 1)})
                    print(_line(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    return (f"{row['model']:15} {row['tool_mode']:11} {row['variant']:9} valid {row['valid']:2}/{row['requests']}"
            f"  args_right {row['args_right']:2}/{row['requests']}  max_tokens_used {row['max_completion_tokens']:3}"
            f"  mode {row['mode']:11} {row['seconds']:6.1f}s")


async def measure(progress: Progress) -> dict[str, float]:
    """p4: first-try valid calls, constrained vs compat, on the tiny models (llama-server and
    classic) and the real ones; how often the real models' calls are the one asked for."""
    # The real models generate at ~40 tok/s on 2 shared cores: fewer requests keep the run in minutes.
    tiny_requests, real_requests = reps(20, 5), reps(10, 3)
    totals = {"constrained": [0, 0], "compat": [0, 0]}
    right = asked = 0
    result: dict[str, float] = {}
    with pool() as servers, pool(classic=True) as classic:
        for name in [*TINY, *CLASSIC, *REAL_MODELS]:
            url = _url(name, servers, classic)
            requests = real_requests if name in REAL_MODELS else tiny_requests
            for tool_mode in totals:
                counts = await run(url, tool_mode, requests, 64)
                progress(f"p4: {name:15} {tool_mode:11} valid {counts['valid']}/{requests}"
                         f"  right {counts['args_right']}/{requests}")
                totals[tool_mode][0] += counts["valid"]
                totals[tool_mode][1] += requests
                result[f"p4_valid_{tool_mode}_{name}"] = counts["valid"] / requests
                if name in REAL_MODELS:
                    right, asked = right + counts["args_right"], asked + requests
                    result[f"p4_right_{tool_mode}_{name}"] = counts["args_right"] / requests
    return {"p4_valid_fraction_constrained": round(totals["constrained"][0] / totals["constrained"][1], 3),
            "p4_valid_fraction_compat": round(totals["compat"][0] / totals["compat"][1], 3),
            "p4_argument_accuracy": round(right / asked, 3), **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--max-output-tokens", type=int, default=64)
    parser.add_argument("--models", default=",".join([*TINY, *CLASSIC, *REAL_MODELS]))
    args = parser.parse_args()
    rows = asyncio.run(bench(args.models.split(","), args.requests, args.max_output_tokens))
    print("\n".join(_line(row) for row in rows))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
