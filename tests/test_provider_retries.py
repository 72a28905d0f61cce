"""Retries and the cascade's fallback, where a real server cannot be made to misbehave on cue:
pytest-httpx with llama-server's own response bodies (the openai SDK 1.x/2.x speaks httpx)."""

from __future__ import annotations

import httpx
import pytest
from pytest_httpx import HTTPXMock

from llamafile_provider.errors import RequestRejectedError
from llamafile_provider.provider import LlamafileProvider

URL = "http://127.0.0.1:9"
PROPS = {"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}", "bos_token": "<s>",
         "eos_token": "</s>", "total_slots": 1, "default_generation_settings": {"n_ctx": 4096},
         "chat_template_caps": {"supports_system_role": True}}
REPLY = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
         "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
         "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}


def probe(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL + "/props", json=PROPS)
    httpx_mock.add_response(url=URL + "/v1/models", json={"data": [{"id": "m"}]})
    httpx_mock.add_response(url=URL + "/tokenize", json={"tokens": [1]}, is_reusable=True)


async def test_503_is_retried_with_backoff(httpx_mock: HTTPXMock) -> None:
    probe(httpx_mock)
    httpx_mock.add_response(url=URL + "/v1/chat/completions", status_code=503, json=LOADING)
    httpx_mock.add_response(url=URL + "/v1/chat/completions", json=REPLY)
    async with LlamafileProvider(smart_llm_url=URL, max_retries=2) as provider:
        response = await provider.create_chat_completion([{"role": "user", "content": "hi"}])
    assert response.message.content == "hi"
    assert len(httpx_mock.get_requests(url=URL + "/v1/chat/completions")) == 2


async def test_connection_errors_are_retried(httpx_mock: HTTPXMock) -> None:
    probe(httpx_mock)
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=URL + "/v1/chat/completions")
    httpx_mock.add_response(url=URL + "/v1/chat/completions", json=REPLY)
    async with LlamafileProvider(smart_llm_url=URL, max_retries=1) as provider:
        assert (await provider.create_chat_completion([{"role": "user", "content": "hi"}])).usage.prompt_tokens == 3


async def test_other_4xx_are_not_retried(httpx_mock: HTTPXMock) -> None:
    probe(httpx_mock)
    httpx_mock.add_response(url=URL + "/v1/chat/completions", status_code=400,
                            json={"error": {"code": 400, "message": "bad stop", "type": "invalid_request_error"}})
    async with LlamafileProvider(smart_llm_url=URL, max_retries=3) as provider:
        with pytest.raises(RequestRejectedError, match="bad stop"):
            await provider.create_chat_completion([{"role": "user", "content": "hi"}])
    assert len(httpx_mock.get_requests(url=URL + "/v1/chat/completions")) == 1
