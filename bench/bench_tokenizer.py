"""Benchmark: prompt-token counting, this package vs the naive way, in one run.

    python -m bench.bench_tokenizer            (from the repository root, test bed built)

Measured on a real test-bed llama-server, with a ~2,500-token, 10-message conversation:

* cold: HTTP requests made by one ``count_message_tokens`` call on a fresh tokenizer;
* warm: calls per second when the same conversation is counted again and again;
* naive: one uncached ``/tokenize`` request per message (what AutoGPT classic's own
  llamafile provider does, though it also opens a new connection each time), calls per second;
* exactness: counts equal to the server's ``prompt_tokens``, over every test-bed template.

Targets (issue 3): cold = 1 request per call; warm >= 100x naive; exactness 100 %.
Printed as JSON; ratios, not absolute times, are what to compare across machines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

from llamafile_provider.server import ServerClient
from llamafile_provider.tokenizer import Tokenizer
from testbed import ensure_testbed
from testbed.server import ServerConfig, ServerPool

WORDS = "please help the agent search the web read a file write code then run the command and reply".split()


def conversation(n_messages: int = 10, words_per_message: int = 240) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": " ".join(WORDS[i % len(WORDS)] for i in range(words_per_message))}]
    for turn in range(1, n_messages):
        role = "user" if turn % 2 else "assistant"
        text = " ".join(WORDS[(i * 7 + turn) % len(WORDS)] for i in range(words_per_message))
        messages.append({"role": role, "content": f"turn {turn}: {text}"})
    return messages


def rate(call: Callable[[], object], seconds: float = 2.0) -> float:
    """Calls per second over roughly ``seconds``."""
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        call()
        calls += 1
    return calls / elapsed


def naive_count(http: httpx.Client, base_url: str, messages: list[dict[str, str]]) -> int:
    """One uncached request per message (on a kept-alive connection, to be fair to it)."""
    return sum(len(http.post(base_url + "/tokenize", json={"content": m["content"]}).json()["tokens"])
               for m in messages)


def main() -> None:
    binary, models = ensure_testbed()
    pool = ServerPool(binary)
    try:
        chatml = pool.get(ServerConfig(model=models["chatml"]))
        messages = conversation()

        requests: list[str] = []
        http = httpx.Client(event_hooks={"request": [lambda r: requests.append(r.url.path)]})
        tokenizer = Tokenizer(ServerClient(chatml.base_url, http_client=http))
        tokenizer.client.info()  # the one-time probe is not part of a counting call
        requests.clear()
        prompt_tokens = tokenizer.count_message_tokens(messages)
        cold_requests = len(requests)

        warm = rate(lambda: tokenizer.count_message_tokens(messages))
        with httpx.Client() as plain:
            naive = rate(lambda: naive_count(plain, chatml.base_url, messages))

        exact, total = 0, 0
        for name in ("mistral", "chatml", "llama3", "hermes"):
            server = pool.get(ServerConfig(model=models[name]))
            counter = Tokenizer(ServerClient(server.base_url))
            for size in (1, 2, 3, 6, 10):
                sample = conversation(size, 40)  # sizes 3, 10 end with an assistant prefill
                reply = httpx.post(server.base_url + "/v1/chat/completions",
                                   json={"messages": sample, "max_tokens": 1}, timeout=60).json()
                total += 1
                exact += counter.count_message_tokens(sample) == reply["usage"]["prompt_tokens"]

        print(json.dumps({
            "prompt_tokens": prompt_tokens,
            "messages": len(messages),
            "cold_requests_per_call": cold_requests,
            "warm_calls_per_s": round(warm, 1),
            "naive_calls_per_s": round(naive, 1),
            "warm_vs_naive": round(warm / naive, 1),
            "exact": f"{exact}/{total}",
            "targets": {"cold_requests_per_call": 1, "warm_vs_naive": ">= 100", "exact": "100 %"},
        }, indent=2))
    finally:
        pool.close()


if __name__ == "__main__":
    main()
