"""Llamafiler and llamafile-only classic behaviour, which cannot run here: pytest-httpx with
response bodies taken from llamafile 0.9.3's source (llama.cpp/server/server.cpp,
llamafile/server/*.cpp). The classic dialect itself runs on the real b2282 server (tests/classic/)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytest_httpx import HTTPXMock

from llamafile_provider.dialects import Dialect, error_from_response, normalize_base_url
from llamafile_provider.errors import (
    AuthenticationError,
    ConfigurationError,
    ContextOverflowError,
    RequestRejectedError,
    ServerInternalError,
    ServerLoadingError,
    TemplateError,
    UnsupportedFeatureError,
)
from llamafile_provider.server import AsyncServerClient, ServerClient
from llamafile_provider.tokenizer import AsyncTokenizer, Tokenizer

URL = "http://127.0.0.1:8080"

# classic `llamafile --server`: nlohmann JSON (alphabetical keys), Server: llama.cpp
CLASSIC_HEADERS = {"Server": "llama.cpp", "Content-Type": "application/json; charset=utf-8"}
CLASSIC_PROPS = {
    "assistant_name": "",
    "default_generation_settings": {"n_ctx": 2048, "n_predict": -1, "model": "mistral-7b-instruct-v0.2.Q4_0.gguf",
                                    "seed": -1, "temperature": 0.8, "stop": [], "stream": False},
    "total_slots": 4,
    "user_name": "",
}
CLASSIC_MODELS = {"data": [{"created": 1716000000, "id": "mistral-7b-instruct-v0.2.Q4_0.gguf",
                            "object": "model", "owned_by": "llamacpp"}], "object": "list"}

# llamafiler: Server: llamafile/0.9.3, no /props, pieces from /tokenize, plain-text errors
LLAMAFILER_HEADERS = {"Server": "llamafile/0.9.3"}
LLAMAFILER_MODELS = {"data": [{"created": 1716000000, "id": "Llama-3.2-1B-Instruct.Q6_K",
                               "object": "model", "owned_by": "llamafile"}], "object": "list"}


def classic(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL + "/props", json=CLASSIC_PROPS, headers=CLASSIC_HEADERS)
    httpx_mock.add_response(url=URL + "/v1/models", json=CLASSIC_MODELS, headers=CLASSIC_HEADERS)


def llamafiler(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL + "/props", status_code=404, text="Not Found\r\n", headers=LLAMAFILER_HEADERS)
    httpx_mock.add_response(url=URL + "/v1/models", json=LLAMAFILER_MODELS, headers=LLAMAFILER_HEADERS)


# Classic detection, /tokenize, exact counts and the plain-text 401 run on the real b2282 server:
# tests/classic/. Here only what b2282 cannot show: a layout that only llamafile 0.9 has.

def test_classic_count_is_an_estimate_and_says_so_when_no_known_layout_matches(
        httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture) -> None:
    """llamafile 0.9's core knows layouts b2282 has not (vicuna here); its /slots shows the prompt."""
    classic(httpx_mock)
    httpx_mock.add_response(url=URL + "/v1/chat/completions", headers=CLASSIC_HEADERS, json={
        "choices": [{"finish_reason": "stop", "index": 0, "message": {"content": "A", "role": "assistant"}}],
        "created": 1716000000, "id": "chatcmpl-x", "model": "unknown", "object": "chat.completion",
        "usage": {"completion_tokens": 1, "prompt_tokens": 30, "total_tokens": 31}})

    def slots(request: httpx.Request) -> httpx.Response:
        nonce = json.loads(httpx_mock.get_requests(url=URL + "/v1/chat/completions")[0].content)["messages"][0]
        prompt = f"{nonce['content']}\n\nUSER:  hi \nASSISTANT:  ok </s>\nUSER: go\nASSISTANT:"
        return httpx.Response(200, json=[{"id": 0, "prompt": prompt, "state": 0}], headers=CLASSIC_HEADERS)

    httpx_mock.add_callback(slots, url=URL + "/slots")
    httpx_mock.add_response(url=URL + "/tokenize", json={"tokens": list(range(9))}, headers=CLASSIC_HEADERS)
    with caplog.at_level(logging.WARNING):
        count = Tokenizer(ServerClient(URL)).count_message_tokens([{"role": "user", "content": "hi"}])
    assert count == 10  # the ChatML estimate, BOS counted
    assert "does not know" in caplog.text and "estimates" in caplog.text


def test_classic_exception_500_is_internal(httpx_mock: HTTPXMock) -> None:
    text = "500 Internal Server Error\n[json.exception.parse_error.101] parse error at line 1, column 1"
    error = error_from_response(httpx.Response(500, text=text), URL, Dialect.CLASSIC)
    assert isinstance(error, ServerInternalError) and "parse error" in str(error)


def test_classic_missing_route_is_unsupported() -> None:
    error = error_from_response(httpx.Response(404, text="File Not Found"), URL, Dialect.CLASSIC)
    assert isinstance(error, UnsupportedFeatureError)


def test_llamafiler_is_detected_without_props(httpx_mock: HTTPXMock) -> None:
    llamafiler(httpx_mock)
    info = ServerClient(URL).info()
    assert info.dialect is Dialect.LLAMAFILER
    assert info.model_id == "Llama-3.2-1B-Instruct.Q6_K"
    assert info.context_size is None and info.server_header == "llamafile/0.9.3"


