"""The one exception hierarchy of llamafile-provider, grouped by cause.

    LlamafileError
    ├── ConfigurationError            bad settings or arguments from the caller
    │   └── OutputBudgetError         max_output_tokens cannot hold a constrained reply
    ├── ServerError                   something about the server (carries ``url``)
    │   ├── ServerUnreachableError    nothing answers at the URL
    │   ├── ServerLoadingError        the server is up but still loading its model
    │   ├── ServerTimeoutError        the server took too long to answer
    │   ├── AuthenticationError       the API key is missing or wrong
    │   ├── RequestRejectedError      a 4xx the caller can act on
    │   │   ├── ContextOverflowError  the prompt does not fit the context window
    │   │   └── TemplateError         the chat template refused the messages
    │   ├── UnsupportedFeatureError   this server dialect cannot do that
    │   ├── ServerInternalError       a 5xx that is not "loading"
    │   └── MalformedResponseError    the server answered something unreadable
    └── CompletionError               the model's output cannot be used
        └── InvalidToolCallError      tool calls stayed invalid after every retry

Every message says what to do next. API keys and URL credentials never appear in a message
(``llamafile_provider.redact``).
"""

from __future__ import annotations


class LlamafileError(Exception):
    """Base class of every error raised by llamafile-provider."""


class ConfigurationError(LlamafileError, ValueError):
    """A setting or argument is invalid; the message names it and the accepted values."""


class OutputBudgetError(ConfigurationError):
    """``max_output_tokens`` is too small for the constrained reply's JSON; ``needed`` says
    how many tokens would do (None when no budget can bound the schema)."""

    def __init__(self, message: str, *, needed: int | None) -> None:
        super().__init__(message)
        self.needed = needed


class ServerError(LlamafileError):
    """A problem with a llamafile / llama.cpp server at ``url`` (credentials never in it).

    ``status_code`` is None when the problem was found before sending. ``partial_text`` is
    what a stream had already yielded when it broke (empty otherwise).
    """

    def __init__(self, message: str, *, url: str | None = None, status_code: int | None = None,
                 server_message: str | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status_code = status_code
        self.server_message = server_message
        self.partial_text = ""


class ServerUnreachableError(ServerError):
    """No server answers at the URL (connection refused, DNS failure, connect timeout)."""


class ServerLoadingError(ServerError):
    """The server answered 503 "Loading model": retry after it finishes loading."""


class ServerTimeoutError(ServerError):
    """The server accepted the connection but did not answer within the timeout."""


class AuthenticationError(ServerError):
    """The server rejected the API key (401); set ``LLAMAFILE_API_KEY`` to the server's key."""


class RequestRejectedError(ServerError):
    """The server refused the request as invalid (a 4xx other than 401)."""


class ContextOverflowError(RequestRejectedError):
    """The prompt is larger than the context window of one server slot."""

    def __init__(self, message: str, *, url: str | None = None, prompt_tokens: int | None,
                 context_size: int | None, status_code: int | None = 400,
                 server_message: str | None = None) -> None:
        super().__init__(message, url=url, status_code=status_code, server_message=server_message)
        self.prompt_tokens = prompt_tokens
        self.context_size = context_size


class TemplateError(RequestRejectedError):
    """The model's chat template rejected the message sequence (roles, tool messages)."""


class UnsupportedFeatureError(ServerError):
    """The server's dialect has no such feature (e.g. ``/detokenize`` on llamafiler)."""


class ServerInternalError(ServerError):
    """The server failed with a 5xx that is not a loading state."""


class MalformedResponseError(ServerError):
    """The server's answer is not what its dialect promises (bad JSON, missing fields)."""


class CompletionError(LlamafileError):
    """The model's reply could not be turned into the requested result."""


class InvalidToolCallError(CompletionError):
    """The model kept producing invalid tool calls after the bounded retries."""

    def __init__(self, message: str, *, attempts: int, last_error: str) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last_error = last_error


__all__ = [
    "AuthenticationError",
    "CompletionError",
    "ConfigurationError",
    "ContextOverflowError",
    "InvalidToolCallError",
    "LlamafileError",
    "MalformedResponseError",
    "OutputBudgetError",
    "RequestRejectedError",
    "ServerError",
    "ServerInternalError",
    "ServerLoadingError",
    "ServerTimeoutError",
    "ServerUnreachableError",
    "TemplateError",
    "UnsupportedFeatureError",
]
