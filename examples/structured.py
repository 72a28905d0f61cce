"""Structured output: the reply is a pydantic object, not text to parse.

Shows ``response_schema=`` with a pydantic model: the server is held to its JSON schema and
``reply.parsed_result`` is a validated instance (invalid replies are re-asked). Servers come
from the LLAMAFILE_* settings (environment or ``.env``); start them with
``./llamafile-integration/serve.sh``, then run ``python examples/structured.py``.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from llamafile_provider import LlamafileProvider


class City(BaseModel):
    name: str
    country: str
    population: int


async def main() -> None:
    async with LlamafileProvider() as llm:
        reply = await llm.create_chat_completion(
            [{"role": "user", "content": "Describe the capital of France as JSON."}],
            response_schema=City, max_output_tokens=256)
    city: City = reply.parsed_result
    print(repr(city))
    print(city.model_dump_json(indent=2))


if __name__ == "__main__":
    asyncio.run(main())
