"""``llamafile-provider doctor``: the single-turn check to run before an agent loop.

For every configured server (each smart and fast URL, once) it goes through what an agent needs,
in order, with the same settings the provider reads: the server answers, accepts the key, speaks a
known dialect, serves a model with enough context per slot, takes a conversation that only works
after role folding, counts tokens exactly, answers a chat, and produces a valid tool call. Each
failure carries the fix; later checks that depend on a failed one are skipped, not guessed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, TypeVar

from llamafile_provider.dialects import Dialect, ServerInfo
from llamafile_provider.errors import (
    AuthenticationError,
    LlamafileError,
    ServerLoadingError,
    ServerUnreachableError,
)
from llamafile_provider.folding import fold_messages
from llamafile_provider.messages import ChatMessage, FunctionSpec
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.redact import mask_url
from llamafile_provider.settings import LlamafileSettings

T = TypeVar("T")

# AutoGPT's first prompt is about 2,450 tokens; a slot needs room for it and for the reply.
MIN_AGENT_CONTEXT = 4096
PROBE = [ChatMessage.user("Reply with the single word OK.")]
# Two system messages and two user turns in a row: a strict template (Mistral, Gemma) answers 400
# unless the roles are folded first.
STRICT_PROBE = [
    ChatMessage.system("You are a terse assistant."),
    ChatMessage.user("Hello."),
    ChatMessage.user("Reply with one word."),
    ChatMessage.system("ERROR PARSING YOUR RESPONSE: answer in one word."),
]
TOOL = FunctionSpec(name="get_weather", description="Current weather for a city.",
                    parameters={"type": "object", "properties": {"city": {"type": "string"}},
                                "required": ["city"]})
TOOL_PROBE = [ChatMessage.user("What is the weather in Paris? Call the tool.")]
KEY_FIX = ("set LLAMAFILE_API_KEY to the key the server was started with (--api-key / --api-key-file), "
           "or remove it from the server")


class Status(str, Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass
class Check:
    """One row of the report."""

    server: str
    url: str
    check: str
    status: Status
    detail: str
    fix: str | None = None
    seconds: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value.lower()}


class _Stop(Exception):
    """A check failed in a way that makes the remaining checks of this server meaningless."""


class _Skip(Exception):
    """One check failed (its row is written); the next checks still make sense."""


class ServerDoctor:
    """The checks for one server URL, run through a provider that knows only that server."""

    def __init__(self, label: str, url: str, settings: LlamafileSettings) -> None:
        # self.url is what the report shows: credentials of a proxy URL masked (the settings
        # below keep the real URL, which the provider splits into a header).
        self.label, self.url = label, mask_url(url)
        self.settings = settings.model_copy(update={"smart_llm_url": [url], "fast_llm_url": [url]})
        self.rows: list[Check] = []

    def add(self, check: str, status: Status, detail: str, fix: str | None = None,
            seconds: float | None = None) -> None:
        self.rows.append(Check(self.label, self.url, check, status, detail, fix, seconds))

    async def timed(self, check: str, call: Callable[[], Awaitable[T]], fix: str) -> tuple[T, float]:
        """Run one request. Auth and reachability failures stop this server; any other error
        becomes a failed row for ``check`` (with ``fix``) and ends only that check."""
        start = time.perf_counter()
        try:
            result = await call()
        except AuthenticationError as exc:
            self.add("authentication", Status.FAIL, str(exc), KEY_FIX)
            raise _Stop from exc
        except (ServerUnreachableError, ServerLoadingError) as exc:
            self.add(check, Status.FAIL, str(exc), "the server went away: ./llamafile-integration/serve.sh "
                     "status shows what it started; check its log")
            raise _Stop from exc
        except LlamafileError as exc:
            self.add(check, Status.FAIL, str(exc), fix, seconds=time.perf_counter() - start)
            raise _Skip from exc
        return result, time.perf_counter() - start

    async def run(self) -> list[Check]:
        async with LlamafileProvider(self.settings) as provider:
            try:
                info = await self.reachable(provider)
                self.describe(info)
                await self.exchange(provider, info)
            except _Stop:
                pass
        return self.rows

    async def reachable(self, provider: LlamafileProvider) -> ServerInfo:
        server = provider.router.groups["smart"][0]
        start = time.perf_counter()
        try:
            info = await server.client.info()
        except AuthenticationError as exc:
            self.add("reachable", Status.OK, "answers (it asks for a key)")
            self.add("authentication", Status.FAIL, str(exc), KEY_FIX)
            raise _Stop from exc
        except ServerUnreachableError as exc:
            self.add("reachable", Status.FAIL, str(exc),
                     f"start the server (./llamafile-integration/serve.sh), or fix the URL ({self.url})")
            raise _Stop from exc
        except ServerLoadingError as exc:
            self.add("reachable", Status.FAIL, str(exc), "wait until the model has loaded, then run doctor again")
            raise _Stop from exc
        except LlamafileError as exc:
            self.add("reachable", Status.FAIL, str(exc), "is this a llamafile / llama.cpp server? check the URL")
            raise _Stop from exc
        self.add("reachable", Status.OK, "answers", seconds=time.perf_counter() - start)
        return info

    def describe(self, info: ServerInfo) -> None:
        """What the probe told: dialect and version, model, context per slot, template."""
        version = info.build_info or info.server_header or "version not reported"
        self.add("dialect", Status.OK, f"{info.dialect.value} ({version})")
        if info.model_id:
            self.add("model", Status.OK, info.model_id)
        else:
            self.add("model", Status.WARN, "the server reports no model id",
                     "harmless; start the server with --alias NAME to get one")
        context = info.context_size or self.settings.context_size
        slots = f", {info.slots} slot(s)" if info.slots else ""
        if context is None:
            self.add("context", Status.FAIL, f"{info.dialect.value} does not report its context size",
                     "set LLAMAFILE_CONTEXT_SIZE to the server's -c divided by its slots (-np)")
        elif context < MIN_AGENT_CONTEXT:
            self.add("context", Status.WARN, f"{context} tokens per slot{slots}",
                     f"agent prompts need more: restart with a larger -c (>= {MIN_AGENT_CONTEXT} per slot) "
                     "or fewer slots (-np)")
        else:
            source = "" if info.context_size else " (from LLAMAFILE_CONTEXT_SIZE)"
            self.add("context", Status.OK, f"{context} tokens per slot{slots}{source}")

    async def exchange(self, provider: LlamafileProvider, info: ServerInfo) -> None:
        """Requests: a chat round trip with token-count exactness, role folding, a tool call."""
        for step in (self.chat, self.folding, self.tool_call):
            try:
                await step(provider, info)
            except _Skip:
                continue

    async def chat(self, provider: LlamafileProvider, info: ServerInfo) -> None:
        counted, _ = await self.timed("tokenizer", lambda: provider.acount_message_tokens(PROBE),
                                      "the server's /tokenize failed: check its log")
        reply, seconds = await self.timed("chat", lambda: provider.create_chat_completion(
            PROBE, max_output_tokens=16, temperature=0), "the server refused a one-message chat: check its log")
        self.add("authentication", Status.OK, "key accepted" if self.settings.api_key else "no key needed")
        self.add("chat", Status.OK, f"replied {_excerpt(reply.message.content)}", seconds=seconds)
        reported = reply.usage.prompt_tokens
        if counted == reported:
            self.add("tokenizer", Status.OK, f"count {counted} == prompt_tokens {reported}")
        elif info.dialect is not Dialect.LLAMA_SERVER:
            self.add("tokenizer", Status.WARN, f"estimate {counted} vs prompt_tokens {reported}",
                     f"{info.dialect.value} does not expose its template, so counts are estimates; "
                     "llamafile 0.10+ / llama-server counts exactly")
        else:
            self.add("tokenizer", Status.FAIL, f"count {counted} != prompt_tokens {reported}",
                     "token counts will be off: please report it with this server's model and template")

    async def folding(self, provider: LlamafileProvider, info: ServerInfo) -> None:
        if info.template:
            turns = len(fold_messages(STRICT_PROBE, info.caps, native_tools=False))
            how = f"folded into {turns} turn(s) for the template from /props"
        else:
            how = f"folded; {info.dialect.value} does not expose its template"
        _, seconds = await self.timed("role folding", lambda: provider.create_chat_completion(
            STRICT_PROBE, max_output_tokens=8, temperature=0),
            "the chat template refused even the folded conversation: please report it with the model")
        self.add("role folding", Status.OK, f"{len(STRICT_PROBE)} messages accepted ({how})", seconds=seconds)

    async def tool_call(self, provider: LlamafileProvider, info: ServerInfo) -> None:
        reply, seconds = await self.timed("tool call", lambda: provider.create_chat_completion(
            TOOL_PROBE, functions=[TOOL], tool_choice="required", max_output_tokens=64, temperature=0),
            "the model gave no valid call: try a larger model, or LLAMAFILE_TOOL_MODE=constrained")
        calls = reply.message.tool_calls
        if not calls:
            self.add("tool call", Status.FAIL, "no tool call in the reply",
                     "try LLAMAFILE_TOOL_MODE=constrained (a schema forces the call)", seconds=seconds)
            return
        call = calls[0].function
        self.add("tool call", Status.OK, f"{reply.tool_mode}: {call.name}({_excerpt(json.dumps(call.arguments))})",
                 seconds=seconds)


def servers_of(settings: LlamafileSettings) -> list[tuple[str, str]]:
    """(label, url) for every configured server, each URL once ("smart+fast" when shared)."""
    labels: dict[str, list[str]] = {}
    for alias, urls in (("smart", settings.smart_llm_url or []), ("fast", settings.fast_llm_url or [])):
        for url in urls:
            labels.setdefault(url, []).append(alias)
    return [("+".join(aliases), url) for url, aliases in labels.items()]


async def diagnose(settings: LlamafileSettings) -> list[Check]:
    """Every check for every configured server, in order (one server at a time: 2-core friendly)."""
    rows: list[Check] = []
    for label, url in servers_of(settings):
        rows += await ServerDoctor(label, url, settings).run()
    return rows


def render(rows: list[Check]) -> str:
    """A readable table, then the fix for each failure and warning."""
    table = [("server", "url", "check", "result", "time", "detail")]
    for row in rows:
        seconds = f"{row.seconds:.2f}s" if row.seconds is not None else ""
        table.append((row.server, row.url, row.check, row.status.value, seconds, _one_line(row.detail)))
    widths = [max(len(line[i]) for line in table) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line[:5], widths)) + "  " + line[5]
             for line in table]
    fixes = [f"  {row.server} {row.url} {row.check}: {row.fix}" for row in rows
             if row.fix and row.status in (Status.FAIL, Status.WARN)]
    failed = sum(row.status is Status.FAIL for row in rows)
    lines.append("")
    lines.append(f"{failed} check(s) failed." if failed else "All checks passed.")
    if fixes:
        lines += ["", "How to fix:", *fixes]
    return "\n".join(lines)


def report_json(rows: list[Check]) -> str:
    return json.dumps({"ok": not any(r.status is Status.FAIL for r in rows),
                       "checks": [r.as_json() for r in rows]}, indent=2)


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _excerpt(text: str | None, limit: int = 40) -> str:
    return repr(_one_line(text or "", limit))
