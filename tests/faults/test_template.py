"""Template 400: a chat template that refuses a conversation the provider cannot fold away
(its content, not its roles): llama-server answers 400; the provider, which renders the
server's template itself to count the prompt, raises TemplateError with the template's words
before sending anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llamafile_provider.errors import TemplateError
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.sync import SyncLlamafileProvider
from testbed.server import RunningServer, ServerConfig, start

from .support import check_fault, check_fault_sync

pytestmark = pytest.mark.server
# ChatML that raises on one word, so any role layout passes the probe and only this content fails.
REFUSING = (
    "{%- for m in messages -%}"
    "{%- if 'FORBIDDEN' in m['content'] -%}{{ raise_exception('This template refuses FORBIDDEN words') }}{%- endif -%}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)
REFUSED = [{"role": "user", "content": "say FORBIDDEN"}]


@pytest.fixture(scope="module")
def refusing_server(llama_server_binary: Path, models: dict[str, Path],
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("refusing")
    (folder / "refusing.jinja").write_text(REFUSING)
    server = start(llama_server_binary, ServerConfig(
        model=models["chatml"], slots=1, ctx_size=4096,
        extra_args=("--chat-template-file", str(folder / "refusing.jinja"))), log_dir=folder)
    try:
        yield server
    finally:
        server.stop()
        assert server.process.poll() is not None


def assert_says_what_the_template_said(error: BaseException, url: str) -> None:
    assert "chat template" in str(error) and "FORBIDDEN words" in str(error)
    assert isinstance(error, TemplateError) and error.server_message


def test_the_server_itself_answers_400(refusing_server: RunningServer) -> None:
    """What the provider spares the caller: the server's own refusal of the same request."""
    answer = httpx.post(refusing_server.base_url + "/v1/chat/completions",
                        json={"messages": REFUSED, "max_tokens": 4}, timeout=60)
    assert answer.status_code == 400 and "FORBIDDEN words" in answer.text


async def test_the_refusal_names_the_server_and_what_to_do(refusing_server: RunningServer) -> None:
    async with LlamafileProvider(smart_llm_url=refusing_server.base_url, startup_timeout=0) as llm:
        with pytest.raises(TemplateError) as caught:
            await llm.create_chat_completion(REFUSED, max_output_tokens=4)
    assert refusing_server.base_url in str(caught.value) and "--chat-template-file" in str(caught.value)


async def test_a_refused_conversation_is_a_template_error(refusing_server: RunningServer) -> None:
    async def fault() -> None:
        async with LlamafileProvider(smart_llm_url=refusing_server.base_url, max_retries=3,
                                     startup_timeout=0) as llm:
            await llm.create_chat_completion(REFUSED, max_output_tokens=4)

    assert_says_what_the_template_said(await check_fault(fault, TemplateError), refusing_server.base_url)


def test_the_blocking_facade_says_the_same(refusing_server: RunningServer) -> None:
    def fault() -> None:
        with SyncLlamafileProvider(smart_llm_url=refusing_server.base_url, startup_timeout=0) as llm:
            llm.create_chat_completion(REFUSED, max_output_tokens=4)

    assert_says_what_the_template_said(check_fault_sync(fault, TemplateError), refusing_server.base_url)
