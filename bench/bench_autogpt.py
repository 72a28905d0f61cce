"""Benchmark: AutoGPT classic's agent loop on a REAL small model, ours vs AutoGPT's own provider.

    AUTOGPT_SOURCE=../shared/autogpt/autogpt-classic-c6703dd8.tar.gz \\
        python -m bench.bench_autogpt [--model gemma3|smollm2] [--cycles 3] [--builtin-budget 300]

One llama-server (the test bed's, 1 slot, 8192 context, ``--metrics``) serves the real model from
PyPI (``testbed.real_models``; Gemma 3 270M with its own template by default). AutoGPT classic
(installed from ``AUTOGPT_SOURCE``, this checkout's wheel in it) then runs the same task, the
same ``--continuous-limit``, on that same server, twice, one after the other:

* ``ours``: ``SMART_LLM`` / ``FAST_LLM`` = the server's model id, ``LLAMAFILE_API_BASE`` = the URL;
* ``builtin``: ``LLAMAFILE_AUTOGPT=off`` (AutoGPT's own llamafile provider), the one model name
  it knows. The server's ``--alias`` is ``mistral-7b-instruct-v0.2.Q4_K_M.gguf`` so that the
  built-in provider's ``clean_model_name`` recognises it (else it falls back to OpenAI and dies),
  and the port never ends in "1" (its ``api_base.strip("/v1")`` would eat that digit).

Per provider: cycles completed (AutoGPT's NEXT ACTION lines), parse failures, seconds, seconds per
completed cycle and output tokens per cycle (``llamacpp:tokens_predicted_total`` before/after).
The built-in run is bounded by ``--builtin-budget`` seconds; when it completes no cycle, the
speed-up is reported as a lower bound (budget / ours per cycle). Commands that would reach the
network or run code are disabled (``testbed.autogpt_env.DISABLED_COMMANDS``). Also: the median
cost of the activation .pth at interpreter start (``-X importtime``, target < 1 ms). Goal: every
cycle completes, ours >= 10x faster per completed cycle. Printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from testbed import ensure_server
from testbed.autogpt_env import AutoGPTEnv, build_wheel, ensure_autogpt_env, install_wheel, source_from_env
from testbed.real_models import REAL_MODELS, ensure_real_model
from testbed.server import RunningServer, ServerConfig, free_port, spawn, wait_ready

ROOT = Path(__file__).resolve().parents[1]
SHARED_TARBALL = ROOT.parent / "shared" / "autogpt" / "autogpt-classic-c6703dd8.tar.gz"
ALIAS = "mistral-7b-instruct-v0.2.Q4_K_M.gguf"
TASK = "Write the word hello into a file named hello.txt, then finish."
PREDICTED = re.compile(r"^llamacpp:tokens_predicted_total\s+(\S+)", re.MULTILINE)


def predicted_tokens(server: RunningServer) -> int:
    text = httpx.get(server.base_url + "/metrics", timeout=10).text
    match = PREDICTED.search(text)
    return int(float(match.group(1))) if match else 0


def hook_import_us(env: AutoGPTEnv, runs: int = 9) -> float:
    """Median cumulative import time of the .pth's module at interpreter start (``-X importtime``)."""
    times = []
    for _ in range(runs):
        done = subprocess.run([str(env.python), "-X", "importtime", "-c", "pass"], capture_output=True, text=True,
                              check=True)
        times += [int(line.split("|")[1]) for line in done.stderr.splitlines()
                  if line.rstrip().endswith("llamafile_provider_autogpt_hook")]
    return statistics.median(times)


def start_server(key: str) -> RunningServer:
    model = REAL_MODELS[key]
    extra = ["--alias", ALIAS, "--metrics"]
    if model.chat_template is not None:
        extra += ["--chat-template-file", str(model.chat_template)]
    config = ServerConfig(model=ensure_real_model(model), ctx_size=8192, slots=1, extra_args=tuple(extra))
    port = free_port()
    while str(port).endswith("1"):
        port = free_port()
    server = spawn(ensure_server(), config, port=port)
    wait_ready(server, timeout=120)
    return server


def measure(env: AutoGPTEnv, server: RunningServer, work: Path, name: str, dotenv: str, cycles: int,
            timeout: float, **values: str) -> dict[str, Any]:
    before = predicted_tokens(server)
    run = env.run(work / name, dotenv, TASK, cycles, timeout, debug=False, **values)
    produced = predicted_tokens(server) - before
    done = len(run.actions)
    return {
        "cycles_completed": done, "parse_failures": run.parse_failures, "seconds": round(run.seconds, 1),
        "stopped_by_time_bound": run.timed_out,
        "seconds_per_completed_cycle": round(run.seconds / done, 1) if done else None,
        "output_tokens": produced, "output_tokens_per_cycle": round(produced / done) if done else None,
        "actions": run.actions, "traceback": "Traceback" in run.output,
        "output_tail": [line[:200] for line in run.output.splitlines() if line.strip()][-8:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(REAL_MODELS), default="gemma3")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--builtin-budget", type=float, default=300.0)
    args = parser.parse_args(argv)
    load_start = round(os.getloadavg()[0], 1)
    env = ensure_autogpt_env(source_from_env() or SHARED_TARBALL, log=lambda m: print(m, file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="bench-autogpt-") as tmp:
        work = Path(tmp)
        install_wheel(env, build_wheel(ROOT, work), work)
        server = start_server(args.model)
        try:
            ours = measure(env, server, work, "ours", f"SMART_LLM={ALIAS}\nFAST_LLM={ALIAS}\n"
                           f"LLAMAFILE_API_BASE={server.base_url}\n", args.cycles, 240.0 * args.cycles)
            builtin = measure(env, server, work, "builtin", f"SMART_LLM=mistral-7b-instruct-v0.2\n"
                              f"FAST_LLM=mistral-7b-instruct-v0.2\nLLAMAFILE_API_BASE={server.base_url}/v1\n",
                              args.cycles, args.builtin_budget, LLAMAFILE_AUTOGPT="off")
        finally:
            server.stop()
    result: dict[str, Any] = {"model": args.model, "cycles_asked": args.cycles, "ours": ours, "builtin": builtin,
                              "hook_import_us_median": hook_import_us(env),
                              # the machine is shared: absolute times scale with its load, ratios less so
                              "load_average_1min_start_end": [load_start, round(os.getloadavg()[0], 1)]}
    per_cycle = ours["seconds_per_completed_cycle"]
    if per_cycle and builtin["seconds_per_completed_cycle"]:
        result["speedup_per_completed_cycle"] = round(builtin["seconds_per_completed_cycle"] / per_cycle, 1)
    elif per_cycle and builtin["stopped_by_time_bound"]:
        # The built-in provider finished no cycle within its budget: one cycle takes it longer.
        result["speedup_per_completed_cycle_at_least"] = round(builtin["seconds"] / per_cycle, 1)
    elif per_cycle:  # it ended (crashed, or gave up after parse failures) without any cycle
        result["speedup_per_completed_cycle"] = "builtin completed no cycle (ended on its own)"
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