def test_llamafiler_counts_pieces_but_cannot_give_ids(httpx_mock: HTTPXMock) -> None:
    llamafiler(httpx_mock)
    httpx_mock.add_response(
        url=URL + "/tokenize", headers={**LLAMAFILER_HEADERS, "Content-Type": "application/json"},
        text='{\n  "add_special": false,\n  "parse_special": true,\n  "tokens": [\n    "Hello",\n    " world"\n  ]\n}\n')
    tokenizer = Tokenizer(ServerClient(URL))
    assert tokenizer.count_tokens("Hello world") == 2
    sent = json.loads(httpx_mock.get_requests(url=URL + "/tokenize")[0].content)
    assert sent == {"prompt": "Hello world", "add_special": False, "parse_special": True}
    with pytest.raises(UnsupportedFeatureError, match="pieces, not ids"):
        tokenizer.encode("Hello world")
    with pytest.raises(UnsupportedFeatureError, match="no /detokenize"):
        tokenizer.decode([1, 2])


async def test_llamafiler_async_count(httpx_mock: HTTPXMock) -> None:
    llamafiler(httpx_mock)
    httpx_mock.add_response(url=URL + "/tokenize", json={"tokens": ["<s>", "a", "b"]})
    async with AsyncServerClient(URL) as client:
        assert await AsyncTokenizer(client).count_message_tokens([{"role": "user", "content": "ab"}]) == 3


def test_llamafiler_readiness_uses_models_when_health_is_missing(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=URL + "/health")  # still loading: not bound
    httpx_mock.add_response(url=URL + "/health", status_code=404, text="Not Found\r\n", headers=LLAMAFILER_HEADERS)
    httpx_mock.add_response(url=URL + "/v1/models", json=LLAMAFILER_MODELS, headers=LLAMAFILER_HEADERS)
    llamafiler(httpx_mock)
    info = ServerClient(URL).wait_until_ready(timeout=5, interval=0.01)
    assert info.dialect is Dialect.LLAMAFILER


@pytest.mark.parametrize("reason", ["OpenAI tools field not supported yet",
                                    "OpenAI tool_choice field not supported yet"])
def test_llamafiler_rejected_fields_are_unsupported(reason: str) -> None:
    error = error_from_response(httpx.Response(400, text=reason + "\r\n"), URL, Dialect.LLAMAFILER)
    assert isinstance(error, UnsupportedFeatureError) and reason in str(error)


def test_llamafiler_context_overflow() -> None:
    response = httpx.Response(400, text="out_of_context_due_to_long_message\r\n")
    assert isinstance(error_from_response(response, URL, Dialect.LLAMAFILER), ContextOverflowError)


def test_llamafiler_other_400_is_a_rejected_request() -> None:
    response = httpx.Response(400, text="message role not system user assistant\r\n")
    error = error_from_response(response, URL, Dialect.LLAMAFILER)
    assert type(error) is RequestRejectedError and "message role" in str(error)


LLAMA_SERVER_ERRORS = [
    (401, {"error": {"message": "Invalid API Key", "type": "authentication_error", "code": 401}}, AuthenticationError),
    (503, {"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}}, ServerLoadingError),
    (400, {"error": {"code": 400, "message": "request (9000 tokens) exceeds the available context size "
                     "(8192 tokens), try increasing it", "type": "exceed_context_size_error",
                     "n_prompt_tokens": 9000, "n_ctx": 8192}}, ContextOverflowError),
    (500, {"error": {"code": 500, "message": "Jinja Exception: Conversation roles must alternate",
                     "type": "server_error"}}, TemplateError),
    (501, {"error": {"code": 501, "message": "This server does not support embeddings. Start it with "
                     "`--embeddings`", "type": "not_supported_error"}}, UnsupportedFeatureError),
    (500, {"error": {"code": 500, "message": "tools param requires --jinja flag", "type": "server_error"}},
     UnsupportedFeatureError),
]


@pytest.mark.parametrize(("status", "body", "kind"), LLAMA_SERVER_ERRORS)
def test_llama_server_error_envelopes(status: int, body: dict[str, object], kind: type[Exception]) -> None:
    error = error_from_response(httpx.Response(status, json=body), URL, Dialect.LLAMA_SERVER)
    assert type(error) is kind
    assert error.status_code == status and error.url == URL


def test_overflow_sizes_come_from_the_envelope() -> None:
    body = LLAMA_SERVER_ERRORS[2][1]
    error = error_from_response(httpx.Response(400, json=body), URL, Dialect.LLAMA_SERVER)
    assert isinstance(error, ContextOverflowError)
    assert (error.prompt_tokens, error.context_size) == (9000, 8192)


@pytest.mark.parametrize(("given_url", "expected"), [
    ("http://localhost:8081/v1", "http://localhost:8081"),
    ("http://localhost:8081/v1/", "http://localhost:8081"),
    ("http://localhost:8081///", "http://localhost:8081"),
    ("  https://gpu-box:443/llm/v1 ", "https://gpu-box:443/llm"),
    ("http://[::1]:8080/v1", "http://[::1]:8080"),
    ("http://127.0.0.1:1/v1x", "http://127.0.0.1:1/v1x"),
])
def test_base_url_spellings(given_url: str, expected: str) -> None:
    assert normalize_base_url(given_url) == expected


@pytest.mark.parametrize("bad", ["localhost:8080", "ftp://x:1", "http://", "http://host:99999/v1", ""])
def test_bad_urls_are_configuration_errors(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="URL|port"):
        normalize_base_url(bad)


@given(st.integers(min_value=1, max_value=65535), st.sampled_from(["", "/", "/v1", "/v1/", "/v1//"]))
def test_the_port_always_survives(port: int, suffix: str) -> None:
    assert normalize_base_url(f"http://localhost:{port}{suffix}") == f"http://localhost:{port}"
