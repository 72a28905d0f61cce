"""Configuration: environment variables and ``.env``, validated with clear messages.

Precedence: arguments given in code > environment > ``.env`` > defaults.
``describe()`` tells where each active value came from, with the API key and URL credentials masked.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llamafile_provider.dialects import normalize_base_url
from llamafile_provider.errors import ConfigurationError
from llamafile_provider.redact import mask_secret, mask_url, redact

DEFAULT_SMART_URL = "http://localhost:8080"
DEFAULT_FAST_URL = "http://localhost:8081"
ENV_PREFIX = "LLAMAFILE_"

ToolMode = Literal["auto", "native", "constrained", "compat"]
logger = logging.getLogger(__name__)

# LLAMAFILE_* variables that the same .env holds for others: the shell scripts in
# llamafile-integration/ (ports, models, downloads) and the AutoGPT hook. Not typos.
OTHER_VARIABLES = frozenset({
    "ALLOW_NO_KEY", "AUTOGPT", "BINARY_FILE", "BINARY_SHA256", "BINARY_URL", "DIALECT", "ENV_FILE", "HOST",
    "MODELS_DIR",
    "REQUIRE_SHA256", "RUN_DIR", "SERVER_ARGS",
    *(f"{role}_{what}" for role in ("SMART", "FAST")
      for what in ("MODEL_URL", "MODEL_SHA256", "MODEL_FILE", "PORT", "SERVER_ARGS")),
})


def _split_urls(value: Any) -> list[str] | None:
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    urls = [normalize_base_url(str(item)) for item in items if str(item).strip()]
    return urls or None


class LlamafileSettings(BaseSettings):
    """Every knob of the provider; each field is read from ``LLAMAFILE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore",
                                      validate_default=True)

    api_base: str | None = Field(None, description="One server for both models (AutoGPT's old setting).")
    smart_llm_url: list[str] | None = Field(
        None, description="Smart model server(s), comma-separated equivalents for failover.")
    fast_llm_url: list[str] | None = Field(
        None, description="Fast model server(s), comma-separated equivalents for failover.")
    api_key: SecretStr | None = Field(None, description="The servers' --api-key, if they have one.")
    fallback_to_fast: bool = Field(False, description="Use the fast model when every smart server is down.")
    tool_mode: ToolMode = Field("auto", description="auto | native | constrained | compat.")
    timeout: float = Field(600.0, gt=0, description="Seconds to wait for one reply (local models are slow).")
    max_retries: int = Field(
        3, ge=0, le=20, description="Retries on connection errors, 503 and 5xx (backoff with jitter).")
    connect_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for a connection: a down server fails over this fast.")
    startup_timeout: float = Field(
        600.0, ge=0, description="Seconds to wait, on first contact, for servers that are still loading "
                                 "(the same variable bounds serve.sh's own wait).")
    trim_history: bool = Field(
        False, description="Drop the oldest non-system turns when a prompt does not fit (logged).")
    fix_failed_parse_tries: int = Field(3, ge=0, le=10, description="Re-asks after an invalid reply.")
    context_size: int | None = Field(
        None, gt=0, description="Context per slot when the server does not report it (llamafiler).")
    tokenizer_cache_size: int = Field(4096, ge=0, description="Texts whose token counts are cached.")
    cache_prompt: bool = Field(
        True, description="Ask servers to reuse a cached prompt prefix (cache_prompt; classic defaults it off).")
    slot_affinity: bool = Field(
        True, description="Keep each conversation on the server slot that holds its cached prefix.")

    @field_validator("smart_llm_url", "fast_llm_url", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> list[str] | None:
        return _split_urls(value)

    @field_validator("api_base", mode="before")
    @classmethod
    def _api_base(cls, value: Any) -> str | None:
        return normalize_base_url(str(value)) if value else None

    @model_validator(mode="after")
    def _fill_urls(self) -> LlamafileSettings:
        """A lone LLAMAFILE_API_BASE serves both models, as in AutoGPT's own provider."""
        if self.smart_llm_url is None:
            self.smart_llm_url = [self.api_base or DEFAULT_SMART_URL]
        if self.fast_llm_url is None:
            self.fast_llm_url = [self.api_base] if self.api_base else [DEFAULT_FAST_URL]
        return self

    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None

    def __repr_args__(self) -> Any:
        """Reprs show URLs with their credentials masked (the key is a ``SecretStr`` already)."""
        for name, value in super().__repr_args__():
            if isinstance(value, str):
                value = mask_url(value)
            elif isinstance(value, list):
                value = [mask_url(v) if isinstance(v, str) else v for v in value]
            yield name, value

    def describe(self) -> list[tuple[str, str, str]]:
        """(setting, value, source) for every field; the key is masked, never printed."""
        given = getattr(self, "_given", set())
        environ = {key.upper() for key in os.environ}  # names are read case-insensitively
        dotenv = {key.upper() for key in _dotenv(self)}
        rows = []
        for name in type(self).model_fields:
            env_name = ENV_PREFIX + name.upper()
            if name in given:
                source = "argument"
            elif env_name in environ:
                source = "environment"
            elif env_name in dotenv:
                source = ".env"
            else:
                source = "default"
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown = mask_secret(value.get_secret_value())
            elif isinstance(value, list):
                shown = ",".join(map(mask_url, value))
            else:
                shown = "" if value is None else mask_url(str(value))
            rows.append((env_name, shown, source))
        return rows


def load_settings(**overrides: Any) -> LlamafileSettings:
    """Build settings, turning validation errors into one ``ConfigurationError`` that names each
    bad variable and what it accepts."""
    try:
        settings = LlamafileSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(redact(f"invalid llamafile settings: {problems}")) from None
    except ConfigurationError as exc:
        raise ConfigurationError(redact(f"invalid llamafile settings: {exc}")) from None
    object.__setattr__(settings, "_given", {k for k, v in overrides.items() if v is not None})
    warn_unknown_variables([*os.environ, *_dotenv(settings)])
    return settings


def _dotenv(settings: LlamafileSettings) -> Mapping[str, str | None]:
    env_file = settings.model_config.get("env_file")
    return dotenv_values(env_file) if env_file and Path(str(env_file)).exists() else {}


def warn_unknown_variables(names: Iterable[str]) -> list[str]:
    """Log each ``LLAMAFILE_*`` name that nothing reads (a typo would otherwise be silently
    ignored), with the closest known name; returns the unknown names."""
    known = [name.upper() for name in LlamafileSettings.model_fields] + sorted(OTHER_VARIABLES)
    unknown = sorted({name for name in names if name.upper().startswith(ENV_PREFIX)
                      and name.upper()[len(ENV_PREFIX):] not in known})
    for name in unknown:
        close = difflib.get_close_matches(name.upper()[len(ENV_PREFIX):], known, n=1, cutoff=0.6)
        hint = f"did you mean {ENV_PREFIX}{close[0]}?" if close else "`llamafile-provider config` lists the settings."
        logger.warning("%s is not a llamafile-provider setting and is ignored; %s", name, hint)
    return unknown
