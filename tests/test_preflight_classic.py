"""Context pre-flight on the real classic server (llama.cpp b2282, what llamafile 0.8-0.9
serve): it answers an oversized prompt after silently cutting it; the provider refuses it first."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from llamafile_provider.errors import ContextOverflowError
from llamafile_provider.provider import LlamafileProvider
from testbed.server import RunningServer, ServerConfig, ServerPool

pytestmark = pytest.mark.classic

SLOT = 512
LONG = [{"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "tell me about the weather " * 200}]


@pytest.fixture(scope="module")
def small_classic(classic_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    try:
        return classic_pool.get(ServerConfig(model=models["chatml"], classic=True, ctx_size=SLOT * 2, slots=2))
    except Exception as exc:  # noqa: BLE001 - turned into a loud test failure
        pytest.fail(f"could not start the classic b2282 server: {exc}", pytrace=False)


def test_the_classic_server_itself_truncates_silently(small_classic: RunningServer) -> None:
    """Why the check must be client-side: the raw request is answered, with the prompt cut."""
    body = {"messages": LONG, "max_tokens": 4}
    answer = httpx.post(small_classic.base_url + "/v1/chat/completions", json=body, timeout=60)
    assert answer.status_code == 200
    assert answer.json()["usage"]["prompt_tokens"] < SLOT


async def test_the_provider_refuses_it_before_sending(small_classic: RunningServer) -> None:
    async with LlamafileProvider(smart_llm_url=small_classic.base_url, startup_timeout=0) as provider:
        sent: list[bytes] = []  # chat bodies (the layout probe sends a small one of its own)

        async def record(request: httpx.Request) -> None:
            if request.url.path in ("/v1/chat/completions", "/completion"):
                sent.append(request.content)

        provider.router.groups["smart"][0].http.event_hooks["request"].append(record)
        with pytest.raises(ContextOverflowError, match="classic: 512 tokens per slot") as caught:
            await provider.create_chat_completion(LONG, max_output_tokens=4)
        assert caught.value.prompt_tokens and caught.value.prompt_tokens > SLOT
        assert not any(b"about the weather" in body for body in sent)
        fitting = await provider.create_chat_completion([{"role": "user", "content": "hi"}], max_output_tokens=4)
    assert fitting.usage.prompt_tokens < SLOT
