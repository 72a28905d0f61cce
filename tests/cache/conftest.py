"""Fixtures for the prompt-reuse tests: agent-shaped conversations and servers of our own.

Spread and stop tests need two equivalent servers nobody else uses (one is stopped mid-run),
so they get their own configurations (``--alias`` makes them distinct processes in the pool).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.server import RunningServer, ServerConfig, ServerPool

SYSTEM = ("You are an agent. Think step by step, pick one command, and report what you did. "
          "Commands: read_file, write_file, search, finish. ") * 4


def agent_step(step: int, session: str = "agent") -> list[dict[str, str]]:
    """The prompt of step ``step`` of a simulated agent loop: each step appends an assistant
    reply and a tool result, as AutoGPT's history does; earlier turns never change."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Task of {session}: tidy the files."}]
    for i in range(step):
        messages += [{"role": "assistant", "content": f"Step {i}: I will search the files."},
                     {"role": "user", "content": f"Result of search: file_{i}.txt found in folder {i}."}]
    return messages


def own_servers(pool: ServerPool, model: Path, name: str, count: int = 2) -> list[RunningServer]:
    """``count`` llama-servers of this test's own (4 slots each), started on first use."""
    try:
        return [pool.get(ServerConfig(model=model, extra_args=("--alias", f"{name}-{i}"))) for i in range(count)]
    except Exception as exc:  # noqa: BLE001 - turned into a loud test failure
        pytest.fail(f"could not start test-bed llama-servers: {exc}", pytrace=False)
