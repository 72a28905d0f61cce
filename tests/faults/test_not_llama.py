"""A port where some other HTTP server listens (not llama): the provider says so, clearly."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from llamafile_provider.errors import MalformedResponseError
from llamafile_provider.provider import LlamafileProvider

from .support import HI, Loopback, check_fault, reply

HTML = "<!DOCTYPE html><html><body><h1>It works!</h1></body></html>"


@pytest.mark.parametrize("answer", ["404 everywhere", "HTML everywhere"])
async def test_another_http_server_is_named_as_not_a_llama_server(loopback: Callable[..., Loopback],
                                                                  answer: str) -> None:
    page = reply(200, HTML, content_type="text/html")
    server = loopback({} if answer == "404 everywhere" else {p: page for p in ("/props", "/v1/models", "/health")},
                      probe=False)

    async def fault() -> None:
        async with LlamafileProvider(smart_llm_url=server.url, max_retries=0, startup_timeout=0) as llm:
            await llm.create_chat_completion(HI)

    error = await check_fault(fault, MalformedResponseError)
    assert server.url in str(error) and "/props" in str(error) and "llamafile or llama.cpp server" in str(error)
    assert "LLAMAFILE_SMART_LLM_URL" in str(error)
