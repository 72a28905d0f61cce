"""Model names on real test-bed servers: any id a configured server serves works in every
method of a fresh provider; an id nobody serves says what each server serves; a wrong key is
reported as a wrong key."""

from __future__ import annotations

from pathlib import PurePath

import pytest

from llamafile_provider.errors import AuthenticationError, ConfigurationError
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.server import ServerClient
from testbed.server import RunningServer, free_port

pytestmark = pytest.mark.server

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]


def served_id(server: RunningServer) -> str:
    model_id = ServerClient(server.base_url).info().model_id
    assert model_id
    return model_id


def test_sync_methods_take_any_served_id_without_a_listing(hermes_server: RunningServer,
                                                            mistral_server: RunningServer) -> None:
    fast_id = served_id(mistral_server)
    stem = PurePath(fast_id).name.removesuffix(".gguf")
    provider = LlamafileProvider(smart_llm_url=hermes_server.base_url, fast_llm_url=mistral_server.base_url)
    by_alias = provider.count_message_tokens(MESSAGES, "fast")
    assert provider.count_message_tokens(MESSAGES, fast_id) == by_alias
    assert provider.count_tokens("hello world", stem.upper()) == provider.count_tokens("hello world", "fast")
    assert provider.get_token_limit(fast_id) == mistral_server.config.ctx_size // mistral_server.config.slots
    assert provider.get_tokenizer(stem).client.base_url == mistral_server.base_url


async def test_async_methods_take_any_served_id_without_a_listing(hermes_server: RunningServer,
                                                                   mistral_server: RunningServer) -> None:
    fast_id = served_id(mistral_server)
    async with LlamafileProvider(smart_llm_url=hermes_server.base_url, fast_llm_url=mistral_server.base_url) as p:
        response = await p.create_chat_completion(MESSAGES, fast_id, max_output_tokens=4)
        assert response.server_url == mistral_server.base_url
        assert response.usage.prompt_tokens == await p.acount_message_tokens(MESSAGES, fast_id)
        assert [t async for t in p.stream_chat_completion(MESSAGES, fast_id, max_output_tokens=4)]
        assert p.usage_by_model["fast"].requests == 2 and "smart" not in p.usage_by_model


async def test_an_id_no_server_serves_names_what_each_serves(hermes_server: RunningServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    smart_id = served_id(hermes_server)
    async with LlamafileProvider(smart_llm_url=hermes_server.base_url, fast_llm_url=dead, max_retries=0,
                                 startup_timeout=0) as provider:
        with pytest.raises(ConfigurationError) as sync_error:
            provider.count_message_tokens(MESSAGES, "mistral-7b-instruct-v0.2")
        with pytest.raises(ConfigurationError) as async_error:
            await provider.create_chat_completion(MESSAGES, "mistral-7b-instruct-v0.2", max_output_tokens=4)
    for caught in (sync_error, async_error):
        message = str(caught.value)
        assert "unknown model 'mistral-7b-instruct-v0.2'" in message
        assert f"{hermes_server.base_url} (smart) serves {smart_id!r}" in message
        assert f"{dead} (fast) serves nothing yet (ServerUnreachableError)" in message


def test_a_wrong_key_is_reported_as_a_wrong_key_not_an_unknown_model(keyed_server: RunningServer) -> None:
    provider = LlamafileProvider(smart_llm_url=keyed_server.base_url, fast_llm_url=keyed_server.base_url,
                                 api_key="sk-wrong-key-987654")
    with pytest.raises(AuthenticationError, match="LLAMAFILE_API_KEY"):
        provider.count_message_tokens(MESSAGES, "mistral-7b-instruct-v0.2")
