"""Server down: nothing listens at the URL (a port of this test's own, closed)."""

from __future__ import annotations

from llamafile_provider.errors import ServerUnreachableError
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.sync import SyncLlamafileProvider
from testbed.server import free_port

from .support import HI, check_fault, check_fault_sync


def assert_says_what_to_do(error: BaseException, url: str) -> None:
    assert url in str(error) and "serve.sh" in str(error) and "--port" in str(error)


async def test_a_down_server_is_unreachable_and_says_how_to_start_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def fault() -> None:
        async with LlamafileProvider(smart_llm_url=url, max_retries=1, startup_timeout=0) as llm:
            await llm.create_chat_completion(HI)

    assert_says_what_to_do(await check_fault(fault, ServerUnreachableError), url)


def test_the_blocking_facade_says_the_same() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    def fault() -> None:
        with SyncLlamafileProvider(smart_llm_url=url, max_retries=0, startup_timeout=0) as llm:
            llm.create_chat_completion(HI)

    assert_says_what_to_do(check_fault_sync(fault, ServerUnreachableError), url)


async def test_waiting_for_a_down_server_on_first_contact_is_bounded() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def fault() -> None:
        async with LlamafileProvider(smart_llm_url=url, startup_timeout=2.0) as llm:
            await llm.create_chat_completion(HI)

    assert_says_what_to_do(await check_fault(fault, ServerUnreachableError), url)
