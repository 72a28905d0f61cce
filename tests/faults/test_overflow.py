"""Context overflow: llama-server would answer 400, the classic server would silently cut the
prompt; on both the provider raises ContextOverflowError with the sizes, before sending."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamafile_provider.errors import ContextOverflowError
from llamafile_provider.provider import LlamafileProvider
from testbed.server import RunningServer, ServerConfig, ServerPool

from .support import check_fault

SLOT = 512
LONG = [{"role": "user", "content": "tell me about the weather " * 200}]


def small(pool: ServerPool, model: Path, classic: bool) -> RunningServer:
    try:
        return pool.get(ServerConfig(model=model, classic=classic, ctx_size=SLOT, slots=1))
    except Exception as exc:  # noqa: BLE001 - turned into a loud test failure
        pytest.fail(f"could not start a small-context server: {exc}", pytrace=False)


@pytest.mark.parametrize("dialect", [pytest.param("llama-server", marks=pytest.mark.server),
                                     pytest.param("classic", marks=pytest.mark.classic)])
async def test_an_oversized_prompt_is_a_context_overflow_error(request: pytest.FixtureRequest,
                                                               models: dict[str, Path], dialect: str) -> None:
    pool = request.getfixturevalue("classic_pool" if dialect == "classic" else "server_pool")
    server = small(pool, models["chatml"], dialect == "classic")

    async def fault() -> None:
        async with LlamafileProvider(smart_llm_url=server.base_url, startup_timeout=0) as llm:
            await llm.create_chat_completion(LONG, max_output_tokens=16)

    error = await check_fault(fault, ContextOverflowError)
    assert isinstance(error, ContextOverflowError)
    assert error.context_size == SLOT and error.prompt_tokens and error.prompt_tokens > SLOT
    assert server.base_url in str(error) and str(SLOT) in str(error)
    assert "LLAMAFILE_TRIM_HISTORY" in str(error) or "-c" in str(error)
