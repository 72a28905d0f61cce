"""A two-turn tool loop: the model calls get_weather, we run it locally, it answers.

Shows ``functions=`` with a ``FunctionSpec``, reading ``message.tool_calls`` (arguments already
parsed and validated), and sending the result back with ``ChatMessage.tool_result``. The first
turn uses ``tool_choice="required"`` so even a tiny model calls the tool. Servers come from the
LLAMAFILE_* settings (environment or ``.env``); start them with
``./llamafile-integration/serve.sh``, then run ``python examples/tools.py``.
"""

from __future__ import annotations

import asyncio
import json

from llamafile_provider import ChatMessage, FunctionSpec, LlamafileProvider

WEATHER = FunctionSpec(name="get_weather", description="Current weather in a city", parameters={
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


def get_weather(city: str) -> dict[str, object]:
    return {"city": city, "sky": "sunny", "celsius": 21}  # a fake; call a real weather API here


async def main() -> None:
    conversation = [ChatMessage.user("What is the weather in Paris?")]
    async with LlamafileProvider() as llm:
        first = await llm.create_chat_completion(conversation, functions=[WEATHER], tool_choice="required",
                                                 max_output_tokens=128)
        conversation.append(first.message)
        for call in first.message.tool_calls:
            print(f"tool call ({first.tool_mode}): {call.function.name}({json.dumps(call.function.arguments)})")
            result = get_weather(**call.function.arguments)
            conversation.append(ChatMessage.tool_result(json.dumps(result), call.id))
        final = await llm.create_chat_completion(conversation, functions=[WEATHER], tool_choice="none",
                                                 max_output_tokens=96)
    print(f"answer: {final.message.content.strip()}")
    print(f"requests={llm.usage.requests} total_tokens={llm.usage.total_tokens}")


if __name__ == "__main__":
    asyncio.run(main())
