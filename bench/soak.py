"""Bounded soak: many requests from concurrent clients, with the server restarted in the middle.

    python -m bench.soak [--requests 1000 --clients 16 --sync-clients 2] [--json]

One real test-bed llama-server (ChatML tiny model, 4 slots) on a fixed port, one
``LlamafileProvider`` shared by ``--clients`` asyncio tasks and ``--sync-clients`` threads each
with its own ``SyncLlamafileProvider``. Request kinds rotate: plain chat, a required tool call,
a token count, and every tenth a stream. Halfway through, the server is stopped and started
again on the same port, so requests in flight and those sent while it is down must fail typed.

Why it exists: the guarantee "every request either succeeds or raises a typed
``LlamafileError``, and none hangs" only means something under load and through a restart.
Each request has a hard bound (``HARD_BOUND`` s, far above the provider's timeouts); hitting it
is a hang and counts as lost, as does any exception that is not the package's.

Reported: succeeded, typed errors by class, lost (hung + untyped), wall time, RSS at start /
after warm-up / at end, open fds and threads before/after. Not a CI test: it takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamafile_provider.errors import LlamafileError
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.sync import SyncLlamafileProvider
from testbed import ensure_testbed
from testbed.server import RunningServer, ServerConfig, free_port, spawn, wait_ready

HARD_BOUND = 120.0
"""Seconds one request may take before it counts as hung: 4x the provider's timeout below."""
PROVIDER_OPTIONS: dict[str, Any] = {
    "timeout": 30.0, "connect_timeout": 2.0, "max_retries": 1, "startup_timeout": 20.0,
    "fix_failed_parse_tries": 1,
}
WARM_UP = 32
WEATHER: dict[str, Any] = {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}},
}
Progress = Callable[[str], None]


def rss_mb() -> float:
    """Resident set size of this process, from /proc (Linux only, like the test bed)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class Tally:
    """What happened to every request; shared by the async tasks and the sync threads."""

    succeeded: int = 0
    typed: Counter[str] = field(default_factory=Counter)
    untyped: Counter[str] = field(default_factory=Counter)
    hung: int = 0
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, outcome: str, name: str = "") -> None:
        with self.lock:
            self.done += 1
            if outcome == "ok":
                self.succeeded += 1
            elif outcome == "typed":
                self.typed[name] += 1
            elif outcome == "hung":
                self.hung += 1
            else:
                self.untyped[name] += 1


def messages(index: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": f"Request {index}: what is the weather in Paris?"}]


async def one_async(provider: LlamafileProvider, index: int) -> None:
    """One request of the kind its index picks (chat, tool call, count, stream every tenth)."""
    if index % 10 == 9:
        async for _ in provider.stream_chat_completion(messages(index), "smart", max_output_tokens=8):
            pass
    elif index % 3 == 0:
        await provider.create_chat_completion(messages(index), "smart", max_output_tokens=8)
    elif index % 3 == 1:
        await provider.create_chat_completion(messages(index), "smart", max_output_tokens=64,
                                              functions=[WEATHER], tool_choice="required")
    else:
        await provider.acount_message_tokens(messages(index), "smart")


def one_sync(provider: SyncLlamafileProvider, index: int) -> None:
    if index % 2:
        provider.count_message_tokens(messages(index), "smart")
    else:
        provider.create_chat_completion(messages(index), "smart", max_output_tokens=8)


async def bounded(tally: Tally, request: Any) -> None:
    """Await one request under the hard bound and classify its outcome."""
    try:
        await asyncio.wait_for(request, HARD_BOUND)
    except asyncio.TimeoutError:
        tally.record("hung")
    except LlamafileError as exc:
        tally.record("typed", type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - an untyped escape is exactly what the soak counts
        tally.record("untyped", type(exc).__name__)
    else:
        tally.record("ok")


class Soak:
    """The server, the shared request counter and the restart in the middle."""

    def __init__(self, requests: int, progress: Progress) -> None:
        self.requests = requests
        self.progress = progress
        self.next_index = 0
        self.tally = Tally()
        self.binary, models = ensure_testbed()
        self.config = ServerConfig(model=models["chatml"], ctx_size=4096, slots=4)
        self.port = free_port()
        self.server = self._start()
        self.restart_seconds = 0.0

    def _start(self) -> RunningServer:
        server = spawn(self.binary, self.config, port=self.port)
        wait_ready(server)
        return server

    def take(self) -> int | None:
        """The next request index, or None when all have been handed out."""
        with self.tally.lock:
            if self.next_index >= self.requests:
                return None
            self.next_index += 1
            return self.next_index - 1

    async def async_client(self, provider: LlamafileProvider) -> None:
        while (index := self.take()) is not None:
            await bounded(self.tally, one_async(provider, index))

    async def sync_client(self) -> None:
        """A blocking facade on a worker thread; wait_for bounds it (a hung thread stays hung)."""
        provider = SyncLlamafileProvider(smart_llm_url=[self.url], fast_llm_url=[self.url], **PROVIDER_OPTIONS)
        try:
            while (index := self.take()) is not None:
                await bounded(self.tally, asyncio.to_thread(one_sync, provider, index))
        finally:
            await asyncio.to_thread(provider.close)

    async def restart_midway(self) -> None:
        """Stop the server once half the requests are done, and start it again on the same port."""
        while self.tally.done < self.requests // 2:
            await asyncio.sleep(0.05)
        self.progress(f"[soak] stopping the server at {self.tally.done} done")
        started = time.perf_counter()
        await asyncio.to_thread(self.server.stop)
        await asyncio.sleep(1.0)  # requests sent now meet a closed port
        self.server = await asyncio.to_thread(self._start)
        self.restart_seconds = time.perf_counter() - started
        self.progress(f"[soak] server back after {self.restart_seconds:.1f}s, {self.tally.done} done")

    async def report_progress(self) -> None:
        while self.tally.done < self.requests:
            await asyncio.sleep(5.0)
            self.progress(f"[soak] {self.tally.done}/{self.requests} done, {self.tally.succeeded} ok")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def run(requests: int = 1000, clients: int = 16, sync_clients: int = 2,
              progress: Progress = lambda line: None) -> dict[str, Any]:
    """The soak itself; returns every figure the summary prints."""
    soak = Soak(requests, progress)
    try:
        fds_before, threads_before, rss_start = open_fds(), threading.active_count(), rss_mb()
        started = time.perf_counter()
        async with LlamafileProvider(smart_llm_url=[soak.url], fast_llm_url=[soak.url],
                                     **PROVIDER_OPTIONS) as provider:
            soak.requests = min(WARM_UP, requests)
            await asyncio.gather(*(soak.async_client(provider) for _ in range(clients)))
            rss_warm = rss_mb()
            progress(f"[soak] warm-up done ({soak.tally.done} requests), RSS {rss_warm:.1f} MB")
            soak.requests = requests
            await asyncio.gather(soak.restart_midway(), soak.report_progress(),
                                 *(soak.async_client(provider) for _ in range(clients)),
                                 *(soak.sync_client() for _ in range(sync_clients)))
        wall = time.perf_counter() - started
        # to_thread's pool (the sync clients' threads) is asyncio's, not ours: shut it so what
        # is left is what the provider left.
        await asyncio.get_running_loop().shutdown_default_executor()
        fds_after, threads_after, rss_end = open_fds(), threading.active_count(), rss_mb()
    finally:
        soak.server.stop()
    tally = soak.tally
    return {
        "requests": requests, "clients": clients, "sync_clients": sync_clients,
        "succeeded": tally.succeeded, "typed_errors": dict(tally.typed), "untyped_errors": dict(tally.untyped),
        "hung": tally.hung, "lost": tally.hung + sum(tally.untyped.values()),
        "accounted": tally.done, "wall_s": round(wall, 2), "restart_s": round(soak.restart_seconds, 2),
        "rss_start_mb": round(rss_start, 1), "rss_warm_mb": round(rss_warm, 1), "rss_end_mb": round(rss_end, 1),
        "rss_growth_mb": round(rss_end - rss_warm, 1), "fds_before": fds_before, "fds_after": fds_after,
        "threads_before": threads_before, "threads_after": threads_after,
    }


async def measure(progress: Progress) -> dict[str, float]:
    """The soak's headline figures for bench/run.py (the full 1,000 x 16 run)."""
    result = await run(progress=progress)
    return {"soak_lost": float(result["lost"]), "soak_succeeded": float(result["succeeded"]),
            "soak_typed_errors": float(sum(result["typed_errors"].values())),
            "soak_rss_growth_mb": float(result["rss_growth_mb"]), "soak_wall_s": float(result["wall_s"]),
            "soak_fd_growth": float(result["fds_after"] - result["fds_before"])}


