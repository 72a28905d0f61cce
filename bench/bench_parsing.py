"""Benchmark: tolerant tool-call parsing on adversarial replies, in one run (no server needed).

    python -m bench.bench_parsing            (from the repository root)

For each shape a small model (or an attacker) can write, the time to parse n and 4n characters,
measured side by side; a linear parser shows ratios near 4, a quadratic one near 16. Also the
6,000-``{`` reply of issue 8 (3.3 s with the old parser, on the event loop). Printed as JSON;
ratios, not absolute times, are what to compare across machines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from llamafile_provider.messages import FunctionSpec
from llamafile_provider.parsing import parse_tool_calls

ADD = FunctionSpec(name="add", parameters={"type": "object", "properties": {"a": {"type": "integer"}}})
CALL = '{"name": "add", "arguments": {"a": 1}}'
SHAPES: dict[str, Callable[[int], str]] = {
    "open braces": lambda n: "{" * n,
    "nested lists": lambda n: "[" * (n // 2) + "]" * (n // 2),
    "open keys": lambda n: '{"a":' * (n // 5),
    "quotes after braces": lambda n: "{'" * (n // 2),
    "broken calls": lambda n: '{"name": "add", "arguments": {"a": 1 "b": 2}} ' * (n // 46),
    "good calls": lambda n: (CALL + "\n") * (n // 38),
    "prose with brackets": lambda n: "I'll think [about it], ok? " * (n // 27),
}


def _seconds(text: str, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        parse_tool_calls(text, [ADD])
        best = min(best, time.perf_counter() - start)
    return best


def main(n: int = 6000) -> dict[str, object]:
    ratios = {name: round(_seconds(shape(4 * n)) / max(_seconds(shape(n)), 1e-9), 2) for name, shape in SHAPES.items()}
    return {"n": n, "time_ratio_4n_over_n": ratios, "max_ratio": max(ratios.values()),
            "six_thousand_braces_ms": round(_seconds("{" * 6000) * 1000, 1)}


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
