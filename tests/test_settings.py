"""Settings: precedence argument > environment > .env > default, sources, masking, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamafile_provider.errors import ConfigurationError
from llamafile_provider.settings import LlamafileSettings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("LLAMAFILE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # the .env that counts is the one in the working directory


def sources(settings: LlamafileSettings) -> dict[str, tuple[str, str]]:
    return {name: (value, source) for name, value, source in settings.describe()}


def test_defaults_serve_smart_on_8080_and_fast_on_8081() -> None:
    settings = load_settings()
    assert settings.smart_llm_url == ["http://localhost:8080"]
    assert settings.fast_llm_url == ["http://localhost:8081"]
    assert sources(settings)["LLAMAFILE_TIMEOUT"] == ("600.0", "default")


def test_argument_beats_environment_beats_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LLAMAFILE_TIMEOUT=30\nLLAMAFILE_MAX_RETRIES=7\nLLAMAFILE_FAST_LLM_URL=http://box:9/v1\n")
    monkeypatch.setenv("LLAMAFILE_MAX_RETRIES", "5")
    settings = load_settings(timeout=12.5)
    rows = sources(settings)
    assert rows["LLAMAFILE_TIMEOUT"] == ("12.5", "argument")
    assert rows["LLAMAFILE_MAX_RETRIES"] == ("5", "environment")
    assert rows["LLAMAFILE_FAST_LLM_URL"] == ("http://box:9", ".env")


def test_a_single_api_base_serves_both_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMAFILE_API_BASE", "http://localhost:8081/v1")
    settings = load_settings()
    assert settings.smart_llm_url == settings.fast_llm_url == ["http://localhost:8081"]


def test_comma_separated_servers_for_failover(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMAFILE_SMART_LLM_URL", "http://a:8080/v1, http://b:8080/ ,")
    assert load_settings().smart_llm_url == ["http://a:8080", "http://b:8080"]


def test_the_key_is_masked_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMAFILE_API_KEY", "sk-very-secret-key-42")
    settings = load_settings()
    assert settings.api_key_value() == "sk-very-secret-key-42"
    shown = sources(settings)["LLAMAFILE_API_KEY"][0]
    assert "secret" not in shown and shown.endswith("42")
    assert "sk-very-secret" not in repr(settings) and "sk-very-secret" not in str(settings.describe())


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("LLAMAFILE_TIMEOUT", "-1", "LLAMAFILE_TIMEOUT: Input should be greater than 0"),
    ("LLAMAFILE_TOOL_MODE", "magic", "LLAMAFILE_TOOL_MODE: Input should be 'auto', 'native'"),
    ("LLAMAFILE_SMART_LLM_URL", "localhost:8080", "expected http(s)://HOST:PORT"),
    ("LLAMAFILE_MAX_RETRIES", "many", "LLAMAFILE_MAX_RETRIES: Input should be a valid integer"),
])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                      message: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match="invalid llamafile settings") as caught:
        load_settings()
    assert message in str(caught.value)
