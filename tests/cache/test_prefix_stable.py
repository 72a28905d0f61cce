"""Consecutive agent steps render prompts that share their prefix token for token, compat
instructions included (they are injected after the system prompt, not after the history)."""

from __future__ import annotations

import httpx

from llamafile_provider.provider import LlamafileProvider
from testbed.server import RunningServer
from tests.cache.conftest import agent_step

SEARCH = {"name": "search", "description": "Search the files.",
          "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}


async def test_compat_steps_share_the_prefix(chatml_server: RunningServer) -> None:
    """The requests of steps 1-3, rendered and tokenized by the server itself."""
    url = chatml_server.base_url
    async with LlamafileProvider(smart_llm_url=url, tool_mode="compat") as llm, httpx.AsyncClient() as http:
        server = (await llm.router.acandidates("smart"))[0]
        info = await server.client.info()
        tokens = []
        for step in (1, 2, 3):
            plan = llm._plan(server, info, agent_step(step, "prefix"), [SEARCH], "auto", None)
            request, _ = plan.request(info, "", None)
            prompt = (await http.post(url + "/apply-template", json={"messages": request["messages"]})).json()["prompt"]
            assert "search" in prompt and "Step 0" in prompt  # the compat instructions and the history
            tokens.append(await server.client.tokenize(prompt))
    for before, after in zip(tokens, tokens[1:]):
        assert len(after) > len(before)
        # Only the closing of the last turn may differ (the next step appends after it).
        assert after[: len(before) - 4] == before[: len(before) - 4]


async def test_compat_steps_hit_the_server_cache(chatml_server: RunningServer) -> None:
    async with LlamafileProvider(smart_llm_url=chatml_server.base_url, tool_mode="compat",
                                 fix_failed_parse_tries=0) as llm:
        first = await llm.create_chat_completion(agent_step(1, "prefix-cache"), functions=[SEARCH],
                                                 max_output_tokens=4)
        second = await llm.create_chat_completion(agent_step(2, "prefix-cache"), functions=[SEARCH],
                                                  max_output_tokens=4)
    assert second.usage.cached_prompt_tokens is not None
    assert second.usage.cached_prompt_tokens >= first.usage.prompt_tokens - 4
