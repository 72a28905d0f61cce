"""The prompt-cache flag is sent, and the servers reuse the prefix on the next step."""

from __future__ import annotations

from llamafile_provider.provider import LlamafileProvider
from testbed.server import RunningServer
from tests.cache.conftest import agent_step


async def test_llama_server_reuses_the_previous_step(chatml_server: RunningServer) -> None:
    async with LlamafileProvider(smart_llm_url=chatml_server.base_url) as llm:
        first = await llm.create_chat_completion(agent_step(1, "reuse-ls"), max_output_tokens=4)
        second = await llm.create_chat_completion(agent_step(2, "reuse-ls"), max_output_tokens=4)
    assert second.usage.cached_prompt_tokens is not None and second.usage.evaluated_prompt_tokens is not None
    # The whole first prompt is a prefix of the second one (but for the end-of-turn of its last turn).
    assert second.usage.cached_prompt_tokens >= first.usage.prompt_tokens - 4
    assert second.usage.evaluated_prompt_tokens <= second.usage.prompt_tokens - first.usage.prompt_tokens + 4
    assert llm.usage.cached_prompt_tokens == (first.usage.cached_prompt_tokens or 0) + second.usage.cached_prompt_tokens


async def test_setting_off_evaluates_every_prompt(chatml_server: RunningServer) -> None:
    async with LlamafileProvider(smart_llm_url=chatml_server.base_url, cache_prompt=False) as llm:
        await llm.create_chat_completion(agent_step(1, "reuse-off"), max_output_tokens=4)
        second = await llm.create_chat_completion(agent_step(2, "reuse-off"), max_output_tokens=4)
    assert second.usage.cached_prompt_tokens == 0
    assert second.usage.evaluated_prompt_tokens == second.usage.prompt_tokens


async def test_classic_completion_reuses_with_the_flag(classic_chatml_server: RunningServer) -> None:
    """b2282 defaults cache_prompt to false; its /completion (the prefill route) reports what it
    evaluated, so the flag shows there. Its chat replies report nothing: None, not 0."""
    async with LlamafileProvider(smart_llm_url=classic_chatml_server.base_url) as llm:
        chat = await llm.create_chat_completion(agent_step(1, "reuse-classic-chat"), max_output_tokens=4)
        first = await llm.create_chat_completion(agent_step(1, "reuse-classic"), max_output_tokens=4,
                                                 prefill_response="Step")
        second = await llm.create_chat_completion(agent_step(2, "reuse-classic"), max_output_tokens=4,
                                                  prefill_response="Step")
    assert chat.usage.cached_prompt_tokens is None and chat.usage.evaluated_prompt_tokens is None
    assert second.usage.cached_prompt_tokens is not None
    assert second.usage.cached_prompt_tokens >= first.usage.prompt_tokens - 8


async def test_classic_without_the_flag_evaluates_everything(classic_chatml_server: RunningServer) -> None:
    async with LlamafileProvider(smart_llm_url=classic_chatml_server.base_url, cache_prompt=False) as llm:
        await llm.create_chat_completion(agent_step(1, "noreuse-classic"), max_output_tokens=4, prefill_response="Step")
        second = await llm.create_chat_completion(agent_step(2, "noreuse-classic"), max_output_tokens=4,
                                                  prefill_response="Step")
    assert second.usage.cached_prompt_tokens == 0
    assert second.usage.evaluated_prompt_tokens == second.usage.prompt_tokens
