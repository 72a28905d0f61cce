"""The chat providers: an OpenAI-compatible base and ``LlamafileProvider`` on top of it.

``OpenAICompatibleProvider`` sends chat requests with the openai SDK, riding on the edge's
one HTTP client per server (the edge's ``RetryPolicy``: jittered backoff on refused
connections, 503 and 5xx; short connect timeout) and typed errors. ``LlamafileProvider`` adds what local servers need: smart/fast routing with failover,
role folding for the model's template on every request, the tool-call cascade, structured
output, server-backed token counting and usage accounting.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import httpx
import openai
from openai.types.chat import ChatCompletion

from llamafile_provider import cascade, chat_formats, classic
from llamafile_provider.budget import skeleton_pieces
from llamafile_provider.cascade import ToolMode
from llamafile_provider.connection import Server
from llamafile_provider.dialects import Dialect, ServerInfo
from llamafile_provider.errors import (
    CompletionError,
    InvalidToolCallError,
    RequestRejectedError,
    UnsupportedFeatureError,
)
from llamafile_provider.messages import (
    ChatMessage,
    ChatResponse,
    FunctionSpec,
    MessageLike,
    Usage,
    as_messages,
)
from llamafile_provider.placement import conversation_key
from llamafile_provider.preflight import fit_context
from llamafile_provider.request import (
    PASSTHROUGH,
    FunctionLike,
    Plan,
    ResponseSchema,
    as_function_specs,
    cache_counts,
    call_text,
    chat_request,
    mode_refused,
    reuse_part,
    sampling_arguments,
    schema_of,
)
from llamafile_provider.routing import CALL_ALIAS, SEAT, ModelInfo, Router, failover
from llamafile_provider.settings import LlamafileSettings, load_settings
from llamafile_provider.tokenizer import Tokenizer
from llamafile_provider.tools import (
    ChoiceMode,
    ToolChoice,
    ToolChoiceLike,
    feedback_message,
    normalize_tool_choice,
    to_tool_calls,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")


class OpenAICompatibleProvider:
    """Chat completions on any OpenAI-compatible server, with typed errors and usage totals."""

    def __init__(self, *, timeout: float = 600.0) -> None:
        self.timeout = timeout
        self.usage = Usage()
        self.usage_by_model: dict[str, Usage] = {}

    async def _send(self, server: Server, dialect: Dialect, request: dict[str, Any]) -> Any:
        """One chat request: the server's one retry policy and error mapping live in the edge."""
        return await server.chat(dialect, request)

    def _count(self, server: Server, reported: Any, requests: int = 1, alias: str | None = None,
               extra: dict[str, Any] | None = None) -> Usage:
        """Add one call's usage to the instance totals (overall and per model alias: the alias the
        call was made for, which a URL shared by smart and fast cannot tell). ``extra``: the
        reply's fields the SDK does not know (llama-server's ``timings``), for cache accounting."""
        usage = Usage(requests=requests)
        if isinstance(reported, dict):  # a stream chunk's usage on openai < 1.26 stays a plain dict
            usage.prompt_tokens = int(reported.get("prompt_tokens") or 0)
            usage.completion_tokens = int(reported.get("completion_tokens") or 0)
        elif reported is not None:
            usage.prompt_tokens, usage.completion_tokens = reported.prompt_tokens, reported.completion_tokens
        usage.cached_prompt_tokens, usage.evaluated_prompt_tokens = cache_counts(reported, extra, usage.prompt_tokens)
        self.usage.add(usage)
        self.usage_by_model.setdefault(alias or CALL_ALIAS.get() or server.alias, Usage()).add(usage)
        return usage


