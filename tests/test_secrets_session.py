"""Secrets over a whole session (issue 11 item 5): the key and URL credentials appear nowhere.

tests/test_secrets.py checks the masking functions and messages of a failing session. This
test widens the net to everything a user or a log shipper could ever see: every log record of
every logger at DEBUG (httpx, httpcore and openai's request dumps included), repr() of the
provider, its settings, servers, replies and every exception, their str, __cause__ / __context__
chains and full formatted tracebacks, and the stdout+stderr of the `config`, `status` and
`doctor` commands run as real subprocesses (doctor also with --json). Both keyed test-bed
servers (llama-server and the classic b2282 one) are behind a URL carrying proxy credentials.

It proves it can fail: the captures are non-empty and the servers' addresses do appear in them.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from llamafile_provider.errors import AuthenticationError, ContextOverflowError, LlamafileError
from llamafile_provider.provider import LlamafileProvider
from testbed.server import RunningServer, free_port
from tests.conftest import TEST_API_KEY

USER = "proxyuser"
PASSWORD = "pr0xy-pass-never-shown-9876"
WRONG_KEY = "sk-wrong-key-also-secret-5555"
HI = [{"role": "user", "content": "hi"}]
LOGGERS = ("", "llamafile_provider", "httpx", "httpcore", "openai")


class Everything(logging.Handler):
    """Keeps every record, formatted with its arguments and any traceback it carries."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + " " + repr(record.args))


def exception_texts(exc: BaseException) -> list[str]:
    """str, repr and the formatted traceback of an exception and of every cause in its chain."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(getattr(current, "partial_text", None))]
        current = current.__cause__ or current.__context__
    return texts


async def session(fast_port: int) -> list[str]:
    """A session with failures; returns everything it could show."""
    shown: list[str] = []

    async def expect(kind: type[LlamafileError], attempt: object) -> None:
        with pytest.raises(kind) as caught:
            await attempt  # type: ignore[misc]
        shown.extend(exception_texts(caught.value))

    async with LlamafileProvider() as provider:
        shown += [repr(provider), repr(provider.settings), str(provider.settings.describe()),
                  repr(provider.router.groups), str(provider.router.groups)]
        reply = await provider.create_chat_completion(HI, "smart", max_output_tokens=4)  # dead, then keyed
        shown += [repr(reply), str(reply), reply.server_url]
        chunks = [text async for text in provider.stream_chat_completion(HI, "fast", max_output_tokens=4)]
        shown += [repr(chunks), repr(provider.usage), repr(await provider.get_available_models())]
        shown.append(str(await provider.acount_message_tokens(HI, "fast")))
        await expect(ContextOverflowError, provider.create_chat_completion(
            [{"role": "user", "content": "hello world " * 12000}], "smart", max_output_tokens=4))
        await expect(LlamafileError, provider.create_chat_completion(HI, "no-such-model", max_output_tokens=4))
        shown += [repr(provider.router.groups)]
    wrong = f"http://{USER}:{PASSWORD}@127.0.0.1:{fast_port}"
    async with LlamafileProvider(smart_llm_url=[wrong], fast_llm_url=[wrong], api_key=WRONG_KEY) as provider:
        shown += [repr(provider), repr(provider.settings)]
        await expect(AuthenticationError, provider.create_chat_completion(HI, "smart", max_output_tokens=4))
    return shown


def cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    """stdout+stderr of the installed command, as a user would see it."""
    command = Path(sys.executable).with_name("llamafile-provider")
    done = subprocess.run([str(command), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
                          check=False)
    return f"$ {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"


@pytest.mark.server
@pytest.mark.classic
def test_a_whole_session_never_shows_a_key_or_url_credentials(
        keyed_server: RunningServer, classic_keyed_server: RunningServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    dead_port = free_port()
    # Credentials in a URL are for a proxy: sent straight to a keyed server, their Basic header
    # takes the place of the Bearer key and it answers 401. So the live servers are reached with
    # the key, and the proxy form goes to the dead server and to the wrong-key session's server.
    smart = f"http://{USER}:{PASSWORD}@127.0.0.1:{dead_port}/v1,http://127.0.0.1:{keyed_server.port}/v1"
    fast = f"http://127.0.0.1:{classic_keyed_server.port}"
    settings = {"LLAMAFILE_SMART_LLM_URL": smart, "LLAMAFILE_FAST_LLM_URL": fast, "LLAMAFILE_API_KEY": TEST_API_KEY,
                "LLAMAFILE_STARTUP_TIMEOUT": "0", "LLAMAFILE_MAX_RETRIES": "1", "LLAMAFILE_CONNECT_TIMEOUT": "2"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    env = {**os.environ, **settings, "OPENAI_LOG": "debug"}

    handler = Everything()
    previous = {name: logging.getLogger(name).level for name in LOGGERS}
    logging.getLogger().addHandler(handler)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        shown = asyncio.run(session(classic_keyed_server.port))
    finally:
        logging.getLogger().removeHandler(handler)
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)
    terminal = [cli(env, tmp_path, verb) for verb in ("config", "status")]
    terminal += [cli(env, tmp_path, "doctor"), cli(env, tmp_path, "doctor", "--json")]

    logs = "\n".join(handler.lines)
    everything = "\n".join([*shown, logs, *terminal])
    # The capture works: records from the HTTP layers, and every server's address, are in it.
    assert any(line.startswith("httpcore") for line in handler.lines), logs[:2000]
    assert len(terminal) == 4 and all(f"127.0.0.1:{keyed_server.port}" in out for out in terminal[2:]), terminal
    for port in (dead_port, keyed_server.port, classic_keyed_server.port):
        assert f"127.0.0.1:{port}" in logs and f"127.0.0.1:{port}" in "\n".join(terminal)
    assert "Traceback" in everything and "***" in everything
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for secret in (TEST_API_KEY, WRONG_KEY, PASSWORD, basic):
        where = [text[:300] for text in [*shown, *handler.lines, *terminal] if secret in text]
        assert not where, f"a secret leaked into: {where}"
