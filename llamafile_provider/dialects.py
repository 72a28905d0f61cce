"""What differs between llamafile server dialects, as pure functions (no I/O).

* ``classic``      — ``llamafile --server`` 0.8–0.9 (a 2024 llama.cpp server fork)
* ``llamafiler``   — ``llamafile --server --v2`` / the ``llamafiler`` binary
* ``llama-server`` — llamafile 0.10+ and upstream llama.cpp's ``llama-server``

The HTTP edge (``server.py``) sends what these functions build and hands them what came back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from llamafile_provider.errors import (
    AuthenticationError,
    ConfigurationError,
    ContextOverflowError,
    MalformedResponseError,
    RequestRejectedError,
    ServerError,
    ServerInternalError,
    ServerLoadingError,
    TemplateError,
    UnsupportedFeatureError,
)
from llamafile_provider.templates import ChatTemplate, TemplateCaps


class Dialect(str, Enum):
    """Which server answers at a URL."""

    CLASSIC = "classic"
    LLAMAFILER = "llamafiler"
    LLAMA_SERVER = "llama-server"


@dataclass(frozen=True)
class ServerInfo:
    """What one probe learned about a server."""

    base_url: str
    dialect: Dialect
    model_id: str | None = None
    context_size: int | None = None  # tokens per slot
    slots: int | None = None
    template: ChatTemplate | None = None
    build_info: str | None = None
    server_header: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    # Classic only, learned by one probe (``chat_formats``): the built-in layout the server
    # applies ("" when no known layout matched) and whether its prompts start with BOS.
    chat_format: str | None = None
    add_bos: bool | None = None

    @property
    def caps(self) -> TemplateCaps:
        return self.template.caps if self.template else TemplateCaps()


def normalize_base_url(url: str) -> str:
    """The server root for any spelling users write: with or without ``/v1``, trailing slashes.

    ``http://localhost:8081/v1/`` -> ``http://localhost:8081`` (the port is kept intact).
    """
    raw = url.strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"invalid server URL {raw!r}: expected http(s)://HOST:PORT, e.g. http://localhost:8080/v1"
        )
    try:
        parts.port  # noqa: B018 - validates the port number
    except ValueError as exc:
        raise ConfigurationError(f"invalid port in server URL {raw!r}: {exc}") from None
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def detect(base_url: str, props: httpx.Response) -> tuple[Dialect, dict[str, Any]]:
    """Tell the dialect from the answer to ``GET /props``; also its body (empty for llamafiler)."""
    server_header = props.headers.get("server", "")
    if props.status_code == 404 and server_header.startswith("llamafile/"):
        return Dialect.LLAMAFILER, {}
    if props.status_code in (404, 405):  # every llama.cpp server but llamafiler has /props
        raise MalformedResponseError(
            f"{base_url} answered GET /props with {props.status_code}, so no llamafile or llama.cpp server "
            "listens there (another program does). Check the port in LLAMAFILE_SMART_LLM_URL / "
            "LLAMAFILE_FAST_LLM_URL, or start the server with ./llamafile-integration/serve.sh.",
            url=base_url, status_code=props.status_code)
    if props.status_code != 200:
        raise error_from_response(props, base_url, Dialect.LLAMA_SERVER)
    body = _json_object(props, base_url)
    return (Dialect.LLAMA_SERVER if "chat_template" in body else Dialect.CLASSIC), body


def info_from_props(base_url: str, dialect: Dialect, body: dict[str, Any], server_header: str | None,
                    models: httpx.Response | None, add_bos: bool | None, add_eos: bool | None) -> ServerInfo:
    """Assemble ``ServerInfo`` from the probe's answers (``/props``, ``/v1/models``, ``/tokenize``)."""
    model_id = _model_id(models)
    if dialect is Dialect.LLAMAFILER:
        return ServerInfo(base_url, dialect, model_id=model_id, server_header=server_header)
    settings = body.get("default_generation_settings") or {}
    context_size = settings.get("n_ctx")
    slots = body.get("total_slots")
    template = None
    if dialect is Dialect.LLAMA_SERVER and body.get("chat_template"):
        template = ChatTemplate(
            source=body["chat_template"], bos_token=body.get("bos_token") or "",
            eos_token=body.get("eos_token") or "", add_bos=bool(add_bos), add_eos=bool(add_eos),
            caps=TemplateCaps.from_props(body.get("chat_template_caps")),
        )
    if model_id is None:
        model_id = body.get("model_alias") or settings.get("model") or body.get("model_path")
    return ServerInfo(
        base_url, dialect, model_id=model_id,
        context_size=int(context_size) if isinstance(context_size, int) else None,
        slots=int(slots) if isinstance(slots, int) else None,
        template=template, build_info=body.get("build_info"), server_header=server_header,
    )


def _model_id(models: httpx.Response | None) -> str | None:
    if models is None or models.status_code != 200:
        return None
    try:
        data = models.json().get("data") or []
        return str(data[0]["id"]) if data else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


