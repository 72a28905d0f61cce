"""Which server answers which model: smart / fast groups, failover order, per-server state.

Each URL in ``LLAMAFILE_SMART_LLM_URL`` / ``LLAMAFILE_FAST_LLM_URL`` is one ``Server`` with its
own connections (probe client, tokenizers, openai SDK client). A comma-separated list is a
group of equivalent servers: the last one that answered is tried first, the others in order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import openai
from pydantic import BaseModel, ValidationError

from llamafile_provider.cascade import ToolMode, choose_tool_mode
from llamafile_provider.dialects import ServerInfo
from llamafile_provider.errors import ConfigurationError, LlamafileError
from llamafile_provider.messages import FunctionSpec
from llamafile_provider.server import AsyncServerClient, ServerClient
from llamafile_provider.settings import LlamafileSettings
from llamafile_provider.tokenizer import AsyncTokenizer, Tokenizer

logger = logging.getLogger(__name__)

FunctionLike = FunctionSpec | Mapping[str, Any]
GROUPS = ("smart", "fast")


@dataclass
class Server:
    """One server URL and everything kept per server."""

    url: str
    alias: str
    settings: LlamafileSettings
    learned_mode: ToolMode | None = None
    _sync: Tokenizer | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        key = self.settings.api_key_value()
        self.client = AsyncServerClient(self.url, api_key=key, timeout=self.settings.timeout)
        self.tokenizer = AsyncTokenizer(self.client, cache_size=self.settings.tokenizer_cache_size)
        # The SDK's own retries: exponential backoff with jitter on connection errors and 5xx.
        self.sdk = openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key or "sk-no-key-required",
                                      timeout=self.settings.timeout, max_retries=self.settings.max_retries)

    def tool_mode(self, info: ServerInfo, preference: str) -> ToolMode:
        """The mode learned from a refusal, else the best one the server supports."""
        return self.learned_mode or choose_tool_mode(info, preference)

    def sync_tokenizer(self) -> Tokenizer:
        if self._sync is None:
            client = ServerClient(self.url, api_key=self.settings.api_key_value(), timeout=self.settings.timeout,
                                  info=self.client.cached_info)
            self._sync = Tokenizer(client, cache_size=self.settings.tokenizer_cache_size)
        return self._sync

    def token_limit(self) -> int:
        info = self.sync_tokenizer().client.info()
        if info.context_size:
            return info.context_size
        if self.settings.context_size:
            return self.settings.context_size
        raise ConfigurationError(
            f"{self.url} ({info.dialect.value}) does not report its context size; set LLAMAFILE_CONTEXT_SIZE "
            "to the -c value it was started with (divided by its number of slots).")

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.sdk.close()
        if self._sync is not None:
            self._sync.client.close()


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
    """Smart and fast server groups, with failover order and optional smart -> fast fallback."""

    def __init__(self, settings: LlamafileSettings) -> None:
        self.settings = settings
        self._servers: dict[str, Server] = {}
        self.groups: dict[str, list[Server]] = {}
        for alias, urls in (("smart", settings.smart_llm_url or []), ("fast", settings.fast_llm_url or [])):
            self.groups[alias] = [self._servers.setdefault(url, Server(url, alias, settings)) for url in urls]

    def candidates(self, model_name: str) -> list[Server]:
        """Servers to try for ``model_name`` ("smart", "fast", or a model id a server reported)."""
        group = self._group_of(model_name)
        servers = list(self.groups[group])
        if group == "smart" and self.settings.fallback_to_fast:
            servers += [s for s in self.groups["fast"] if s not in servers]
        return servers

    def _group_of(self, model_name: str) -> str:
        group = alias_of(model_name)
        if group is not None:
            return group
        name = model_name.strip().lower()
        for alias, servers in self.groups.items():
            for server in servers:
                info = server.client.cached_info
                if info and info.model_id and name in (info.model_id.lower(), _stem(info.model_id)):
                    return alias
        known = sorted({*GROUPS, *(s.client.cached_info.model_id for s in self._servers.values()
                                   if s.client.cached_info and s.client.cached_info.model_id)})
        raise ConfigurationError(f"unknown model {model_name!r}; use one of: {', '.join(known)}")

    def remember(self, server: Server) -> None:
        """Put the server that just answered first in its group."""
        group = self.groups[server.alias]
        if group and group[0] is not server:
            group.remove(server)
            group.insert(0, server)

    async def available_models(self) -> list[ModelInfo]:
        models = []
        for server in self._servers.values():
            try:
                info = await server.client.info()
            except LlamafileError as exc:
                logger.warning("%s (%s) is not available: %s", server.url, server.alias, exc)
                continue
            mode = server.tool_mode(info, self.settings.tool_mode)
            models.append(ModelInfo(
                name=info.model_id or server.alias, alias=server.alias, url=server.url, dialect=info.dialect.value,
                context_size=info.context_size or self.settings.context_size, slots=info.slots,
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


def as_function_specs(functions: Sequence[FunctionLike] | None) -> list[FunctionSpec]:
    """``FunctionSpec``s from specs, OpenAI ``tools`` entries or ``{name, description, parameters}``."""
    specs = []
    for function in functions or []:
        if isinstance(function, FunctionSpec):
            specs.append(function)
            continue
        data = dict(function)
        if data.get("type") == "function" and isinstance(data.get("function"), Mapping):
            data = dict(data["function"])
        try:
            specs.append(FunctionSpec.model_validate(data))
        except ValidationError as exc:
            raise ConfigurationError(f"invalid function spec {function!r}: {exc.errors()[0]['msg']}. Expected "
                                     '{"name": ..., "description": ..., "parameters": {JSON schema}}') from None
    return specs


@dataclass(frozen=True)
class ResponseSchema:
    """A structured-output request: the JSON schema sent to the server and how to read a reply."""

    json_schema: dict[str, Any]
    parse: Callable[[str], Any]


def schema_of(response_schema: Any) -> ResponseSchema | None:
    """Accept a pydantic model class or a JSON-schema dict."""
    if response_schema is None:
        return None
    if isinstance(response_schema, type) and issubclass(response_schema, BaseModel):
        model = response_schema

        def parse_model(content: str) -> Any:
            return model.model_validate_json(content)

        return ResponseSchema(model.model_json_schema(), parse_model)
    if isinstance(response_schema, Mapping):
        schema = dict(response_schema)
        try:
            validator = jsonschema.Draft202012Validator(schema)
        except jsonschema.SchemaError as exc:
            raise ConfigurationError(f"response_schema is not a valid JSON schema: {exc.message}") from None

        def parse_json(content: str) -> Any:
            value = json.loads(content)
            validator.validate(value)
            return value

        return ResponseSchema(schema, parse_json)
    raise ConfigurationError(f"response_schema must be a pydantic model class or a JSON-schema dict, "
                             f"not {type(response_schema).__name__}")
