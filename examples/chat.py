"""Ask one question, print the answer and the tokens it used.

Shows the smallest useful call: ``create_chat_completion`` on the smart model, with the reply's
``message.content`` and ``usage``. Servers come from the LLAMAFILE_* settings (environment or
``.env``); start them with ``./llamafile-integration/serve.sh``, then run
``python examples/chat.py``.
"""

from __future__ import annotations

import asyncio

from llamafile_provider import LlamafileProvider


async def main() -> None:
    async with LlamafileProvider() as llm:
        reply = await llm.create_chat_completion(
            [{"role": "system", "content": "You are a concise assistant."},
             {"role": "user", "content": "Why is the sky blue? One sentence."}],
            model_name="smart", max_output_tokens=96)
    print(reply.message.content.strip())
    usage = reply.usage
    print(f"\nmodel={reply.model or '?'} prompt_tokens={usage.prompt_tokens} "
          f"completion_tokens={usage.completion_tokens} total_tokens={usage.total_tokens}")


if __name__ == "__main__":
    asyncio.run(main())
