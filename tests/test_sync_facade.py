"""The blocking facade for scripts that are not async, on real test-bed servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llamafile_provider import sync
from llamafile_provider.errors import ConfigurationError
from llamafile_provider.sync import SyncLlamafileProvider, complete
from testbed.server import RunningServer

pytestmark = pytest.mark.server

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def fresh_shared_facade() -> Iterator[None]:
    """``complete()`` keeps one facade per process; each test starts without one."""
    sync._shared = None
    yield
    if sync._shared is not None:
        sync._shared.close()
    sync._shared = None


def test_a_plain_script_loop(chatml_server: RunningServer) -> None:
    """A BabyAGI-style loop: many blocking calls on one facade, one loop, reused connections."""
    with SyncLlamafileProvider(api_base=chatml_server.base_url) as llm:
        for _ in range(5):
            reply = llm.create_chat_completion(HI, max_output_tokens=4)
            assert reply.usage.prompt_tokens == llm.count_message_tokens(HI)
        assert isinstance(llm.complete("hi", max_output_tokens=4), str)
        chunks = list(llm.stream_chat_completion(HI, max_output_tokens=4))
        assert chunks and llm.get_token_limit() == 8192
        assert [m.alias for m in llm.get_available_models()] == ["smart", "fast"]
        assert llm.usage.requests == 7 and llm.usage_by_model["smart"].requests == 7
    with pytest.raises(ConfigurationError, match="closed"):
        llm.complete("hi")
    llm.close()  # twice is fine


def test_counts_take_the_request_arguments(hermes_server: RunningServer) -> None:
    """With functions, the count is the native request's prompt (tool definitions included)."""
    weather = {"name": "get_weather", "description": "Current weather for a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    with SyncLlamafileProvider(api_base=hermes_server.base_url) as llm:
        reply = llm.create_chat_completion(HI, functions=[weather], tool_choice="required", max_output_tokens=48)
        counted = llm.count_message_tokens(HI, functions=[weather], tool_choice="required", max_output_tokens=48)
        plain = llm.count_message_tokens(HI)
    assert reply.tool_mode == "native" and reply.usage.requests == 1
    assert counted == reply.usage.prompt_tokens > plain


def test_leaving_a_stream_early_closes_it(chatml_server: RunningServer) -> None:
    with SyncLlamafileProvider(smart_llm_url=chatml_server.base_url) as llm:
        for _ in llm.stream_chat_completion(HI, max_output_tokens=3000, ignore_eos=True):
            break
        assert llm.usage.requests == 1
        assert llm.complete("hi", max_output_tokens=4) is not None  # the loop is free again


def test_module_level_complete_many_times(chatml_server: RunningServer, monkeypatch: pytest.MonkeyPatch,
                                          fresh_shared_facade: None) -> None:
    monkeypatch.setenv("LLAMAFILE_SMART_LLM_URL", chatml_server.base_url)
    replies = [complete("hi", max_output_tokens=4) for _ in range(3)]
    assert all(isinstance(reply, str) for reply in replies)
    assert sync._shared is not None and sync._shared.usage.requests == 3


async def test_inside_an_event_loop_it_says_to_await_the_async_api(chatml_server: RunningServer,
                                                                   fresh_shared_facade: None) -> None:
    llm = SyncLlamafileProvider(smart_llm_url=chatml_server.base_url)
    with pytest.raises(ConfigurationError, match="use the async API"):
        llm.create_chat_completion(HI, max_output_tokens=4)
    with pytest.raises(ConfigurationError, match="await llm.create_chat_completion"):
        complete("hi")
