"""One connection set per server URL and one HTTP client per server, on real test-bed servers."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from pytest_httpx import HTTPXMock

from llamafile_provider.provider import LlamafileProvider
from testbed.server import RunningServer

pytestmark = pytest.mark.server

HI = [{"role": "user", "content": "hi"}]


async def test_a_url_shared_by_smart_and_fast_is_one_server_with_usage_per_alias(
        chatml_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[openai.AsyncOpenAI] = []
    original = openai.AsyncOpenAI.__init__

    def counting(self: openai.AsyncOpenAI, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(openai.AsyncOpenAI, "__init__", counting)
    async with LlamafileProvider(api_base=chatml_server.base_url + "/v1") as provider:
        assert len(made) == 1
        assert provider.router.groups["smart"][0] is provider.router.groups["fast"][0]
        await provider.create_chat_completion(HI, "smart", max_output_tokens=4)
        await provider.create_chat_completion(HI, "fast", max_output_tokens=4)
        assert [t async for t in provider.stream_chat_completion(HI, "fast", max_output_tokens=4)]
        assert {m.alias for m in await provider.get_available_models()} == {"smart", "fast"}
    assert provider.usage_by_model["smart"].requests == 1
    assert provider.usage_by_model["fast"].requests == 2


async def test_edge_and_sdk_requests_share_one_client(chatml_server: RunningServer) -> None:
    """Probe, tokenize and chat all go through the server's one pool (one timeout/retry policy)."""
    paths: list[str] = []

    async def record(request: httpx.Request) -> None:
        paths.append(request.url.path)

    async with LlamafileProvider(smart_llm_url=chatml_server.base_url, connect_timeout=2, timeout=30) as provider:
        server = provider.router.groups["smart"][0]
        server.http.event_hooks["request"].append(record)
        await provider.create_chat_completion(HI, max_output_tokens=4)
        await provider.acount_message_tokens(HI)
        assert server.http.timeout.connect == 2 and server.http.timeout.read == 30
    assert {"/props", "/tokenize", "/v1/chat/completions"} <= set(paths)
    assert server.http.is_closed


async def test_the_one_retry_policy_covers_embeddings(httpx_mock: HTTPXMock, mocked_llama_server: str) -> None:
    """A 503 is retried for embeddings as for chat (bodies as llama-server sends them)."""
    url = mocked_llama_server
    httpx_mock.add_response(url=url + "/v1/embeddings", status_code=503,
                            json={"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})
    httpx_mock.add_response(url=url + "/v1/embeddings", json={
        "object": "list", "model": "m", "usage": {"prompt_tokens": 1, "total_tokens": 1},
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}]})
    async with LlamafileProvider(fast_llm_url=url, max_retries=1) as provider:
        assert await provider.create_embedding("hello") == [[0.5, 0.25]]
    assert len(httpx_mock.get_requests(url=url + "/v1/embeddings")) == 2
