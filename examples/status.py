"""What is being served, and how many tokens a conversation takes.

Shows ``get_available_models`` (alias, dialect, context size, tool mode of every configured
server that answers) and ``acount_message_tokens`` (the exact prompt size, as the server will
count it, after role folding). Servers come from the LLAMAFILE_* settings (environment or
``.env``); start them with ``./llamafile-integration/serve.sh``, then run
``python examples/status.py``.
"""

from __future__ import annotations

import asyncio

from llamafile_provider import LlamafileProvider

CONVERSATION = [
    {"role": "system", "content": "You are a helpful agent."},
    {"role": "user", "content": "Plan a weekend in Lisbon."},
    {"role": "assistant", "content": "Day one: Alfama and Belém. Day two: Sintra."},
    {"role": "user", "content": "And if it rains?"},
]


async def main() -> None:
    async with LlamafileProvider() as llm:
        for model in await llm.get_available_models():
            print(f"{model.alias:<6} {model.name}  dialect={model.dialect} context_size={model.context_size} "
                  f"tool_mode={model.tool_mode}  {model.url}")
        tokens = await llm.acount_message_tokens(CONVERSATION, model_name="smart")
    print(f"conversation of {len(CONVERSATION)} messages: {tokens} tokens on the smart model")


if __name__ == "__main__":
    asyncio.run(main())