# --- tokenizer requests -------------------------------------------------------------------

def tokenize_body(dialect: Dialect, text: str, add_special: bool) -> dict[str, Any]:
    """The ``/tokenize`` body; every dialect parses special-token text like chat does."""
    if dialect is Dialect.CLASSIC:
        return {"content": text}  # never adds BOS; special text always parsed
    if dialect is Dialect.LLAMAFILER:
        return {"prompt": text, "add_special": add_special, "parse_special": True}
    return {"content": text, "add_special": add_special, "parse_special": True}


def parse_tokens(response: httpx.Response, base_url: str, dialect: Dialect) -> list[int] | list[str]:
    """Token ids (classic, llama-server) or token pieces (llamafiler) from ``/tokenize``."""
    tokens = _json_object(response, base_url).get("tokens")
    if not isinstance(tokens, list):
        raise MalformedResponseError(f"{base_url}/tokenize answered without a token list", url=base_url)
    if dialect is Dialect.LLAMAFILER:
        return [str(t) for t in tokens]
    if tokens and isinstance(tokens[0], dict):  # with_pieces form
        return [int(t["id"]) for t in tokens]
    return [int(t) for t in tokens]


def parse_detokenized(response: httpx.Response, base_url: str) -> str:
    content = _json_object(response, base_url).get("content")
    if not isinstance(content, str):
        raise MalformedResponseError(f"{base_url}/detokenize answered without content", url=base_url)
    return content


# --- errors -------------------------------------------------------------------------------

_OVERFLOW = re.compile(r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens\)")
_TEMPLATE_MARKERS = (
    "Jinja Exception", "Conversation roles must alternate", "Only user and assistant roles",
    "Cannot have 2 or more assistant messages", "chat template",
)
_UNSUPPORTED_MARKERS = ("not supported yet", "requires --jinja", "not_supported_error", "does not support")


def error_from_response(response: httpx.Response, base_url: str, dialect: Dialect) -> ServerError:
    """Map any error answer — JSON envelope or plain text — into the package's hierarchy."""
    status = response.status_code
    message, kind, body = _error_message(response)
    where = f"{base_url} ({dialect.value})"
    common: dict[str, Any] = {"url": base_url, "status_code": status, "server_message": message}
    if status == 401:
        return AuthenticationError(
            f"{where} rejected the API key (401). Set LLAMAFILE_API_KEY to the key the server was "
            "started with (its --api-key), or unset it if the server has none.", **common)
    if status == 503 and (kind == "unavailable_error" or "loading" in message.lower()):
        return ServerLoadingError(f"{where} is still loading its model; retry in a few seconds.", **common)
    if kind == "exceed_context_size_error" or _OVERFLOW.search(message) or "out_of_context" in message:
        match = _OVERFLOW.search(message)
        prompt_tokens = body.get("n_prompt_tokens") or (int(match.group(1)) if match else None)
        context_size = body.get("n_ctx") or (int(match.group(2)) if match else None)
        size = f" ({prompt_tokens} tokens > {context_size} per slot)" if prompt_tokens and context_size else ""
        return ContextOverflowError(
            f"the prompt does not fit the context window of {where}{size}. Shorten the conversation, "
            "or restart the server with a larger -c / fewer slots (-np).",
            prompt_tokens=prompt_tokens, context_size=context_size, **common)
    if any(marker in message for marker in _TEMPLATE_MARKERS) and status in (400, 500):
        return TemplateError(f"the chat template of {where} rejected the messages: {message}", **common)
    if status in (404, 405, 501) or any(marker in message or marker == kind for marker in _UNSUPPORTED_MARKERS):
        return UnsupportedFeatureError(f"{where} does not support this request: {message}", **common)
    if 400 <= status < 500:
        return RequestRejectedError(f"{where} rejected the request ({status}): {message}", **common)
    return ServerInternalError(f"{where} failed ({status}): {message}", **common)


def _error_message(response: httpx.Response) -> tuple[str, str, dict[str, Any]]:
    """(message, type, error object) from a JSON envelope, or the plain-text body."""
    text = response.text.strip()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed)
        if isinstance(error, dict):
            return str(error.get("message") or text), str(error.get("type") or ""), error
        return str(error), "", {}
    return text or response.reason_phrase or f"HTTP {response.status_code}", "", {}


def _json_object(response: httpx.Response, base_url: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        try:
            path = response.request.url.path
        except RuntimeError:  # a response built by hand has no request
            path = ""
        raise MalformedResponseError(
            f"{base_url}{path} answered ({response.status_code}) with something that is not a JSON object: "
            f"{response.text[:200]!r}. Check that a llamafile or llama.cpp server (not another program) "
            "listens at that URL (LLAMAFILE_SMART_LLM_URL / LLAMAFILE_FAST_LLM_URL).", url=base_url)
    return body
