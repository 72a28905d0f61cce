"""What every ``bench.run`` section shares: its signature, repetition scale and test-bed servers.

A section is ``async def measure(progress) -> dict[str, float]``: it starts the servers it needs,
reports what it is doing through ``progress`` (stderr in ``bench.run``; the run takes minutes)
and returns flat, named numbers, so ``bench.run`` can put any section in one table and one JSON.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from testbed import ensure_classic_server, ensure_testbed
from testbed.real_models import REAL_MODELS, ensure_real_model
from testbed.server import ServerConfig, ServerPool

Progress = Callable[[str], None]
Measure = Callable[[Progress], Awaitable[dict[str, float]]]

TINY = ("mistral", "chatml", "llama3", "hermes")
# Set by ``bench.run --quick``: fewer repetitions, same code paths (a smoke run, not a result).
QUICK = False


def reps(full: int, quick: int) -> int:
    """How many repetitions this run makes of something measured ``full`` times normally."""
    return quick if QUICK else full


@contextmanager
def pool(classic: bool = False) -> Iterator[ServerPool]:
    """A pool of test-bed servers (llama-server, or the classic b2282 server), all stopped after."""
    binary, _ = ensure_testbed()
    servers = ServerPool(ensure_classic_server() if classic else binary)
    try:
        yield servers
    finally:
        servers.close()


def tiny_models() -> dict[str, Path]:
    """The tiny random-weight test-bed models, by template name."""
    return ensure_testbed()[1]


def real_config(key: str, slots: int = 1) -> ServerConfig:
    """How the tests serve a real PyPI model: its training context, its own template if it has one."""
    model = REAL_MODELS[key]
    extra = ("--chat-template-file", str(model.chat_template)) if model.chat_template else ()
    return ServerConfig(model=ensure_real_model(model), ctx_size=8192, slots=slots, extra_args=extra)


async def ticker(lags: list[float], stop: asyncio.Event, period: float = 0.005) -> None:
    """Record how late each ``period`` sleep wakes up: the event loop's lag while others run."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(period)
        lags.append(time.perf_counter() - started - period)


def run_alone(measure: Measure) -> None:
    """One section run on its own (``python -m bench.bench_x``): progress on stderr, its numbers
    as a markdown table on stdout."""
    result = asyncio.run(measure(lambda text: print(text, file=sys.stderr, flush=True)))
    print("| metric | value |\n|---|---|")
    for name, value in result.items():
        print(f"| {name} | {value} |")
