"""Bad .env values: ConfigurationError naming the variable and what it accepts, from a .env
file (not only the environment), in the async provider and the blocking facade."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llamafile_provider.errors import ConfigurationError
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.sync import SyncLlamafileProvider

from .support import assert_no_leaks, resources

BAD = [
    ("LLAMAFILE_TIMEOUT", "0", "greater than 0"),
    ("LLAMAFILE_TOOL_MODE", "magic", "'auto', 'native'"),
    ("LLAMAFILE_SMART_LLM_URL", "localhost:8080", "http(s)://HOST:PORT"),
    ("LLAMAFILE_STARTUP_TIMEOUT", "soon", "valid number"),
    ("LLAMAFILE_TRIM_HISTORY", "perhaps", "valid boolean"),
]


@pytest.fixture
def dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A .env in the working directory, with no LLAMAFILE_ variable in the environment to mask it."""
    for name in [n for n in os.environ if n.startswith("LLAMAFILE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path / ".env"


@pytest.mark.parametrize(("variable", "value", "accepted"), BAD)
def test_a_bad_dotenv_value_names_the_variable(dotenv: Path, variable: str, value: str, accepted: str) -> None:
    dotenv.write_text(f"{variable}={value}\n")
    before = resources()
    with pytest.raises(ConfigurationError) as caught:
        LlamafileProvider()
    assert variable in str(caught.value) and accepted in str(caught.value)
    with pytest.raises(ConfigurationError) as blocking:
        SyncLlamafileProvider()
    assert variable in str(blocking.value)
    assert_no_leaks(before)  # no client, loop or thread is left behind by a refused configuration
