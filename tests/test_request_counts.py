"""``count_message_tokens(..., functions=...)`` equals the ``prompt_tokens`` of the
request ``create_chat_completion`` sends with the same arguments — native tool definitions,
compat instructions, the combined schema's instructions and the prefill included (real servers)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from llamafile_provider.errors import CompletionError, InvalidToolCallError
from llamafile_provider.messages import ChatMessage
from testbed.server import RunningServer
from tests.test_provider import FUNCTIONS, provider_for

pytestmark = pytest.mark.server

PROMPT = [ChatMessage.system("You are an agent."), ChatMessage.user("What is the weather in Oslo?"),
          ChatMessage.system("ERROR PARSING YOUR RESPONSE: try again"), ChatMessage.user("Go on.")]


class Plan(BaseModel):
    step: str = Field(max_length=16)


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("hermes_server", "auto", {"functions": FUNCTIONS}),                              # native: tools in the template
    ("hermes_server", "auto", {"functions": FUNCTIONS, "tool_choice": "required"}),
    ("hermes_server", "auto", {"functions": FUNCTIONS, "prefill_response": "Sure"}),
    ("hermes_server", "auto", {"functions": FUNCTIONS, "response_schema": Plan, "max_output_tokens": 120}),  # combined
    ("chatml_server", "auto", {"functions": FUNCTIONS}),                              # constrained
    ("chatml_server", "compat", {"functions": FUNCTIONS}),                            # instructions injected
    ("chatml_server", "compat", {"functions": FUNCTIONS, "prefill_response": "```json"}),
    ("mistral_server", "compat", {"functions": FUNCTIONS, "tool_choice": "add"}),    # folded into a user turn
    ("mistral_server", "compat", {"functions": FUNCTIONS, "response_schema": Plan}),
    ("llama3_server", "auto", {"prefill_response": "Well,"}),
    ("classic_server", "compat", {"functions": FUNCTIONS}),                           # GBNF dialect
    ("classic_chatml_server", "auto", {"functions": FUNCTIONS, "response_schema": Plan, "max_output_tokens": 120}),
    ("classic_server", "auto", {"prefill_response": "Sure,"}),                         # continued via /completion
    ("classic_chatml_server", "auto", {"functions": FUNCTIONS, "prefill_response": "{", "max_output_tokens": 120}),
]
CASES += [(fixture, mode, {**arguments, "max_output_tokens": tokens})  # tools as the budget bounds them
          for (fixture, mode, arguments), tokens in zip(CASES[:2] + CASES[4:5], (64, 64, 120))]


def _case_id(fixture: str, mode: str, arguments: dict[str, Any]) -> str:
    names = (f"{k}={v}" if k == "max_output_tokens" else k for k, v in sorted(arguments.items()))
    return f"{fixture.split('_')[0]}-{mode}-{'+'.join(names)}"


@pytest.mark.parametrize(("fixture", "tool_mode", "arguments"), CASES, ids=[_case_id(*case) for case in CASES])
async def test_count_equals_the_prompt_tokens_of_the_request(request: pytest.FixtureRequest, fixture: str,
                                                             tool_mode: str, arguments: dict[str, Any]) -> None:
    server: RunningServer = request.getfixturevalue(fixture)
    async with provider_for(server, tool_mode=tool_mode, fix_failed_parse_tries=0) as provider:
        counted = provider.count_message_tokens(PROMPT, "smart", **arguments)
        assert await provider.acount_message_tokens(PROMPT, "smart", **arguments) == counted
        try:
            await provider.create_chat_completion(PROMPT, "smart", temperature=0, **arguments)
        except (InvalidToolCallError, CompletionError):
            pass  # gibberish in compat mode: the one request was still sent and counted
        assert provider.usage.requests == 1
        assert provider.router.candidates("smart")[0].learned_mode is None  # no fallback to another mode
        assert counted == provider.usage.prompt_tokens
    assert counted > 0


async def test_what_the_request_adds_is_counted(hermes_server: RunningServer, chatml_server: RunningServer) -> None:
    """Tools (native) and instructions (compat) make the count larger than the bare messages'."""
    async with provider_for(hermes_server) as provider:
        bare = provider.count_message_tokens(PROMPT)
        assert provider.count_message_tokens(PROMPT, functions=FUNCTIONS) > bare + 50
        assert provider.count_message_tokens(PROMPT, functions=FUNCTIONS, tool_choice="none") == bare
    async with provider_for(chatml_server, tool_mode="compat") as provider:
        assert provider.count_message_tokens(PROMPT, functions=FUNCTIONS) > provider.count_message_tokens(PROMPT) + 50
