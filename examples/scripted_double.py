"""A tiny agent loop (ask -> tool call -> tool result -> final answer) driven by ScriptedProvider.

The agent code below is what you would run against ``LlamafileProvider``; the test double only
replaces the model, so the loop, the tool dispatch and the message bookkeeping are exercised
for real, instantly and deterministically. Run: ``python examples/scripted_double.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from llamafile_provider.messages import ChatMessage, FunctionSpec
from llamafile_provider.testing import ScriptedProvider

WEATHER = FunctionSpec(name="get_weather", description="Current weather in a city", parameters={
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
    "additionalProperties": False})
TOOLS: dict[str, Callable[..., Any]] = {"get_weather": lambda city: {"city": city, "sky": "sunny", "celsius": 21}}


async def run_agent(provider: Any, question: str, max_steps: int = 5) -> list[ChatMessage]:
    """Ask, run every tool the model calls, feed the results back, stop at a plain-text answer."""
    conversation = [ChatMessage.system("You are a helpful assistant."), ChatMessage.user(question)]
    for _ in range(max_steps):
        response = await provider.create_chat_completion(conversation, functions=[WEATHER])
        conversation.append(response.message)
        if not response.message.tool_calls:
            return conversation
        for call in response.message.tool_calls:
            result = TOOLS[call.function.name](**call.function.arguments)
            conversation.append(ChatMessage.tool_result(json.dumps(result), call.id))
    raise RuntimeError(f"no final answer after {max_steps} steps")


async def amain() -> list[ChatMessage]:
    script = [{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
              "It is sunny in Paris, 21 °C."]
    async with ScriptedProvider(script) as provider:
        conversation = await run_agent(provider, "What is the weather in Paris?")
    for message in conversation:
        calls = ", ".join(f"{c.function.name}({json.dumps(c.function.arguments)})" for c in message.tool_calls)
        print(f"{message.role.value:>9}: {message.content or ''}{'-> ' + calls if calls else ''}")
    print(f"    usage: {provider.usage.total_tokens} tokens (estimated) in {provider.usage.requests} requests")
    return conversation


def main() -> list[ChatMessage]:
    return asyncio.run(amain())


if __name__ == "__main__":
    main()