class LlamafileProvider(OpenAICompatibleProvider):
    """Local llamafile / llama.cpp servers as an LLM provider for agents (async)."""

    def __init__(self, settings: LlamafileSettings | None = None, **overrides: Any) -> None:
        self.settings = settings or load_settings(**overrides)
        super().__init__(timeout=self.settings.timeout)
        self.router = Router(self.settings)

    # ------------------------------------------------------------------ chat
    async def create_chat_completion(
        self,
        model_prompt: Sequence[MessageLike] | MessageLike,
        model_name: str = "smart",
        completion_parser: Callable[[ChatMessage], T] | None = None,
        functions: Sequence[FunctionLike] | None = None,
        max_output_tokens: int | None = None,
        prefill_response: str = "",
        *,
        tool_choice: ToolChoiceLike = "auto",
        response_schema: Any = None,
        session: str | None = None,
        **kwargs: Any,
    ) -> ChatResponse[T]:
        """One assistant turn: content, validated tool calls, the parser's result and usage.

        ``session`` names the conversation (an agent) so its steps stay on the server slot that
        caches its prompt; without it the conversation's first message(s) identify it.

        Invalid tool calls and parser errors are fed back to the model and retried up to
        ``fix_failed_parse_tries`` times; then ``InvalidToolCallError`` / ``CompletionError``.
        Unknown keyword arguments (``reasoning_effort``, ``thinking_budget_tokens``...) are dropped.
        """
        messages = as_messages(model_prompt)
        specs = as_function_specs(functions)
        choice = normalize_tool_choice(tool_choice, specs) if specs else None
        sampling = sampling_arguments(kwargs)
        schema = schema_of(response_schema)  # a bad schema fails here, before any request
        cascade.check_schemas(specs, choice, schema.json_schema if schema else None)
        dropped = sorted(set(kwargs) - PASSTHROUGH)
        if dropped:
            logger.debug("dropping arguments the local server cannot use: %s", ", ".join(dropped))

        async def on(server: Server) -> ChatResponse[T]:
            info = await server.client.info()
            uses_tools = choice is not None and choice.mode is not ChoiceMode.NONE
            mode = server.tool_mode(info, self.settings.tool_mode) if uses_tools else None
            while True:
                try:
                    return await self._converse(server, info, mode, messages, specs, choice, completion_parser,
                                                max_output_tokens, prefill_response, schema, sampling)
                except (UnsupportedFeatureError, RequestRejectedError) as exc:
                    lower = mode.fallback() if mode else None
                    if lower is None or not mode_refused(exc):
                        raise
                    logger.warning("%s refused %s tool calls (%s); using %s", server.url, mode.value, exc, lower.value)
                    mode = server.learned_mode = lower

        return await failover(self.router, model_name, on, conversation_key(messages, session))

    async def _converse(self, server: Server, info: ServerInfo, mode: ToolMode | None, messages: list[ChatMessage],
                        specs: list[FunctionSpec], choice: ToolChoice | None,
                        completion_parser: Callable[[ChatMessage], T] | None, max_output_tokens: int | None,
                        prefill: str, schema: ResponseSchema | None, sampling: dict[str, Any]) -> ChatResponse[T]:
        extra: list[ChatMessage] = []
        target = schema.json_schema if schema else None
        both = target is not None and mode is not None  # one reply: the schema's fields and a tool call
        budget = await _output_budget(server, cascade.constrained_schema(mode, specs, choice, target),
                                      max_output_tokens)
        total = Usage()
        tries = self.settings.fix_failed_parse_tries
        last_problem, last_exc, tool_trouble = "", None, False
        shape = cascade.request_shape(info, mode, specs, choice, target, budget)
        if prefill and info.dialect is Dialect.CLASSIC:
            info = await server.client.detect_chat_format()  # its layout, to continue the prefill
        route = classic.prefill_route(info, prefill, shape)
        if route is classic.PrefillRoute.DROP:
            logger.warning("%s (%s): prefill dropped, %s", server.url, info.dialect.value,
                           "the reply is constrained to a schema, which fixes how it starts" if classic.constrained(shape)
                           else "the server would close the prefilled assistant turn and repeat it")
            prefill = ""
        seat = SEAT.get()
        reuse = reuse_part(info.dialect, self.settings.cache_prompt, seat.slot if seat else None)
        for _ in range(tries + 1):
            conversation = cascade.request_conversation(messages, mode, specs, choice, target,
                                                        prefill if route is classic.PrefillRoute.CHAT else "", extra)
            request = await fit_context(
                server, info, conversation, lambda turns: chat_request(
                    info, turns, native_tools=mode is ToolMode.NATIVE, max_output_tokens=max_output_tokens,
                    parts=(sampling, shape, reuse)), max_output_tokens, trim=self.settings.trim_history)
            completion = await (self._continue(server, info, request, prefill) if route is classic.PrefillRoute.CONTINUE
                                else self._send(server, info.dialect, request))
            total.add(self._count(server, completion.usage, extra=completion.model_extra))
            if seat is not None and isinstance((completion.model_extra or {}).get("slot_id"), int):
                seat.reported = completion.model_extra["slot_id"]  # classic /completion says where it ran
            choice0 = completion.choices[0]
            native = [c.model_dump() for c in (choice0.message.tool_calls or [])]
            reply = (cascade.read_combined(mode, choice0.message.content, specs, choice) if both and mode and choice
                     else cascade.read_reply(mode, choice0.message.content, native, specs, choice))
            content = prefill + reply.content if prefill and not reply.calls and not both else reply.content
            # What the model said, as it said it (native calls included), for the feedback turn.
            raw = prefill + (choice0.message.content or "") + "".join("\n" + call_text(c) for c in native)
            if reply.problems:
                last_problem, tool_trouble = "; ".join(reply.problems), True
                extra += [ChatMessage.assistant(raw or "(no reply)"),
                          ChatMessage.user(feedback_message(reply.problems, specs, combined=both))]
                continue
            message = ChatMessage.assistant(content, to_tool_calls(reply.calls))
            try:
                if completion_parser is not None:
                    parsed = completion_parser(message)
                else:
                    parsed = schema.parse(content) if schema else None
            except Exception as exc:  # noqa: BLE001 - any parser error is fed back, as AutoGPT does
                last_problem, last_exc, tool_trouble = f"{type(exc).__name__}: {exc}", exc, False
                extra += [ChatMessage.assistant(raw or "(no reply)"),
                          ChatMessage.user(f"ERROR PARSING YOUR RESPONSE:\n\n{last_problem}")]
                continue
            finish = classic.finish_reason(info.dialect, choice0.finish_reason,
                                           getattr(completion.usage, "completion_tokens", None), request.get("max_tokens"))
            return ChatResponse[T](message=message, parsed_result=parsed, finish_reason=finish,
                                   usage=total, model=info.model_id or "", server_url=server.url,
                                   tool_mode=mode.value if mode else None)
        if tool_trouble:
            raise InvalidToolCallError(
                f"the model at {server.url} gave no valid tool call in {tries + 1} attempts; last problem: "
                f"{last_problem}. A larger model, or LLAMAFILE_FIX_FAILED_PARSE_TRIES, may help.",
                attempts=tries + 1, last_error=last_problem)
        raise CompletionError(f"the reply from {server.url} could not be parsed in {tries + 1} attempts: "
                              f"{last_problem}") from last_exc

    async def _continue(self, server: Server, info: ServerInfo, request: dict[str, Any], prefill: str) -> Any:
        """Classic: the prompt rendered in the server's own layout plus the prefill, continued by
        ``/completion`` (its chat endpoint would close the turn); read back as a chat completion."""
        prompt = chat_formats.render(info.chat_format or "", request["messages"]) + prefill
        answer = await server.client.complete(classic.completion_body(request, prompt))
        completion = classic.as_chat_completion(answer, info.model_id or "local")
        # Where it ran and what it evaluated, for affinity and cache accounting (model_extra).
        completion.update({key: answer[key] for key in ("slot_id", "timings") if key in answer})
        return ChatCompletion.model_validate(completion)

    async def stream_chat_completion(self, model_prompt: Sequence[MessageLike] | MessageLike,
                                     model_name: str = "smart", max_output_tokens: int | None = None,
                                     **kwargs: Any) -> AsyncIterator[str]:
        """Yield the reply's text as it is generated (no tools).

        An error mid-stream is the package's error, with the text yielded so far in its
        ``partial_text``; stopping early (``break``, ``aclose()``) closes the HTTP stream; the
        request is counted in ``usage`` however it ends, with the tokens the server reported.
        """
        messages = as_messages(model_prompt)
        server = await self._first_ready(model_name)
        info = await server.client.info()
        # Classic llamafile sends no usage (nor [DONE]) in streams, so it is not asked for there.
        # In extra_body: openai < 1.26 (AutoGPT classic's lock has 1.8.0) has no stream_options argument.
        usage = {} if info.dialect is Dialect.CLASSIC else {"extra_body": {"stream_options": {"include_usage": True}}}
        request = await fit_context(
            server, info, messages, lambda turns: chat_request(
                info, turns, native_tools=False, max_output_tokens=max_output_tokens,
                parts=(sampling_arguments(kwargs), {"stream": True}, usage,
                       reuse_part(info.dialect, self.settings.cache_prompt, None))),
            max_output_tokens, trim=self.settings.trim_history)
        stream = await self._send(server, info.dialect, request)
        reported, timings, text = None, None, []
        try:
            async for chunk in stream:
                reported = getattr(chunk, "usage", None) or reported
                timings = (chunk.model_extra or {}).get("timings") or timings
                for part in chunk.choices:
                    if part.delta and part.delta.content:
                        text.append(part.delta.content)
                        yield part.delta.content
        except (openai.APIError, httpx.TransportError) as exc:
            raise server.endpoint.stream_error(exc, info.dialect, "".join(text)) from exc
        finally:
            await stream.close()
            self._count(server, reported, alias=self.router.alias_for(server, model_name),
                        extra={"timings": timings} if timings else None)

    async def create_embedding(self, texts: Sequence[str] | str, model_name: str = "fast") -> list[list[float]]:
        """Embeddings where the dialect has them (llama-server with --embeddings, llamafiler)."""
        texts = [texts] if isinstance(texts, str) else list(texts)

        async def on(server: Server) -> list[list[float]]:
            info = await server.client.info()
            if info.dialect is Dialect.CLASSIC:
                raise UnsupportedFeatureError(
                    f"{server.url} is a classic llamafile server, whose embeddings endpoint is disabled "
                    "(503). Serve the model with llamafiler (--server --v2) or llamafile 0.10+.", url=server.url)
            batches = [[t] for t in texts] if info.dialect is Dialect.LLAMAFILER else [texts]
            vectors: list[list[float]] = []
            for batch in batches:
                vectors += await server.embed(info.dialect, info.model_id or "local", batch)
            return vectors

        return await failover(self.router, model_name, on)

    # ------------------------------------------------------------------ routing
    async def _first_ready(self, model_name: str) -> Server:
        async def ready(server: Server) -> Server:
            await server.client.info()
            return server
        server: Server = await failover(self.router, model_name, ready)
        return server

    # ------------------------------------------------------------------ tokens and models
    def get_tokenizer(self, model_name: str = "smart") -> Tokenizer:
        """A blocking tokenizer (AutoGPT's ``ModelTokenizer``) for the model's first server."""
        return self.router.sync_server(model_name).sync_tokenizer()

    def count_tokens(self, text: str, model_name: str = "smart") -> int:
        return self.get_tokenizer(model_name).count_tokens(text)

    def count_message_tokens(self, messages: Sequence[MessageLike] | MessageLike, model_name: str = "smart",
                             functions: Sequence[FunctionLike] | None = None, *, tool_choice: ToolChoiceLike = "auto",
                             prefill_response: str = "", response_schema: Any = None,
                             max_output_tokens: int | None = None) -> int:
        """Equals the server's ``prompt_tokens`` for the first request ``create_chat_completion``
        sends with the same arguments: role folding, native tool definitions (bounded by
        ``max_output_tokens`` as the request bounds them), compat instructions and the prefill
        included — the prompt is built by the same functions as the request."""
        server = self.router.sync_server(model_name)
        tokenizer = server.sync_tokenizer()
        info = tokenizer.client.info()
        plan = self._plan(server, info, messages, functions, tool_choice, response_schema)
        target = plan.budget_target()
        budget = None if target is None or max_output_tokens is None else cascade.OutputBudget(
            max_output_tokens, {piece: tokenizer.count_tokens(piece) for piece in skeleton_pieces(target)})
        if prefill_response and info.dialect is Dialect.CLASSIC:
            info = tokenizer.client.detect_chat_format()  # as _converse does, to route the prefill
        request, raw_prompt = plan.request(info, prefill_response, budget)
        if raw_prompt is not None:
            return tokenizer.count_prompt_tokens(raw_prompt)
        return tokenizer.count_message_tokens(request["messages"], tools=request.get("tools"))

    async def acount_message_tokens(self, messages: Sequence[MessageLike] | MessageLike, model_name: str = "smart",
                                    functions: Sequence[FunctionLike] | None = None, *,
                                    tool_choice: ToolChoiceLike = "auto", prefill_response: str = "",
                                    response_schema: Any = None, max_output_tokens: int | None = None) -> int:
        """``count_message_tokens`` without blocking the event loop."""
        server = await self._first_ready(model_name)
        info = await server.client.info()
        plan = self._plan(server, info, messages, functions, tool_choice, response_schema)
        budget = await _output_budget(server, plan.budget_target(), max_output_tokens)
        if prefill_response and info.dialect is Dialect.CLASSIC:
            info = await server.client.detect_chat_format()
        request, raw_prompt = plan.request(info, prefill_response, budget)
        if raw_prompt is not None:
            return await server.tokenizer.count_prompt_tokens(raw_prompt)
        return await server.tokenizer.count_message_tokens(request["messages"], tools=request.get("tools"))

    def _plan(self, server: Server, info: ServerInfo, messages: Sequence[MessageLike] | MessageLike,
              functions: Sequence[FunctionLike] | None, tool_choice: ToolChoiceLike, response_schema: Any) -> Plan:
        """What ``create_chat_completion`` decides before its first request (for counting)."""
        specs = as_function_specs(functions)
        choice = normalize_tool_choice(tool_choice, specs) if specs else None
        schema = schema_of(response_schema)
        target = schema.json_schema if schema else None
        cascade.check_schemas(specs, choice, target)
        uses_tools = choice is not None and choice.mode is not ChoiceMode.NONE
        mode = server.tool_mode(info, self.settings.tool_mode) if uses_tools else None
        return Plan(as_messages(messages), mode, specs, choice, target)

    def get_token_limit(self, model_name: str = "smart") -> int:
        """Context per slot as the server reports it (``LLAMAFILE_CONTEXT_SIZE`` where it cannot)."""
        return self.router.sync_server(model_name).token_limit()

    async def get_available_models(self) -> list[ModelInfo]:
        return await self.router.available_models()

    get_available_chat_models = get_available_models

    async def aclose(self) -> None:
        await self.router.aclose()

    async def __aenter__(self) -> LlamafileProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _output_budget(server: Server, target: dict[str, Any] | None,
                         max_output_tokens: int | None) -> cascade.OutputBudget | None:
    """The budget a constrained reply must close in, with its fixed pieces measured by the
    server's own tokenizer (cached, so once per schema and server)."""
    if target is None or max_output_tokens is None:
        return None
    counts = {piece: await server.tokenizer.count_tokens(piece) for piece in skeleton_pieces(target)}
    return cascade.OutputBudget(max_output_tokens, counts)
