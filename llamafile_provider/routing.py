"""Which server answers which model: smart / fast groups, failover order, per-server state.

Each URL in ``LLAMAFILE_SMART_LLM_URL`` / ``LLAMAFILE_FAST_LLM_URL`` is one ``Server`` with one
connection set (an HTTP client shared by the edge and the openai SDK, a blocking client for the
sync methods). A comma-separated list is a group of equivalent servers: the last one that
answered is tried first, the others in order. Any model id a server serves works as a name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from llamafile_provider.cascade import ToolMode
from llamafile_provider.connection import Server
from llamafile_provider.dialects import Dialect
from llamafile_provider.errors import (
    AuthenticationError,
    ConfigurationError,
    LlamafileError,
    ServerError,
    ServerInternalError,
    ServerLoadingError,
    ServerTimeoutError,
    ServerUnreachableError,
)
from llamafile_provider.placement import Placement
from llamafile_provider.settings import LlamafileSettings

logger = logging.getLogger(__name__)

GROUPS = ("smart", "fast")
# Worth another server: the one we asked is down, loading, too slow, or broken.
FAILOVER_ERRORS = (ServerUnreachableError, ServerLoadingError, ServerTimeoutError, ServerInternalError)


class ModelInfo(BaseModel):
    """A model some configured server serves."""

    name: str
    alias: str
    url: str
    dialect: str
    context_size: int | None
    slots: int | None
    tool_mode: str
    has_function_call_api: bool


class Router:
    """Smart and fast server groups, with failover order and optional smart -> fast fallback.

    A URL listed in both groups (``LLAMAFILE_API_BASE``) is one ``Server``: one connection set."""

    def __init__(self, settings: LlamafileSettings) -> None:
        self.settings = settings
        self.placement = Placement()
        self._servers: dict[str, Server] = {}
        self.groups: dict[str, list[Server]] = {}
        for alias, urls in (("smart", settings.smart_llm_url or []), ("fast", settings.fast_llm_url or [])):
            group = self.groups[alias] = []
            for url in urls:
                if url not in self._servers:
                    self._servers[url] = Server(url, settings)
                server = self._servers[url]
                if server not in group:
                    server.aliases.append(alias)
                    group.append(server)

    def candidates(self, model_name: str) -> list[Server]:
        """Servers to try for ``model_name`` ("smart", "fast", or any model id a server serves),
        probing (blocking) the servers not yet probed when the name is a model id."""
        group = self._group_of(model_name)
        if group is None:
            failures: dict[str, LlamafileError] = {}
            for server in self._unprobed():
                try:
                    server.sync_tokenizer().client.info()
                except LlamafileError as exc:
                    failures[server.url] = exc
            group = self._resolve(model_name, failures)
        return self._members(group)

    async def acandidates(self, model_name: str) -> list[Server]:
        """``candidates`` for async code: probes without blocking the event loop."""
        group = self._group_of(model_name)
        if group is None:
            unprobed = self._unprobed()
            results = await asyncio.gather(*(s.client.info() for s in unprobed), return_exceptions=True)
            failures = {s.url: r for s, r in zip(unprobed, results) if isinstance(r, LlamafileError)}
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, LlamafileError):
                    raise result
            group = self._resolve(model_name, failures)
        return self._members(group)

    def alias_for(self, server: Server, model_name: str) -> str:
        """The alias a call's usage is counted under: the group asked for when the server is in it
        (a URL shared by smart and fast), else the server's own group (smart -> fast fallback)."""
        group = alias_of(model_name) or self._group_of(model_name)
        return group if group in server.aliases else server.alias

    def _members(self, group: str) -> list[Server]:
        servers = list(self.groups[group])
        if group == "smart" and self.settings.fallback_to_fast:
            servers += [s for s in self.groups["fast"] if s not in servers]
        return servers

    def _unprobed(self) -> list[Server]:
        return [s for s in self._servers.values() if s.client.cached_info is None]

    def _group_of(self, model_name: str) -> str | None:
        group = alias_of(model_name)
        if group is not None:
            return group
        name = model_name.strip().lower()
        for alias, servers in self.groups.items():
            for server in servers:
                info = server.client.cached_info
                if info and info.model_id and name in (info.model_id.lower(), _stem(info.model_id)):
                    return alias
        return None

    def _resolve(self, model_name: str, failures: dict[str, LlamafileError]) -> str:
        """The group serving ``model_name`` now that every server was asked, else a clear error:
        a server that rejected the API key says so; otherwise, what each server serves."""
        group = self._group_of(model_name)
        if group is not None:
            return group
        for error in failures.values():
            if isinstance(error, AuthenticationError):
                raise error
        served = []
        for server in self._servers.values():
            info = server.client.cached_info
            what = (repr(info.model_id) if info and info.model_id else "an unnamed model" if info
                    else f"nothing yet ({type(failures.get(server.url)).__name__})")
            served.append(f"{server.url} ({'/'.join(server.aliases)}) serves {what}")
        raise ConfigurationError(f"unknown model {model_name!r}: no configured server serves it; "
                                 f"{'; '.join(served)}. Use 'smart', 'fast' or one of those model ids.")

    def remember(self, server: Server) -> None:
        """Put the server that just answered first in its groups."""
        for alias in server.aliases:
            group = self.groups[alias]
            if group[0] is not server:
                group.remove(server)
                group.insert(0, server)

    def sync_server(self, model_name: str) -> Server:
        """The server the blocking methods use: the first candidate that answers, as in the async
        failover; on first contact, when none answers yet, the first to come up within
        ``LLAMAFILE_STARTUP_TIMEOUT``."""
        candidates = self.candidates(model_name)
        errors: list[ServerError] = []
        for server in candidates:
            try:
                server.sync_tokenizer().client.info()
                return server
            except (ServerUnreachableError, ServerLoadingError, ServerTimeoutError, ServerInternalError) as exc:
                errors.append(exc)
        timeout = self.settings.startup_timeout
        if timeout <= 0 or any(s.client.cached_info for s in candidates) or not all(
                isinstance(e, (ServerUnreachableError, ServerLoadingError)) for e in errors):
            raise errors[0]
        logger.warning("no server answers yet at %s; waiting up to %.0fs for one to finish loading "
                       "(LLAMAFILE_STARTUP_TIMEOUT)", ", ".join(s.url for s in candidates), timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for server in candidates:
                client = server.sync_tokenizer().client
                with contextlib.suppress(ServerUnreachableError, ServerTimeoutError):
                    if client.is_ready():
                        client.info(refresh=True)
                        return server
            time.sleep(0.25)
        raise candidates[0].endpoint.not_ready(timeout, loading=False)

    async def first_ready(self, servers: Sequence[Server], timeout: float) -> Server:
        """The first of ``servers`` to become ready (refused / 503 while loading), polled together."""
        logger.warning("no server answers yet at %s; waiting up to %.0fs for one to finish loading "
                       "(LLAMAFILE_STARTUP_TIMEOUT)", ", ".join(s.url for s in servers), timeout)
        tasks = {asyncio.ensure_future(s.client.wait_until_ready(timeout)): s for s in servers}
        pending, errors = set(tasks), []
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is None:
                        return tasks[task]
                    errors.append(task.exception())
        finally:
            for task in pending:
                task.cancel()
        raise errors[0]  # type: ignore[misc]

    async def available_models(self) -> list[ModelInfo]:
        """One entry per alias and server that answers (a URL shared by smart and fast: two)."""
        models = []
        for alias, servers in self.groups.items():
            for server in servers:
                try:
                    info = await server.client.info()
                except LlamafileError as exc:
                    logger.warning("%s (%s) is not available: %s", server.url, alias, exc)
                    continue
                mode = server.tool_mode(info, self.settings.tool_mode)
                models.append(ModelInfo(
                    name=info.model_id or alias, alias=alias, url=server.url, dialect=info.dialect.value,
                    context_size=server.context_limit(info), slots=info.slots,
                    tool_mode=mode.value, has_function_call_api=mode is ToolMode.NATIVE))
        return models

    async def aclose(self) -> None:
        for server in self._servers.values():
            await server.aclose()


def alias_of(model_name: str) -> str | None:
    """"smart" / "fast" for the names users write for them ("Smart", "llamafile-fast"), else None."""
    name = model_name.strip().lower().removeprefix("llamafile-").removeprefix("llamafile/")
    return name if name in GROUPS else None


def _stem(model_id: str) -> str:
    name = model_id.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return name[: -len(".gguf")] if name.endswith(".gguf") else name


@dataclass
class Seat:
    """Where the current call runs: its conversation key, server and the slot asked for (None:
    the server picks); ``reported`` is the slot the server says it used, where it says so."""

    key: str | None
    server: Server
    slot: int | None
    reported: int | None = None


# The current call's seat and the alias ("smart" / "fast") its usage counts under; per call
# (per asyncio task), because one server may serve both aliases.
SEAT: ContextVar[Seat | None] = ContextVar("llamafile_seat", default=None)
CALL_ALIAS: ContextVar[str | None] = ContextVar("llamafile_call_alias", default=None)


async def failover(router: Router, model_name: str, call: Callable[[Server], Awaitable[Any]],
                   key: str | None = None) -> Any:
    """Each candidate in turn (a down one costs seconds: short connect timeout, no retried
    timeouts). The group asked for is ordered by placement (the conversation's pinned server
    unless full, then the least busy); smart -> fast fallbacks come after it. On first contact,
    when every candidate is down or loading, wait for the first to come up, bounded by
    ``LLAMAFILE_STARTUP_TIMEOUT``."""
    errors: list[ServerError] = []
    candidates = await router.acandidates(model_name)
    asked = router.alias_for(candidates[0], model_name)
    group = [s for s in candidates if asked in s.aliases]
    ordered = router.placement.order(key, group) + [s for s in candidates if s not in group]
    for server in ordered:
        alias = router.alias_for(server, model_name)
        if errors and alias != asked:
            logger.warning("every %s server failed; falling back to the %s model at %s", asked, alias, server.url)
        try:
            result = await _seated(router, key, alias, server, call)
        except FAILOVER_ERRORS as exc:
            logger.warning("%s (%s) failed: %s", server.url, alias, exc)
            errors.append(exc)
            continue
        router.remember(server)
        return result
    starting = [s for s in candidates if s.client.cached_info is None]
    if (router.settings.startup_timeout > 0 and len(starting) == len(candidates)
            and all(isinstance(e, (ServerUnreachableError, ServerLoadingError)) for e in errors)):
        server = await router.first_ready(starting, router.settings.startup_timeout)
        result = await _seated(router, key, router.alias_for(server, model_name), server, call)
        router.remember(server)
        return result
    if len(errors) == 1:
        raise errors[0]
    raise type(errors[-1])(f"every server for {model_name!r} failed: " + " | ".join(map(str, errors)),
                           url=errors[-1].url)


async def _seated(router: Router, key: str | None, alias: str, server: Server,
                  call: Callable[[Server], Awaitable[Any]]) -> Any:
    """``call`` on ``server`` with its seat chosen, counted in flight, and pinned once it answered."""
    slot = await _choose_slot(router, key, server) if key is not None else None
    seat, placement = Seat(key, server, slot), router.placement
    tokens = SEAT.set(seat), CALL_ALIAS.set(alias)
    placement.begin(server.url, slot)
    try:
        result = await call(server)
    finally:
        placement.end(server.url, slot)
        SEAT.reset(tokens[0])
        CALL_ALIAS.reset(tokens[1])
    if key is not None:
        placement.pin(key, server.url, seat.reported if seat.reported is not None else slot)
    return result


async def _choose_slot(router: Router, key: str, server: Server) -> int | None:
    """The slot to ask for (affinity on): llamafiler cannot choose one; llama-server WAITS for
    a busy slot it is asked for, so its ``/slots`` is read first (other clients may hold a slot;
    classic b2282 takes another free slot by itself)."""
    if not router.settings.slot_affinity:
        return None
    info = await server.client.info()
    if info.dialect is Dialect.LLAMAFILER or (info.slots or 1) <= 1:
        return None  # one slot: asking for it is what the server does anyway
    busy: frozenset[int] = frozenset()
    if info.dialect is Dialect.LLAMA_SERVER:
        with contextlib.suppress(LlamafileError, ValueError):
            busy = await server.client.busy_slots()
    return router.placement.slot_for(key, server, busy)
