"""Every benchmark in one run, against test-bed servers it starts itself.

    python -m bench.run                 a markdown table (machine info first)
    python -m bench.run --json          the same numbers as ONE JSON object, on the last stdout line
    python -m bench.run --only p1,p3    some sections only
    python -m bench.run --quick         fewer repetitions (a smoke run, not a result)

Progress goes to stderr: a full run takes minutes. Each section is
``async def measure(progress) -> dict[str, float]`` (``bench.common.Measure``) that starts and
stops its own servers; adding one is one line in ``SECTIONS``. A section that fails is reported
(stderr, and ``errors`` in the JSON) and the run exits 1, with the other sections' numbers kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence

from bench import bench_provider, bench_reuse, bench_spread, bench_tokenizer, bench_tool_calls, common
from bench.common import Measure

SECTIONS: list[tuple[str, Measure]] = [
    ("p1", bench_provider.measure_overhead),
    ("p2", bench_tokenizer.measure_counting),
    ("p3", bench_tokenizer.measure_exactness),
    ("p4", bench_tool_calls.measure),
    ("p5", bench_provider.measure_concurrency),
    ("p6", bench_reuse.measure),
    ("p8", bench_spread.measure),
]


def _progress(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def _first(path: str, prefix: str) -> str:
    """The value of the first ``prefix: value`` line of a /proc file, or "unknown"."""
    try:
        with open(path) as file:
            for line in file:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def llama_server_version() -> str:
    """What the test bed's llama-server says of itself (``--version``)."""
    from testbed import ensure_server  # builds it when missing, as every section would
    done = subprocess.run([str(ensure_server()), "--version"], capture_output=True, text=True, timeout=60)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("version")]
    return lines[0].removeprefix("version:").strip() if lines else "unknown"


def machine_info() -> dict[str, str]:
    """The machine the numbers were measured on: ratios travel, absolute times do not."""
    mem_kb = _first("/proc/meminfo", "MemTotal").split()[0]
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": str(os.cpu_count()),
        "ram_gb": f"{int(mem_kb) / 1024 ** 2:.1f}" if mem_kb.isdigit() else "unknown",
        "python": platform.python_version(),
        "os": platform.platform(),
        "llama_server": llama_server_version(),
    }


async def measure_all(sections: Sequence[tuple[str, Measure]]) -> tuple[dict[str, float], dict[str, str]]:
    """Run the sections one after the other; (their numbers, the errors of those that failed)."""
    results: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name, measure in sections:
        started = time.monotonic()
        _progress(f"{name}: starting")
        try:
            results.update(await measure(_progress))
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others' numbers
            errors[name] = f"{type(exc).__name__}: {exc}"
            _progress(f"{name}: FAILED\n{traceback.format_exc()}")
        _progress(f"{name}: done in {time.monotonic() - started:.0f}s")
    return results, errors


def markdown(machine: dict[str, str], results: dict[str, float], errors: dict[str, str]) -> str:
    """The machine, then one row per number, then the failed sections."""
    lines = ["| machine | |", "|---|---|", *(f"| {key} | {value} |" for key, value in machine.items()), "",
             "| key | value |", "|---|---|", *(f"| `{key}` | {value:g} |" for key, value in results.items())]
    if errors:
        lines += ["", "| failed section | error |", "|---|---|",
                  *(f"| {name} | {error.splitlines()[0] if error else ''} |" for name, error in errors.items())]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, sections: Sequence[tuple[str, Measure]] = SECTIONS,
         machine: dict[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object on the last stdout line")
    parser.add_argument("--only", default="", help="comma-separated section names, e.g. p1,p3")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (not a result)")
    args = parser.parse_args(argv)
    known = [name for name, _ in sections]
    wanted = [name.strip() for name in args.only.split(",") if name.strip()] or known
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; the sections are {', '.join(known)}")
    common.QUICK = args.quick
    machine = machine if machine is not None else machine_info()
    results, errors = asyncio.run(measure_all([(n, m) for n, m in sections if n in wanted]))
    if args.json:
        ran = [name for name in known if name in wanted]
        print(json.dumps({"machine": machine, "quick": args.quick, "sections": ran, **results, "errors": errors}))
    else:
        print(markdown(machine, results, errors))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
