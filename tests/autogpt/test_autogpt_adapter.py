"""The AutoGPT adapter against AutoGPT classic's REAL forge classes and real test-bed servers.

Every check runs in AutoGPT's own venv (its locked openai 1.8.0 / httpx 0.24.1 / pydantic 2.7.4)
with this checkout's wheel installed as a user installs it; see ``inside_autogpt.py``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from autogpt_support import InstalledAutoGPT, installed_autogpt
from tests.conftest import TEST_API_KEY
from testbed.server import RunningServer, ServerConfig, ServerPool, free_port

pytestmark = [pytest.mark.autogpt, pytest.mark.server]

SMART_ID = "mistral-7b-instruct-v0.2"   # AutoGPT's own provider mangles this into "...-v0"
FAST_ID = "tiny-chatml-0.1"             # any id works
KNOWN_PIP_CHECK = {"chromadb", "en-core-web-sm", "litellm"}  # left out of the AutoGPT venv on purpose


@pytest.fixture(scope="session")
def autogpt(tmp_path_factory: pytest.TempPathFactory) -> InstalledAutoGPT:
    return installed_autogpt(tmp_path_factory.mktemp("autogpt-wheel"))


@pytest.fixture(scope="session")
def smart(server_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    """Strict Mistral template (no system role, strict alternation) behind --api-key."""
    try:
        return server_pool.get(ServerConfig(model=models["mistral"], api_key=TEST_API_KEY,
                                            extra_args=("--alias", SMART_ID)))
    except Exception as exc:  # noqa: BLE001 - a loud failure, never a skip
        pytest.fail(f"could not start the smart test-bed server: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def fast(server_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    try:
        return server_pool.get(ServerConfig(model=models["chatml"], api_key=TEST_API_KEY,
                                            extra_args=("--alias", FAST_ID)))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"could not start the fast test-bed server: {exc}", pytrace=False)


@pytest.fixture()
def dotenv(smart: RunningServer, fast: RunningServer) -> dict[str, str]:
    """Exactly the contract's settings: the two ids, the two URLs (one with /v1), the key."""
    return {"SMART_LLM": SMART_ID, "FAST_LLM": FAST_ID, "LLAMAFILE_SMART_LLM_URL": smart.base_url + "/v1",
            "LLAMAFILE_FAST_LLM_URL": fast.base_url, "LLAMAFILE_API_KEY": TEST_API_KEY}


def test_install_keeps_autogpts_locked_versions(autogpt: InstalledAutoGPT) -> None:
    assert autogpt.would_change == {}, f"pip install <wheel> would move AutoGPT's pins: {autogpt.would_change}"
    installed = autogpt.env.installed()
    locked = autogpt.env.locked()
    for name in ("openai", "httpx", "pydantic", "jinja2", "jsonschema"):
        assert installed[name] == locked[name], (name, installed[name], locked[name])
    complaints = {line.split(" requires ")[-1].split(",")[0].split("<")[0].split(">")[0].split("@")[0].strip()
                  for line in autogpt.pip_check.splitlines() if " requires " in line}
    assert complaints <= KNOWN_PIP_CHECK, autogpt.pip_check
    site = next((autogpt.env.root / "venv" / "lib").glob("python3*/site-packages"))
    assert (site / "llamafile_provider_autogpt.pth").is_file(), "the wheel did not ship the activation .pth"


def test_hook_registers_any_model_id_unchanged(autogpt: InstalledAutoGPT, dotenv: dict[str, str],
                                               tmp_path: Path) -> None:
    result = autogpt.check("registry", tmp_path, **dotenv)
    assert result["provider_class"] == "llamafile_provider.autogpt.provider"
    assert {SMART_ID, FAST_ID} <= set(result["members"])
    assert (result["smart_llm"], result["fast_llm"]) == (SMART_ID, FAST_ID)  # validated, not mangled
    assert result["smart_info"]["provider_name"] == "llamafile"
    assert result["openai_functions"] is True  # commands arrive as functions, so replies are pinned to them


def test_hook_switched_off(autogpt: InstalledAutoGPT, dotenv: dict[str, str], tmp_path: Path) -> None:
    result = autogpt.check("hook", tmp_path, LLAMAFILE_AUTOGPT="off", **dotenv)
    assert result["provider_class"] == "forge.llm.providers.llamafile.llamafile"
    assert result["members"] == ["mistral-7b-instruct-v0.2"]


