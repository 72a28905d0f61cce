"""401: keyed servers (llama-server's JSON 401, the classic server's plain-text one) and a wrong key."""

from __future__ import annotations

import pytest

from llamafile_provider.errors import AuthenticationError
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.sync import SyncLlamafileProvider
from testbed.server import RunningServer

from .support import HI, check_fault, check_fault_sync

WRONG_KEY = "sk-wrong-key-never-shown-9876"


def assert_names_the_setting_not_the_key(error: BaseException, url: str) -> None:
    assert url in str(error) and "LLAMAFILE_API_KEY" in str(error) and "--api-key" in str(error)
    assert WRONG_KEY not in str(error) and WRONG_KEY not in repr(error)


@pytest.mark.server
@pytest.mark.parametrize("key", [WRONG_KEY, None], ids=["wrong key", "no key"])
async def test_a_keyed_llama_server_refuses_a_wrong_or_missing_key(keyed_server: RunningServer,
                                                                   key: str | None) -> None:
    async def fault() -> None:
        async with LlamafileProvider(smart_llm_url=keyed_server.base_url, api_key=key, startup_timeout=0) as llm:
            await llm.create_chat_completion(HI, max_output_tokens=4)

    assert_names_the_setting_not_the_key(await check_fault(fault, AuthenticationError), keyed_server.base_url)


@pytest.mark.classic
def test_a_keyed_classic_server_refuses_a_wrong_key_in_the_blocking_facade(
        classic_keyed_server: RunningServer) -> None:
    def fault() -> None:
        with SyncLlamafileProvider(smart_llm_url=classic_keyed_server.base_url, api_key=WRONG_KEY,
                                   startup_timeout=0) as llm:
            llm.create_chat_completion(HI, max_output_tokens=4)

    error = check_fault_sync(fault, AuthenticationError)
    assert_names_the_setting_not_the_key(error, classic_keyed_server.base_url)