def markdown(result: dict[str, Any]) -> str:
    typed = ", ".join(f"{name} {count}" for name, count in sorted(result["typed_errors"].items())) or "none"
    untyped = ", ".join(f"{name} {count}" for name, count in sorted(result["untyped_errors"].items())) or "none"
    rows = [
        ("requests / async clients / sync clients",
         f"{result['requests']} / {result['clients']} / {result['sync_clients']}"),
        ("succeeded", result["succeeded"]), ("typed errors", typed), ("untyped errors (lost)", untyped),
        ("hung (lost)", result["hung"]), ("**lost**", f"**{result['lost']}**"),
        ("accounted for", result["accounted"]), ("wall time", f"{result['wall_s']} s"),
        ("server restart (stop to ready)", f"{result['restart_s']} s"),
        ("RSS start / after warm-up / end",
         f"{result['rss_start_mb']} / {result['rss_warm_mb']} / {result['rss_end_mb']} MB"),
        ("RSS growth after warm-up", f"{result['rss_growth_mb']} MB"),
        ("open fds before / after", f"{result['fds_before']} / {result['fds_after']}"),
        ("threads before / after", f"{result['threads_before']} / {result['threads_after']}"),
    ]
    return "\n".join(["| soak | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--sync-clients", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="also print one JSON object on the last line")
    args = parser.parse_args(argv)
    # Each request failed while the server is down logs a warning; the tally is the report.
    logging.basicConfig(level=logging.ERROR)
    result = asyncio.run(run(args.requests, args.clients, args.sync_clients,
                             progress=lambda line: print(line, file=sys.stderr, flush=True)))
    print(markdown(result))
    if args.json:
        print(json.dumps(result))
    return 0 if result["lost"] == 0 and result["accounted"] == result["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
