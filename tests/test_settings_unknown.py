"""Settings: unknown LLAMAFILE_* variables are reported with the closest known
name; lower-case names are read and ``describe()`` says where they came from."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

from llamafile_provider.settings import ENV_PREFIX, OTHER_VARIABLES, LlamafileSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "llamafile" in r.name]


def test_a_typo_is_reported_with_the_closest_setting(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("LLAMAFILE_TIMEOUTS", "30")
    (Path(".env")).write_text("LLAMAFILE_SMART_LLM_ULR=http://box:1\nLLAMAFILE_ZZZ=1\n")
    with caplog.at_level(logging.WARNING):
        settings = load_settings()
    assert settings.timeout == 600.0  # the typo was not applied
    messages = _warnings(caplog)
    assert any("LLAMAFILE_TIMEOUTS" in m and "did you mean LLAMAFILE_TIMEOUT?" in m for m in messages)
    assert any("LLAMAFILE_SMART_LLM_ULR" in m and "LLAMAFILE_SMART_LLM_URL" in m for m in messages)
    assert any("LLAMAFILE_ZZZ" in m and "llamafile-provider config" in m for m in messages)
    assert len(messages) == 3


def test_settings_and_script_variables_are_not_reported(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("LLAMAFILE_TIMEOUT", "30")
    monkeypatch.setenv("LLAMAFILE_SMART_PORT", "9000")  # serve.sh's
    with caplog.at_level(logging.WARNING):
        load_settings()
    assert _warnings(caplog) == []


def test_every_variable_the_scripts_and_example_use_is_known() -> None:
    """A new script variable must be added to OTHER_VARIABLES, or users get a false warning."""
    sources = [ROOT / ".env.llamafile.example", *sorted((ROOT / "llamafile-integration").glob("*.sh"))]
    names = {m for path in sources for m in re.findall(r"LLAMAFILE_([A-Z][A-Z0-9_]*[A-Z0-9])\b", path.read_text())}
    fields = {name.upper() for name in LlamafileSettings.model_fields}
    assert names and names - fields - OTHER_VARIABLES == set()


def test_lower_case_names_are_read_and_described(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("llamafile_timeout", "42")
    Path(".env").write_text("llamafile_max_retries=5\n")
    with caplog.at_level(logging.WARNING):
        settings = load_settings()
    rows = {name: (value, source) for name, value, source in settings.describe()}
    assert settings.timeout == 42.0 and rows["LLAMAFILE_TIMEOUT"] == ("42.0", "environment")
    assert settings.max_retries == 5 and rows["LLAMAFILE_MAX_RETRIES"] == ("5", ".env")
    assert _warnings(caplog) == []
