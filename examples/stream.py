"""Stream a reply to stdout as the model writes it.

Shows ``stream_chat_completion``: an async iterator of text pieces (no tool calls); the tokens
are added to ``llm.usage`` once the stream ends. Servers come from the LLAMAFILE_* settings
(environment or ``.env``); start them with ``./llamafile-integration/serve.sh``, then run
``python examples/stream.py``.
"""

from __future__ import annotations

import asyncio
import sys

from llamafile_provider import LlamafileProvider


async def main() -> None:
    async with LlamafileProvider() as llm:
        pieces = 0
        async for piece in llm.stream_chat_completion(
                [{"role": "user", "content": "Write a haiku about a llama."}], max_output_tokens=64):
            sys.stdout.write(piece)
            sys.stdout.flush()
            pieces += 1
        print(f"\n\n[{pieces} chunks streamed; prompt_tokens={llm.usage.prompt_tokens} "
              f"completion_tokens={llm.usage.completion_tokens}]")


if __name__ == "__main__":
    asyncio.run(main())
