"""Retries and the cascade's fallback, where a real server cannot be made to misbehave on cue:
pytest-httpx with llama-server's own response bodies (the openai SDK 1.x/2.x speaks httpx)."""

from __future__ import annotations

import json

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


def tool_reply(arguments: str) -> dict[str, object]:
    call = {"id": "c", "type": "function", "function": {"name": "add", "arguments": arguments}}
    return {**REPLY, "choices": [{"index": 0, "finish_reason": "tool_calls",
                                  "message": {"role": "assistant", "content": "", "tool_calls": [call]}}]}


async def test_an_invalid_native_call_is_fed_back_with_the_call_itself(httpx_mock: HTTPXMock) -> None:
    tools_props = {**PROPS, "chat_template_caps": {"supports_system_role": True, "supports_tools": True,
                                                   "supports_tool_calls": True}}
    httpx_mock.add_response(url=URL + "/props", json=tools_props)
    httpx_mock.add_response(url=URL + "/v1/models", json={"data": [{"id": "m"}]})
    httpx_mock.add_response(url=URL + "/tokenize", json={"tokens": [1]}, is_reusable=True)
    httpx_mock.add_response(url=URL + "/v1/chat/completions", json=tool_reply('{"a": "one", "b": 2}'))
    httpx_mock.add_response(url=URL + "/v1/chat/completions", json=tool_reply('{"a": 1, "b": 2}'))
    add = {"name": "add", "parameters": {"type": "object", "required": ["a", "b"],
                                         "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}
    async with LlamafileProvider(smart_llm_url=URL) as provider:
        response = await provider.create_chat_completion([{"role": "user", "content": "1+2?"}], functions=[add],
                                                         tool_choice="required")
    assert response.tool_mode == "native" and response.message.tool_calls[0].function.arguments == {"a": 1, "b": 2}
    retry = json.loads(httpx_mock.get_requests(url=URL + "/v1/chat/completions")[1].content)["messages"]
    assert '"one"' in retry[-2]["content"]  # the model sees the call it got wrong
    assert "did not contain a valid tool call" in retry[-1]["content"] and "arguments.a" in retry[-1]["content"]
