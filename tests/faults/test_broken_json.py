"""Malformed, truncated and non-object JSON replies, from a loopback server that plays a broken
llama-server (its probe answers normally unless the test breaks it)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from llamafile_provider.errors import MalformedResponseError, ServerUnreachableError
from llamafile_provider.provider import LlamafileProvider

from .support import HI, Loopback, Route, check_fault, reply

BROKEN: dict[str, Route] = {
    "malformed": reply(200, b'{"choices": [{"message": {"content": "hi"'),
    "truncated": reply(200, b'{"choices": [', declared_length=4096),  # the connection closes early
    "non-object": reply(200, [1, 2, 3]),
}


async def open_and_chat(url: str) -> None:
    async with LlamafileProvider(smart_llm_url=url, max_retries=0, startup_timeout=0) as llm:
        await llm.create_chat_completion(HI)


@pytest.mark.parametrize("kind", ["malformed", "non-object"])
async def test_a_broken_chat_reply_is_a_malformed_response_error(loopback: Callable[..., Loopback],
                                                                 kind: str) -> None:
    server = loopback({"/v1/chat/completions": BROKEN[kind]})
    error = await check_fault(lambda: open_and_chat(server.url), MalformedResponseError)
    assert server.url in str(error)


@pytest.mark.parametrize("kind", ["malformed", "non-object"])
async def test_a_broken_probe_is_a_malformed_response_error(loopback: Callable[..., Loopback], kind: str) -> None:
    server = loopback({"/props": BROKEN[kind]})
    error = await check_fault(lambda: open_and_chat(server.url), MalformedResponseError)
    assert server.url + "/props" in str(error) and "LLAMAFILE_SMART_LLM_URL" in str(error)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/props"])
async def test_a_reply_cut_off_after_its_headers_says_the_server_went_away(loopback: Callable[..., Loopback],
                                                                           path: str) -> None:
    """A body that stops short is a server that died mid-reply: unreachable (worth failing over), not
    "nothing answers", and the message points at the server's log."""
    server = loopback({path: BROKEN["truncated"]})
    error = await check_fault(lambda: open_and_chat(server.url), ServerUnreachableError)
    assert server.url in str(error) and "before its reply was complete" in str(error) and "log" in str(error)
