"""Secrets never shown: a whole failing session against real test-bed servers, with every log
record (ours, httpx, httpcore, openai) and all terminal output captured, never shows the API key
or the credentials written into a server URL."""

from __future__ import annotations

import asyncio
import logging

import pytest

from llamafile_provider import cli
from llamafile_provider.errors import LlamafileError
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.redact import mask_url, redact, split_credentials
from llamafile_provider.server import ServerClient
from llamafile_provider.settings import load_settings
from testbed.server import RunningServer, free_port

KEY = "sk-session-secret-424242"
PASSWORD = "pw-never-shown-31337"
HI = [{"role": "user", "content": "hi"}]


def test_mask_and_split() -> None:
    assert mask_url("http://alice:pw@host:8080/v1") == "http://***@host:8080/v1"
    assert mask_url("see http://tok@h:1 and https://u:p@x/") == "see http://***@h:1 and https://***@x/"
    assert mask_url("http://localhost:8080") == "http://localhost:8080"
    assert redact(f"key {KEY} at http://a:b@h", [KEY]) == "key *** at http://***@h"
    assert split_credentials("http://alice:p%40ss@h:1/x") == ("http://h:1/x", {"Authorization": "Basic YWxpY2U6cEBzcw=="})


def test_a_bad_url_with_credentials_is_reported_masked() -> None:
    with pytest.raises(LlamafileError) as caught:
        load_settings(smart_llm_url=f"http://alice:{PASSWORD}@host:99999")
    assert PASSWORD not in str(caught.value) and "***@host" in str(caught.value)
    with pytest.raises(LlamafileError) as caught:
        ServerClient(f"http://alice:{PASSWORD}@host:99999")
    assert PASSWORD not in str(caught.value)


@pytest.mark.server
def test_a_failing_session_never_shows_a_secret(chatml_server: RunningServer, keyed_server: RunningServer,
                                                caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://alice:{PASSWORD}@127.0.0.1:{free_port()}/v1"
    live = f"http://bob:{PASSWORD}@127.0.0.1:{chatml_server.port}"
    keyed = f"http://carol:{PASSWORD}@127.0.0.1:{keyed_server.port}"
    for name, value in {"LLAMAFILE_SMART_LLM_URL": f"{dead},{keyed}", "LLAMAFILE_FAST_LLM_URL": live,
                        "LLAMAFILE_API_KEY": KEY, "LLAMAFILE_STARTUP_TIMEOUT": "0",
                        "LLAMAFILE_MAX_RETRIES": "1"}.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []

    async def session() -> None:
        async with LlamafileProvider() as provider:
            shown.extend([repr(provider.settings), repr(provider.router.groups), str(provider.settings.describe())])
            for attempt in (
                provider.create_chat_completion(HI, "smart", max_output_tokens=4),  # dead, then wrong key
                provider.create_chat_completion(HI, "no-such-model", max_output_tokens=4),
                provider.create_embedding("hello", "fast"),  # no --embeddings: 501
            ):
                with pytest.raises(LlamafileError) as caught:
                    await attempt
                shown.extend([str(caught.value), repr(caught.value), str(caught.value.__cause__)])
            with pytest.raises(LlamafileError) as caught:
                provider.count_tokens("hello", "smart")
            shown.append(str(caught.value))
            reply = await provider.create_chat_completion(HI, "fast", max_output_tokens=4)  # the Basic header is fine
            shown.extend([reply.server_url, repr(reply), str(await provider.get_available_models())])

    asyncio.run(session())
    assert cli.main(["config"]) == 0
    assert cli.main(["status"]) == 1
    out, err = capsys.readouterr()
    everything = "\n".join([*shown, caplog.text, out, err])
    assert "127.0.0.1" in everything and "***" in everything  # the session did run and mask
    assert PASSWORD not in everything
    assert KEY not in everything
    assert "alice" not in everything and "bob:" not in everything and "carol" not in everything
