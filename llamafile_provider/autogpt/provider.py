"""forge's chat-provider interface on top of ``LlamafileProvider``: forge types in, forge types out.

One instance serves both models (``MultiProvider`` keeps one per provider name): the model id
says which, ``SMART_LLM``'s id goes to the smart servers and ``FAST_LLM``'s to the fast ones.
Everything a local model needs (role folding, retries with the parse error fed back as a turn
the template accepts, exact counts, constrained output) happens in the core provider; what is
AutoGPT-specific here is the one-shot reply schema (``reply.py``) and the error contract: the
agent loop catches only ``InvalidAgentResponseError``, so every failure of a turn becomes one.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from forge.llm.providers.llamafile import llamafile as forge_llamafile
from forge.llm.providers.schema import (
    AssistantChatMessage,
    AssistantFunctionCall,
    AssistantToolCall,
    BaseChatModelProvider,
    ChatMessage,
    ChatModelInfo,
    ChatModelResponse,
    CompletionModelFunction,
    ModelProviderConfiguration,
    ModelProviderCredentials,
    ModelProviderName,
    ModelProviderSettings,
    ModelTokenizer,
)
from forge.utils.exceptions import InvalidAgentResponseError

from llamafile_provider.autogpt.reply import agent_reply_schema, forge_parameters, split_reply
from llamafile_provider.autogpt.startup import LlamafileStartupError, check_served, configured_models
from llamafile_provider.errors import ConfigurationError, LlamafileError
from llamafile_provider.messages import ChatMessage as CoreMessage
from llamafile_provider.messages import FunctionSpec
from llamafile_provider.provider import LlamafileProvider

T = TypeVar("T")
# AutoGPT asks for no output cap; an uncapped small model wrote 4,655 tokens for one reply. It
# keeps its prompt within 3/4 of ``max_tokens`` (``send_token_limit``), so a cap of at most a
# quarter of the context always fits beside it.
DEFAULT_MAX_OUTPUT_TOKENS = 1024
# A model's context until the server has been asked (AutoGPT's startup check updates it).
PROVISIONAL_CONTEXT = 4096


def model_info(name: Any, max_tokens: int = PROVISIONAL_CONTEXT) -> ChatModelInfo:
    """forge's description of a llamafile model. Native function calling is what AutoGPT's
    functions API checks for; the core delivers calls on every server (native or constrained)."""
    return ChatModelInfo(name=name, provider_name=ModelProviderName.LLAMAFILE, prompt_token_cost=0.0,
                         completion_token_cost=0.0, max_tokens=max_tokens, has_function_call_api=True)


class AutoGPTLlamafileProvider(BaseChatModelProvider[Any, ModelProviderSettings]):
    """AutoGPT classic's provider for ``ModelProviderName.LLAMAFILE``, backed by ``LlamafileProvider``."""

    default_settings = ModelProviderSettings(
        name="llamafile_provider",
        description="Local llamafile / llama.cpp models through llamafile-provider",
        configuration=ModelProviderConfiguration(),
        # Present, so MultiProvider does not look for credentials: the core reads LLAMAFILE_* itself.
        credentials=ModelProviderCredentials(),
    )
    CHAT_MODELS = forge_llamafile.LLAMAFILE_CHAT_MODELS

    def __init__(self, settings: ModelProviderSettings | None = None, logger: logging.Logger | None = None) -> None:
        super().__init__(settings=settings, logger=logger)
        try:
            self._core = LlamafileProvider()
        except ConfigurationError as exc:  # a ValueError, which MultiProvider would swallow
            raise LlamafileStartupError(str(exc)) from None

    # ------------------------------------------------------------------ names and models
    def _alias(self, model_name: Any) -> str:
        """"smart" / "fast" for the ids in SMART_LLM / FAST_LLM; any other id goes to the core as is."""
        name = str(getattr(model_name, "value", model_name))
        return configured_models().get(name, name)

    async def get_available_models(self) -> Sequence[ChatModelInfo]:
        """AutoGPT's startup check: every configured model must be served, else one clear exit."""
        available = await self._core.get_available_models()
        check_served(configured_models(), available, self._core.settings)
        infos = []
        for name, alias in configured_models().items():
            info = self.CHAT_MODELS.get(name)
            if info is None:
                continue
            context = next((m.context_size for m in available if m.alias == alias and m.context_size), None)
            if context:
                info.max_tokens = context  # the same object AutoGPT's CHAT_MODELS holds
            infos.append(info)
        return infos

    get_available_chat_models = get_available_models

    def get_token_limit(self, model_name: Any) -> int:
        return self._core.get_token_limit(self._alias(model_name))

    def get_tokenizer(self, model_name: Any) -> ModelTokenizer[int]:
        return self._core.get_tokenizer(self._alias(model_name))

    def count_tokens(self, text: str, model_name: Any) -> int:
        return self._core.count_tokens(text, self._alias(model_name))

    def count_message_tokens(self, messages: ChatMessage | list[ChatMessage], model_name: Any) -> int:
        """The server's ``prompt_tokens`` for these messages, as they will be sent (folded)."""
        listed = [messages] if isinstance(messages, ChatMessage) else list(messages)
        return self._core.count_message_tokens([core_message(m) for m in listed], self._alias(model_name))

    # ------------------------------------------------------------------ chat
    async def create_chat_completion(
        self,
        model_prompt: list[ChatMessage],
        model_name: Any,
        completion_parser: Callable[[AssistantChatMessage], T] = lambda _: None,  # type: ignore[assignment, return-value]
        functions: list[CompletionModelFunction] | None = None,
        max_output_tokens: int | None = None,
        prefill_response: str = "",
        **kwargs: Any,
    ) -> ChatModelResponse[T]:
        """One agent turn. Newer AutoGPT's ``reasoning_effort`` / ``thinking_budget_tokens`` are dropped.

        Every failure of the turn (unparsable after the retries, context overflow, a server gone)
        comes out as ``InvalidAgentResponseError``: the one error AutoGPT's loop handles."""
        converted: list[AssistantChatMessage] = []  # the message the parser saw is the one returned
        try:
            result = await self._complete(model_prompt, model_name, completion_parser, functions or [],
                                          max_output_tokens, prefill_response, converted, kwargs)
        except InvalidAgentResponseError:
            raise
        except LlamafileError as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, InvalidAgentResponseError) else exc
            raise InvalidAgentResponseError(f"{type(cause).__name__}: {cause}") from exc
        info = self.CHAT_MODELS.get(str(getattr(model_name, "value", model_name))) or model_info(model_name)
        usage = result.usage
        if self._budget is not None:
            self._budget.update_usage_and_cost(info, usage.prompt_tokens, usage.completion_tokens)
        return ChatModelResponse(response=converted[-1], parsed_result=result.parsed_result, llm_info=info,
                                 prompt_tokens_used=usage.prompt_tokens, completion_tokens_used=usage.completion_tokens)

    async def _complete(self, model_prompt: list[ChatMessage], model_name: Any,
                        completion_parser: Callable[[AssistantChatMessage], Any],
                        functions: list[CompletionModelFunction], max_output_tokens: int | None,
                        prefill_response: str, converted: list[AssistantChatMessage],
                        kwargs: dict[str, Any]) -> Any:
        specs = [function_spec(f) for f in functions]
        strategy = strategy_schema(completion_parser)
        alias = self._alias(model_name)
        if max_output_tokens is None:
            max_output_tokens = min(DEFAULT_MAX_OUTPUT_TOKENS, self._core.get_token_limit(alias) // 4)
        request: dict[str, Any] = {"max_output_tokens": max_output_tokens, **kwargs}
        if strategy is not None:
            # One constrained JSON reply holds thoughts and the tool call; a prefill would fight it.
            request["response_schema"] = agent_reply_schema(strategy, specs)

            def parse(message: CoreMessage) -> Any:
                converted.append(agent_message(message.content, with_call=bool(specs)))
                return completion_parser(converted[-1])
        else:
            request.update(functions=specs or None, prefill_response=prefill_response)

            def parse(message: CoreMessage) -> Any:
                converted.append(forge_message(message))
                return completion_parser(converted[-1])
        return await self._core.create_chat_completion([core_message(m) for m in model_prompt], alias, parse,
                                                       **request)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ---------------------------------------------------------------------- conversions
def strategy_schema(parser: Callable[..., Any]) -> dict[str, Any] | None:
    """The JSON schema of the reply a forge prompt strategy parses (its ``response_schema``),
    when ``parser`` is such a strategy's bound ``parse_response_content``; else None."""
    owner = getattr(parser, "__self__", None)
    schema = getattr(owner, "response_schema", None)
    to_dict = getattr(schema, "to_dict", None)
    if not callable(to_dict):
        return None
    result = to_dict()
    properties = result.get("properties") if isinstance(result, Mapping) else None
    return dict(result) if isinstance(properties, Mapping) and "thoughts" in properties else None


def function_spec(function: CompletionModelFunction) -> FunctionSpec:
    return FunctionSpec(name=function.name, description=function.description,
                        parameters=forge_parameters(function.parameters))


def core_message(message: ChatMessage) -> dict[str, Any]:
    """A forge message as the OpenAI-style dict the core accepts."""
    role = message.role.value if hasattr(message.role, "value") else str(message.role)
    data: dict[str, Any] = {"role": "user" if role == "function" else role, "content": message.content or ""}
    calls = getattr(message, "tool_calls", None)
    if calls:
        data["tool_calls"] = [{"id": c.id, "type": "function",
                               "function": {"name": c.function.name, "arguments": c.function.arguments}}
                              for c in calls]
    if getattr(message, "tool_call_id", None):
        data["tool_call_id"] = message.tool_call_id  # type: ignore[attr-defined]
    return data


def forge_message(message: CoreMessage) -> AssistantChatMessage:
    calls = [AssistantToolCall(id=c.id, type="function",
                               function=AssistantFunctionCall(name=c.function.name, arguments=c.function.arguments))
             for c in message.tool_calls]
    return AssistantChatMessage(content=message.content, tool_calls=calls or None)


def agent_message(content: str, *, with_call: bool) -> AssistantChatMessage:
    """The constrained reply as AutoGPT expects it: the JSON as text and, when AutoGPT offered its
    commands as functions, ``use_tool`` as the tool call too."""
    reply, name, arguments = split_reply(content)
    calls = None
    if with_call:
        call = AssistantFunctionCall(name=name, arguments=arguments)
        calls = [AssistantToolCall(id=f"call_{secrets.token_hex(8)}", type="function", function=call)]
    return AssistantChatMessage(content=json.dumps(reply, ensure_ascii=False, indent=2), tool_calls=calls)