def test_plain_programs_never_import_forge_or_the_package(autogpt: InstalledAutoGPT) -> None:
    """The .pth costs a program that never imports forge nothing but the finder itself."""
    script = ("import sys; assert 'llamafile_provider_autogpt_hook' in sys.modules; "
              "print(sorted(m for m in sys.modules if m.startswith(('forge', 'llamafile_provider.', 'openai'))))\n"
              "import llamafile_provider; print(sorted(m for m in sys.modules if m.startswith('forge')))")
    done = subprocess.run([str(autogpt.env.python), "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[]", "[]"]  # nor does importing the package import forge


def test_provider_counts_routes_and_folds(autogpt: InstalledAutoGPT, dotenv: dict[str, str], tmp_path: Path) -> None:
    result = autogpt.check("provider", tmp_path, **dotenv)
    assert set(result["available"]) == {SMART_ID, FAST_ID}
    assert result["is_forge_response"] and result["llm_info"] == SMART_ID
    # the "ERROR PARSING" system turn in the middle was folded: the strict template took it (no 400)
    assert result["counted"] == result["prompt_tokens"] > 0
    assert result["fast_counted"] == result["fast_prompt_tokens"] > 0
    assert result["token_limit"] == result["max_tokens"] == 32768 // 4  # context per slot, from the server
    assert result["ids"] == result["count_tokens"] > 0 and "hello" in result["decoded"]


def test_one_shot_reply_parses_first_try(autogpt: InstalledAutoGPT, dotenv: dict[str, str], tmp_path: Path) -> None:
    """AutoGPT's real prompt strategy and parser, a random-weight model: the first reply parses."""
    result = autogpt.check("one_shot", tmp_path, **dotenv)
    for mode in ("functions", "text"):
        outcome = result[mode]
        assert outcome["proposal"] == "OneShotAgentActionProposal", (mode, outcome)
        assert outcome["requests"] == 1, (mode, outcome)  # no parse retry was needed
        assert outcome["completion_tokens"] <= 1024, (mode, outcome)
    assert result["functions"]["tool"] in {"write_file", "finish"} and result["functions"]["valid"]
    assert result["functions"]["tool_calls"] == 1


def test_unparsable_reply_ends_as_invalid_agent_response(autogpt: InstalledAutoGPT, dotenv: dict[str, str],
                                                         tmp_path: Path) -> None:
    result = autogpt.check("parse_failure", tmp_path, **dotenv)
    assert result["raised"] == "InvalidAgentResponseError", result
    assert "this parser rejects everything" in result["message"]
    assert TEST_API_KEY not in result["message"] + result["stderr"]


def test_startup_stops_with_one_message_when_a_server_is_down(autogpt: InstalledAutoGPT, dotenv: dict[str, str],
                                                              tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    result = autogpt.check("startup", tmp_path, **{**dotenv, "LLAMAFILE_FAST_LLM_URL": down,
                                                   "LLAMAFILE_MAX_RETRIES": "0"})
    assert result["exit"] and result["code_is_message"], result
    assert f"FAST_LLM={FAST_ID}" in result["message"] and down in result["message"]
    assert "Traceback" not in result["stderr"] and TEST_API_KEY not in result["message"] + result["stderr"]


def test_startup_names_what_is_served_when_the_id_is_wrong(autogpt: InstalledAutoGPT, dotenv: dict[str, str],
                                                           tmp_path: Path) -> None:
    result = autogpt.check("startup", tmp_path, **{**dotenv, "SMART_LLM": "llama-3-8b-instruct"})
    assert result["exit"], result
    assert "SMART_LLM=llama-3-8b-instruct" in result["message"]
    assert repr(SMART_ID) in result["message"] and repr(FAST_ID) in result["message"]


def test_enum_members_added_on_every_python(tmp_path: Path) -> None:
    """Enum internals differ across 3.10-3.13; the helper is pure, so each interpreter loads it bare."""
    helper = Path(__file__).resolve().parents[2] / "llamafile_provider" / "autogpt" / "enums.py"
    script = (
        "import enum, importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('enums', {str(helper)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "class Name(str, enum.Enum):\n    MISTRAL = 'mistral-7b-instruct-v0.2'\n"
        "new = mod.add_member(Name, 'gemma-3-270m-it')\n"
        "assert mod.add_member(Name, 'gemma-3-270m-it') is new and Name('gemma-3-270m-it') is new\n"
        "assert list(Name) == [Name.MISTRAL, new] and Name['GEMMA_3_270M_IT'] is new and new == 'gemma-3-270m-it'\n"
        "assert Name.__members__['GEMMA_3_270M_IT'] is new and isinstance(new, Name)\n"
        "print(sys.version_info[:2])\n")
    pythons = sorted(Path("/root/.pyenv/versions").glob("3.1[0-3].*/bin/python"))
    if len(pythons) < 3:
        pytest.fail(f"need Python 3.10, 3.11 and 3.12 under /root/.pyenv/versions; found {pythons}", pytrace=False)
    for python in pythons:
        done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=False)
        assert done.returncode == 0, (python, done.stderr)
