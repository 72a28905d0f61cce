"""Context pre-flight on real test-bed servers: a prompt that does not fit one slot is refused
before it is sent (llama-server would answer 400; a classic server would silently cut it), or,
when opted in, the oldest non-system turns are dropped until it fits, and that is logged."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from llamafile_provider.errors import ContextOverflowError
from llamafile_provider.messages import ChatMessage, FunctionCall, Role, ToolCall
from llamafile_provider.preflight import droppable_turns, without
from llamafile_provider.provider import LlamafileProvider
from testbed.server import RunningServer, ServerConfig, ServerPool

SLOT = 512


@pytest.fixture(scope="module")
def small_server(server_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    """ChatML model with 512 tokens per slot."""
    return server_pool.get(ServerConfig(model=models["chatml"], ctx_size=SLOT * 2, slots=2))


def chat_requests(provider: LlamafileProvider) -> list[str]:
    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            sent.append(request.url.path)

    provider.router.groups["smart"][0].http.event_hooks["request"].append(record)
    return sent


def history(turns: int) -> list[ChatMessage]:
    """A system prompt, ``turns`` old exchanges of ~60 tokens each, and the question."""
    messages = [ChatMessage.system("You are a helpful agent.")]
    for n in range(turns):
        messages += [ChatMessage.user(f"question {n}: " + "tell me about the weather " * 10),
                     ChatMessage.assistant(f"answer {n}: " + "it is sunny today " * 10)]
    return [*messages, ChatMessage.user("And now?")]


def test_droppable_turns_keep_system_messages_the_question_and_tool_pairs() -> None:
    call = ToolCall(id="c1", function=FunctionCall(name="f", arguments={}))
    turns = [ChatMessage.system("s"), ChatMessage.user("u1"), ChatMessage.assistant("", [call]),
             ChatMessage.tool_result("r", "c1"), ChatMessage.system("late"), ChatMessage.user("u2"),
             ChatMessage.user("question")]
    groups = droppable_turns(turns)
    assert groups == [[1], [2, 3], [5]]
    kept = without(turns, groups[:2])
    assert [t.role for t in kept] == [Role.SYSTEM, Role.SYSTEM, Role.USER, Role.USER]
    assert kept[-1].content == "question"


@pytest.mark.server
async def test_an_oversized_prompt_is_refused_before_sending(small_server: RunningServer) -> None:
    async with LlamafileProvider(smart_llm_url=small_server.base_url) as provider:
        sent = chat_requests(provider)
        with pytest.raises(ContextOverflowError) as caught:
            await provider.create_chat_completion(history(12), max_output_tokens=16)
        assert sent == []  # nothing was sent: no 400, no truncation
        error = caught.value
        assert error.context_size == SLOT and error.prompt_tokens and error.prompt_tokens > SLOT
        assert error.prompt_tokens == provider.count_message_tokens(history(12))
        assert str(error.prompt_tokens) in str(error) and f"{SLOT} tokens per slot" in str(error)
        assert "LLAMAFILE_TRIM_HISTORY" in str(error) and error.status_code is None
        with pytest.raises(ContextOverflowError):
            await provider.stream_chat_completion(history(12), max_output_tokens=16).__anext__()
        assert sent == []


@pytest.mark.server
async def test_the_reply_budget_counts(small_server: RunningServer) -> None:
    """The prompt fits, but not with the reply asked for."""
    async with LlamafileProvider(smart_llm_url=small_server.base_url) as provider:
        size = provider.count_message_tokens(history(2))
        assert size < SLOT
        with pytest.raises(ContextOverflowError, match="room for the reply"):
            await provider.create_chat_completion(history(2), max_output_tokens=SLOT - size + 1)
        response = await provider.create_chat_completion(history(2), max_output_tokens=SLOT - size)
    assert response.usage.prompt_tokens == size


@pytest.mark.server
async def test_opted_in_trimming_drops_the_oldest_turns_and_logs_it(small_server: RunningServer,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    async with LlamafileProvider(smart_llm_url=small_server.base_url, trim_history=True) as provider:
        sent = chat_requests(provider)
        with caplog.at_level(logging.WARNING):
            response = await provider.create_chat_completion(history(12), max_output_tokens=16)
    assert len(sent) == 1
    assert response.usage.prompt_tokens + 16 <= SLOT
    assert "dropped the" in caplog.text and "oldest turn" in caplog.text and "LLAMAFILE_TRIM_HISTORY" in caplog.text
    # as many turns as fit were kept: one more exchange would not have fitted
    kept = response.usage.prompt_tokens
    assert kept > SLOT - 16 - 2 * 70


@pytest.mark.server
async def test_trimming_cannot_drop_the_system_prompt_or_question(small_server: RunningServer) -> None:
    huge = [ChatMessage.system("rules " * 600), ChatMessage.user("old"), ChatMessage.user("question")]
    async with LlamafileProvider(smart_llm_url=small_server.base_url, trim_history=True) as provider:
        with pytest.raises(ContextOverflowError, match="even with every older turn dropped"):
            await provider.create_chat_completion(huge, max_output_tokens=4)
