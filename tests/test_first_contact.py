"""First contact and failover on real test-bed servers: a server still starting is waited for
(bounded by LLAMAFILE_STARTUP_TIMEOUT); a server that is down, hung or black-holed costs one
short attempt, not (retries + 1) x timeout, before the next one answers."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from pytest_httpx import HTTPXMock

from llamafile_provider.errors import ServerTimeoutError, ServerUnreachableError
from llamafile_provider.provider import LlamafileProvider
from testbed.server import RunningServer, ServerConfig, free_port, spawn, start

HI = [{"role": "user", "content": "hi"}]


def chat_paths(provider: LlamafileProvider, url: str) -> list[str]:
    """Every request path the provider's one client for ``url`` sends, from now on."""
    server = next(s for s in provider.router.groups["smart"] if s.url == url)
    paths: list[str] = []

    async def record(request: httpx.Request) -> None:
        paths.append(request.url.path)

    server.http.event_hooks["request"].append(record)
    return paths


@pytest.fixture
def own_server(llama_server_binary: Path, models: dict[str, Path], tmp_path: Path) -> Iterator[RunningServer]:
    """A server this test may stop, freeze or kill."""
    server = start(llama_server_binary, ServerConfig(model=models["chatml"], slots=1, ctx_size=4096),
                   log_dir=tmp_path)
    # Warm it up (its first decode is slow, more so on a busy machine), so short timeouts hold.
    httpx.post(server.base_url + "/v1/chat/completions", json={"messages": HI, "max_tokens": 4}, timeout=120)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def black_hole(port: int) -> list[socket.socket]:
    """A port that accepts no connection and refuses none: its accept queue is full, so the
    kernel drops new SYNs and connecting hangs, like a host that went away."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(0)
    sockets = [listener]
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        sockets.append(filler)
    time.sleep(0.2)
    return sockets


async def test_a_server_that_starts_late_is_waited_for(llama_server_binary: Path, models: dict[str, Path],
                                                        tmp_path: Path) -> None:
    """Connection refused on first contact, as while a classic llamafile loads: waited for."""
    port = free_port()
    late: list[RunningServer] = []
    # Started from the loop's own thread: a child dies with the thread that spawned it (PDEATHSIG).
    timer = asyncio.get_running_loop().call_later(2.0, lambda: late.append(
        spawn(llama_server_binary, ServerConfig(model=models["chatml"], slots=1), port=port, log_dir=tmp_path)))
    try:
        async with LlamafileProvider(smart_llm_url=f"http://127.0.0.1:{port}", startup_timeout=60) as provider:
            response = await provider.create_chat_completion(HI, max_output_tokens=4)
        assert late, "answered before the server was started"
        assert response.message.content and response.server_url == f"http://127.0.0.1:{port}"
    finally:
        timer.cancel()
        for server in late:
            server.stop()


async def test_waiting_is_bounded_by_the_setting() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    async with LlamafileProvider(smart_llm_url=dead, startup_timeout=1, max_retries=0) as provider:
        with pytest.raises(ServerUnreachableError, match="no server became ready .* within 1s"):
            await provider.create_chat_completion(HI, max_output_tokens=4)
    assert time.monotonic() - started < 15


async def test_a_loading_server_on_first_contact_is_waited_for(llama_server_binary: Path, models: dict[str, Path],
                                                               tmp_path: Path) -> None:
    """Spawned and asked at once: refused, then 503 while loading, then the answer."""
    server = spawn(llama_server_binary, ServerConfig(model=models["chatml"], slots=1), log_dir=tmp_path)
    try:
        async with LlamafileProvider(smart_llm_url=server.base_url, startup_timeout=60, max_retries=0) as provider:
            response = await provider.create_chat_completion(HI, max_output_tokens=4)
        assert response.usage.requests == 1
    finally:
        server.stop()


async def test_a_black_holed_server_fails_over_in_seconds(own_server: RunningServer,
                                                          chatml_server: RunningServer) -> None:
    """Probed and answering, then gone without refusing (connects hang): one short connect
    timeout, not the reply timeout times (retries + 1), before the next server answers."""
    async with LlamafileProvider(smart_llm_url=f"{own_server.base_url},{chatml_server.base_url}", timeout=30,
                                 connect_timeout=1, max_retries=3) as provider:
        first = await provider.create_chat_completion(HI, max_output_tokens=4)
        assert first.server_url == own_server.base_url
        own_server.stop()
        hole = black_hole(own_server.port)
        try:
            started = time.monotonic()
            second = await provider.create_chat_completion(HI, max_output_tokens=4)
            elapsed = time.monotonic() - started
        finally:
            for sock in hole:
                sock.close()
    assert second.server_url == chatml_server.base_url
    print(f"black-holed server -> failover took {elapsed:.2f}s")
    assert elapsed < 15


async def test_a_hung_server_costs_one_timeout_not_one_per_retry(own_server: RunningServer,
                                                                 chatml_server: RunningServer) -> None:
    """Frozen mid-life (SIGSTOP: connections accepted, nothing answered): one read timeout, no retries."""
    async with LlamafileProvider(smart_llm_url=f"{own_server.base_url},{chatml_server.base_url}", timeout=3,
                                 max_retries=3) as provider:
        first = await provider.create_chat_completion(HI, max_output_tokens=4)
        assert first.server_url == own_server.base_url
        paths = chat_paths(provider, own_server.base_url)
        os.kill(own_server.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        response = await provider.create_chat_completion(HI, max_output_tokens=4)
        elapsed = time.monotonic() - started
        os.kill(own_server.process.pid, signal.SIGCONT)
    assert response.server_url == chatml_server.base_url
    assert paths.count("/v1/chat/completions") == 1
    print(f"hung server -> failover took {elapsed:.2f}s")
    assert elapsed < 15


async def test_read_timeouts_are_not_retried(httpx_mock: HTTPXMock, mocked_llama_server: str) -> None:
    """The same rule where a real server cannot time out on cue (bodies as llama-server sends them)."""
    url = mocked_llama_server
    httpx_mock.add_exception(httpx.ReadTimeout("slow"), url=url + "/v1/chat/completions")
    async with LlamafileProvider(smart_llm_url=url, max_retries=3) as provider:
        with pytest.raises(ServerTimeoutError, match="did not answer in time"):
            await provider.create_chat_completion(HI)
    assert len(httpx_mock.get_requests(url=url + "/v1/chat/completions")) == 1


async def test_concurrent_first_calls_wait_together(llama_server_binary: Path, models: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """Several agents' first calls while the server starts: all answered, no error."""
    server = spawn(llama_server_binary, ServerConfig(model=models["chatml"], slots=2), log_dir=tmp_path)
    try:
        async with LlamafileProvider(smart_llm_url=server.base_url, startup_timeout=60) as provider:
            replies = await asyncio.gather(*(provider.create_chat_completion(HI, max_output_tokens=4)
                                             for _ in range(3)))
        assert [r.server_url for r in replies] == [server.base_url] * 3
    finally:
        server.stop()


def test_blocking_methods_wait_on_first_contact_too(llama_server_binary: Path, models: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """AutoGPT counts tokens (blocking) before its first chat: that call waits for the server too."""
    port = free_port()
    provider = LlamafileProvider(smart_llm_url=f"http://127.0.0.1:{port}", startup_timeout=60)
    with ThreadPoolExecutor(max_workers=1) as pool:
        counting = pool.submit(provider.count_message_tokens, HI)
        time.sleep(2.0)
        late = spawn(llama_server_binary, ServerConfig(model=models["chatml"], slots=1), port=port, log_dir=tmp_path)
        try:
            assert counting.result(timeout=90) > 0
            assert provider.get_token_limit() == 32768
        finally:
            late.stop()


def test_blocking_methods_fail_over_like_the_async_ones(chatml_server: RunningServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    provider = LlamafileProvider(smart_llm_url=f"{dead},{chatml_server.base_url}", max_retries=0)
    assert provider.count_tokens("hello") > 0
    assert provider.get_tokenizer().client.base_url == chatml_server.base_url
