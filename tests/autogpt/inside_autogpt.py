"""Checks that run INSIDE AutoGPT classic's venv, against its real forge classes.

The AutoGPT tests (``test_autogpt_*.py``, run by the project's own venv) start this file with
the AutoGPT venv's python: ``python inside_autogpt.py CHECK``. Each check prints one line
``RESULT: <json>`` with what it observed; the pytest side asserts on it. Configuration comes
from the environment the test sets (``SMART_LLM``, ``LLAMAFILE_*_URL``, ``LLAMAFILE_API_KEY``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

# Importing forge's registry is what activates the adapter (through the .pth hook).
import forge.llm.providers.multi as multi
from forge.llm.providers.llamafile.llamafile import LlamafileModelName
from forge.llm.providers.schema import (
    AssistantChatMessage,
    ChatMessage,
    ChatModelResponse,
    CompletionModelFunction,
    ModelProviderName,
)
from forge.models.json_schema import JSONSchema
from forge.utils.exceptions import InvalidAgentResponseError

SMART, FAST = os.environ.get("SMART_LLM", ""), os.environ.get("FAST_LLM", "")


def commands() -> list[CompletionModelFunction]:
    """Two real-looking AutoGPT commands (the shapes forge's own components declare)."""
    text = JSONSchema.Type.STRING
    return [
        CompletionModelFunction(name="write_file", description="Write a file in the workspace", parameters={
            "filename": JSONSchema(type=text, description="file to write", required=True),
            "contents": JSONSchema(type=text, description="what to write", required=True)}),
        CompletionModelFunction(name="finish", description="End the task", parameters={
            "reason": JSONSchema(type=text, description="why", required=True)}),
    ]


def provider() -> Any:
    return multi.MultiProvider()


def check_hook() -> dict[str, Any]:
    return {
        "members": [m.value for m in LlamafileModelName],
        "provider_class": multi.MultiProvider._get_provider_class(ModelProviderName.LLAMAFILE).__module__,
    }


def check_registry() -> dict[str, Any]:
    from autogpt.app.config import ConfigBuilder

    config = ConfigBuilder.build_config_from_env()
    info = multi.CHAT_MODELS.get(SMART)
    return {
        **check_hook(),
        "smart_llm": str(getattr(config.smart_llm, "value", config.smart_llm)),
        "fast_llm": str(getattr(config.fast_llm, "value", config.fast_llm)),
        "smart_info": info.model_dump(mode="json") if info else None,
        "openai_functions": config.openai_functions,
    }


async def check_provider() -> dict[str, Any]:
    multi_provider = provider()
    available = [m.name for m in await multi_provider.get_available_chat_models()]
    messages = [ChatMessage.system("You are a careful agent."), ChatMessage.user("Say hello."),
                AssistantChatMessage(content="hello"),
                ChatMessage.system("ERROR PARSING YOUR RESPONSE:\n\nValueError: not JSON"),
                ChatMessage.user("Say hello again.")]
    counted = multi_provider.count_message_tokens(messages, SMART)
    reply = await multi_provider.create_chat_completion(messages, SMART, max_output_tokens=8,
                                                        reasoning_effort="low", thinking_budget_tokens=64)
    tokenizer = multi_provider.get_tokenizer(SMART)
    ids = tokenizer.encode("hello world")
    fast_reply = await multi_provider.create_chat_completion([ChatMessage.user("hi")], FAST, max_output_tokens=4)
    return {
        "available": available, "counted": counted, "prompt_tokens": reply.prompt_tokens_used,
        "response_type": type(reply).__name__, "is_forge_response": isinstance(reply, ChatModelResponse),
        "llm_info": reply.llm_info.name, "token_limit": multi_provider.get_token_limit(SMART),
        "max_tokens": multi.CHAT_MODELS[SMART].max_tokens, "decoded": tokenizer.decode(ids),
        "count_tokens": multi_provider.count_tokens("hello world", SMART), "ids": len(ids),
        "fast_prompt_tokens": fast_reply.prompt_tokens_used,
        "fast_counted": multi_provider.count_message_tokens([ChatMessage.user("hi")], FAST),
    }


async def check_one_shot() -> dict[str, Any]:
    from autogpt.agents.prompt_strategies.one_shot import OneShotAgentPromptStrategy
    from forge.config.ai_directives import AIDirectives
    from forge.config.ai_profile import AIProfile

    results = {}
    for use_functions in (True, False):
        config = OneShotAgentPromptStrategy.default_configuration.model_copy(deep=True)
        config.use_functions_api = use_functions
        strategy = OneShotAgentPromptStrategy(config, logging.getLogger("check"))
        offered = commands()
        prompt = strategy.build_prompt(messages=[], task="Write 'hi' into hi.txt, then finish.",
                                       ai_profile=AIProfile(), ai_directives=AIDirectives(), commands=offered,
                                       include_os_info=False)
        multi_provider = provider()
        reply = await multi_provider.create_chat_completion(
            prompt.messages, SMART, completion_parser=strategy.parse_response_content,
            functions=prompt.functions, prefill_response=prompt.prefill_response)
        proposal = reply.parsed_result
        tool = proposal.use_tool
        spec = next((c for c in offered if c.name == tool.name), None)
        valid = spec.validate_call(tool)[0] if spec else False
        core = multi_provider._provider_instances[ModelProviderName.LLAMAFILE]._core
        results["functions" if use_functions else "text"] = {
            "proposal": type(proposal).__name__, "tool": tool.name, "valid": valid,
            "requests": core.usage.requests, "tool_calls": len(reply.response.tool_calls or []),
            "completion_tokens": reply.completion_tokens_used,
        }
    return results


async def check_parse_failure() -> dict[str, Any]:
    def never(_: AssistantChatMessage) -> None:
        raise ValueError("this parser rejects everything")

    try:
        await provider().create_chat_completion([ChatMessage.user("hi")], SMART, completion_parser=never,
                                                max_output_tokens=4)
    except InvalidAgentResponseError as exc:
        return {"raised": "InvalidAgentResponseError", "message": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
        return {"raised": type(exc).__name__, "message": str(exc)}
    return {"raised": None}


async def check_startup() -> dict[str, Any]:
    try:
        models = await provider().get_available_chat_models()
    except SystemExit as exc:
        return {"exit": True, "code_is_message": isinstance(exc.code, str), "message": str(exc.code)}
    return {"exit": False, "models": [m.name for m in models]}


CHECKS = {"hook": check_hook, "registry": check_registry, "provider": check_provider, "one_shot": check_one_shot,
          "parse_failure": check_parse_failure, "startup": check_startup}


if __name__ == "__main__":
    check = CHECKS[sys.argv[1]]
    result = check()
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    print("RESULT: " + json.dumps(result))
