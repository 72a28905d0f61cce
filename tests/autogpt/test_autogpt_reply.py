"""The AutoGPT adapter's pure parts (no forge needed): the reply schema and the startup check."""

from __future__ import annotations

import jsonschema
import pytest

from llamafile_provider.autogpt.reply import MAX_THOUGHT_CHARS, agent_reply_schema, split_reply
from llamafile_provider.autogpt.startup import LlamafileStartupError, check_served, configured_models
from llamafile_provider.messages import FunctionSpec
from llamafile_provider.routing import ModelInfo
from llamafile_provider.settings import load_settings

# The shape of AutoGPT's OneShotAgentActionProposal schema (forge's JSONSchema.to_dict()).
STRATEGY = {"type": "object", "properties": {
    "thoughts": {"type": "object", "properties": {
        "observations": {"type": "string"}, "text": {"type": "string"}, "reasoning": {"type": "string"},
        "self_criticism": {"type": "string"}, "plan": {"type": "array", "items": {"type": "string"}},
        "speak": {"type": "string"}}, "required": ["text"]},
    "use_tool": {"type": "object", "properties": {"name": {"type": "string"}, "arguments": {"type": "object"}}}}}
COMMANDS = [
    FunctionSpec(name="write_file", parameters={"type": "object", "required": ["filename", "contents"], "properties": {
        "filename": {"type": "string"}, "contents": {"type": "string"}}}),
    FunctionSpec(name="finish", parameters={"type": "object", "required": ["reason"],
                                            "properties": {"reason": {"type": "string"}}}),
]
THOUGHTS = {"observations": "o", "text": "t", "reasoning": "r", "self_criticism": "s", "plan": ["a"], "speak": "k"}


def test_reply_schema_pins_use_tool_to_the_offered_commands() -> None:
    validator = jsonschema.Draft202012Validator(agent_reply_schema(STRATEGY, COMMANDS))
    good = {"thoughts": THOUGHTS, "use_tool": {"name": "finish", "arguments": {"reason": "done"}}}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "use_tool": {"name": "web_search", "arguments": {"query": "x"}}})
    assert not validator.is_valid({**good, "use_tool": {"name": "finish", "arguments": {"filename": "x"}}})
    assert not validator.is_valid({"use_tool": good["use_tool"]})  # thoughts are required
    long = {**THOUGHTS, "text": "x" * (MAX_THOUGHT_CHARS + 1)}
    assert not validator.is_valid({**good, "thoughts": long})  # bounded, so the JSON closes early


def test_reply_schema_without_commands_keeps_a_generic_call() -> None:
    validator = jsonschema.Draft202012Validator(agent_reply_schema(STRATEGY, []))
    assert validator.is_valid({"thoughts": THOUGHTS, "use_tool": {"name": "anything", "arguments": {}}})


def test_split_reply() -> None:
    reply, name, arguments = split_reply('{"thoughts": {}, "use_tool": {"name": "finish", "arguments": {"reason": "x"}}}')
    assert (name, arguments) == ("finish", {"reason": "x"}) and "thoughts" in reply
    with pytest.raises(ValueError, match="not an object"):
        split_reply("[1]")
    with pytest.raises(ValueError, match="use_tool"):
        split_reply('{"thoughts": {}}')


def test_configured_models_keep_ids_and_skip_other_providers() -> None:
    environ = {"SMART_LLM": "mistral-7b-instruct-v0.2", "FAST_LLM": "gpt-3.5-turbo"}
    assert configured_models(["gpt-3.5-turbo"], environ) == {"mistral-7b-instruct-v0.2": "smart"}
    assert configured_models([], {"SMART_LLM": "m", "FAST_LLM": "m"}) == {"m": "smart"}


def _info(alias: str, name: str, url: str) -> ModelInfo:
    return ModelInfo(name=name, alias=alias, url=url, dialect="llama-server", context_size=4096, slots=1,
                     tool_mode="constrained", has_function_call_api=False)


def test_check_served_says_what_is_served_where() -> None:
    settings = load_settings(smart_llm_url="http://127.0.0.1:8080", fast_llm_url="http://127.0.0.1:8081",
                             api_key="sk-secret-key-123456")
    served = [_info("smart", "/models/mistral-7b-instruct-v0.2.gguf", "http://127.0.0.1:8080")]
    check_served({"mistral-7b-instruct-v0.2": "smart"}, served, settings)  # the file name counts as the id
    with pytest.raises(LlamafileStartupError) as wrong:
        check_served({"llama-3": "smart", "tiny": "fast"}, served, settings)
    message = str(wrong.value)
    assert "SMART_LLM=llama-3" in message and "mistral-7b-instruct-v0.2.gguf" in message
    assert "FAST_LLM=tiny: no fast server answers at http://127.0.0.1:8081" in message
    assert "sk-secret" not in message
    assert isinstance(wrong.value, SystemExit)  # AutoGPT swallows every Exception on that path
