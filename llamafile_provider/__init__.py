"""Local llamafile / llama.cpp models as first-class LLMs for AutoGPT-style agents.

The public surface is small: the provider, its message types, settings and errors.
``llamafile_provider.testing.ScriptedProvider`` is the test double for your own tests.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from llamafile_provider.errors import (
    AuthenticationError,
    CompletionError,
    ConfigurationError,
    ContextOverflowError,
    InvalidToolCallError,
    LlamafileError,
    ServerError,
    ServerLoadingError,
    ServerUnreachableError,
    TemplateError,
    UnsupportedFeatureError,
)
from llamafile_provider.messages import ChatMessage, ChatResponse, FunctionCall, FunctionSpec, ToolCall, Usage
from llamafile_provider.provider import LlamafileProvider, OpenAICompatibleProvider
from llamafile_provider.server import AsyncServerClient, ServerClient
from llamafile_provider.settings import LlamafileSettings, load_settings
from llamafile_provider.sync import SyncLlamafileProvider, complete
from llamafile_provider.tokenizer import AsyncTokenizer, Tokenizer

try:
    __version__ = version("llamafile-provider")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AsyncServerClient", "AsyncTokenizer", "AuthenticationError", "ChatMessage", "ChatResponse",
    "CompletionError", "ConfigurationError", "ContextOverflowError", "FunctionCall", "FunctionSpec",
    "InvalidToolCallError", "LlamafileError", "LlamafileProvider", "LlamafileSettings",
    "OpenAICompatibleProvider", "ServerClient", "ServerError", "ServerLoadingError",
    "ServerUnreachableError", "SyncLlamafileProvider", "TemplateError", "Tokenizer", "ToolCall",
    "UnsupportedFeatureError", "Usage", "__version__", "complete", "load_settings",
]
