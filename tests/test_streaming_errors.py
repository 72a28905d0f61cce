"""Streams on real test-bed servers: a stream that breaks raises the package's error with the
text so far; stopping early closes the HTTP response; usage is counted however a stream ends."""

from __future__ import annotations

import asyncio
import gc
import json

import httpx
import pytest
from pytest_httpx import HTTPXMock

from llamafile_provider.errors import ServerError, ServerInternalError
from llamafile_provider.provider import LlamafileProvider
from testbed.server import RunningServer

HI = [{"role": "user", "content": "hi"}]
# ignore_eos keeps the tiny model talking, so a stream is long enough to be cut.
ENDLESS = {"max_output_tokens": 3000, "ignore_eos": True, "temperature": 0}

pytestmark = pytest.mark.server


def chat_responses(provider: LlamafileProvider) -> list[httpx.Response]:
    """The chat HTTP responses the provider's one client for "smart" receives from now on."""
    responses: list[httpx.Response] = []

    async def keep(response: httpx.Response) -> None:
        if response.url.path.endswith("/chat/completions"):
            responses.append(response)

    provider.router.groups["smart"][0].http.event_hooks["response"].append(keep)
    return responses


async def test_a_server_dying_mid_stream_raises_a_typed_error_with_the_partial_text(
        own_server: RunningServer) -> None:
    received: list[str] = []
    async with LlamafileProvider(smart_llm_url=own_server.base_url, max_retries=0, startup_timeout=0) as provider:
        with pytest.raises(ServerError) as caught:
            async for text in provider.stream_chat_completion(HI, **ENDLESS):
                received.append(text)
                if len(received) == 3:
                    own_server.process.kill()
        assert provider.usage.requests == 1  # counted although it broke
    assert len(received) >= 3
    assert caught.value.partial_text == "".join(received)
    assert caught.value.url == own_server.base_url
    assert "broke after" in str(caught.value) and "partial_text" in str(caught.value)


async def test_break_closes_the_http_stream_and_counts_the_request(chatml_server: RunningServer) -> None:
    async with LlamafileProvider(smart_llm_url=chatml_server.base_url) as provider:
        responses = chat_responses(provider)
        async for _ in provider.stream_chat_completion(HI, **ENDLESS):
            break
        gc.collect()
        for _ in range(20):  # the loop finalizes the abandoned generator on its next turns
            await asyncio.sleep(0.01)
        assert len(responses) == 1 and responses[0].is_closed
        assert provider.usage.requests == 1


async def test_aclose_closes_the_http_stream(chatml_server: RunningServer) -> None:
    async with LlamafileProvider(smart_llm_url=chatml_server.base_url) as provider:
        responses = chat_responses(provider)
        stream = provider.stream_chat_completion(HI, **ENDLESS)
        assert await stream.__anext__()
        await stream.aclose()
        assert responses[0].is_closed
        assert provider.usage_by_model["smart"].requests == 1


async def test_usage_is_counted_when_the_server_sends_it(chatml_server: RunningServer) -> None:
    async with LlamafileProvider(smart_llm_url=chatml_server.base_url) as provider:
        text = "".join([t async for t in provider.stream_chat_completion(HI, max_output_tokens=8)])
        counted = await provider.acount_message_tokens(HI)
    assert text
    assert provider.usage.requests == 1 and provider.usage.prompt_tokens == counted
    assert 0 < provider.usage.completion_tokens <= 8


async def test_an_error_event_mid_stream_is_typed(httpx_mock: HTTPXMock, mocked_llama_server: str) -> None:
    """llama-server reports a failure after streaming began as ``data: {"error": {...}}``
    (format_oai_sse in its server-context.cpp); no real server fails on cue, so the body is replayed."""
    url = mocked_llama_server
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]}
    error = {"code": 500, "message": "llama_decode failed", "type": "server_error"}
    body = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps({'error': error})}\n\n".encode()
    httpx_mock.add_response(url=url + "/v1/chat/completions", content=body,
                            headers={"content-type": "text/event-stream"})
    async with LlamafileProvider(smart_llm_url=url) as provider:
        with pytest.raises(ServerInternalError, match="llama_decode failed") as caught:
            async for _ in provider.stream_chat_completion(HI):
                pass
    assert caught.value.partial_text == "Hello"
