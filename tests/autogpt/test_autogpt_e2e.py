"""A real ``autogpt run`` on the test bed, configured only through AutoGPT's ``.env``.

The user's steps exactly: the package is pip-installed into AutoGPT's venv, ``.env`` holds the
contract's lines (smart and fast on different ports, behind ``--api-key``), and AutoGPT runs
continuously for three cycles with its task on stdin. AutoGPT reads ``.env`` from its own
``original_autogpt/`` directory, so the test runs a private copy of that directory (``python -m
autogpt`` from inside it imports the copy) — the cached install is never written to.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autogpt_support import InstalledAutoGPT, installed_autogpt
from tests.conftest import TEST_API_KEY
from testbed.autogpt_env import DISABLED_COMMANDS
from testbed.server import RunningServer, ServerConfig, ServerPool

pytestmark = [pytest.mark.autogpt, pytest.mark.server]

CYCLES = 3
RUN_TIMEOUT = 420  # seconds; a cycle takes ~5 s on the test bed, AutoGPT's own provider never ends one
TASK = "Write the word hello into a file named hello.txt, then finish."


@pytest.fixture(scope="module")
def autogpt(tmp_path_factory: pytest.TempPathFactory) -> InstalledAutoGPT:
    return installed_autogpt(tmp_path_factory.mktemp("autogpt-wheel"))


def _server(pool: ServerPool, model: Path, alias: str) -> RunningServer:
    try:
        return pool.get(ServerConfig(model=model, api_key=TEST_API_KEY, extra_args=("--alias", alias)))
    except Exception as exc:  # noqa: BLE001 - a loud failure, never a skip
        pytest.fail(f"could not start a test-bed server for AutoGPT: {exc}", pytrace=False)


def test_autogpt_runs_its_cycles_on_the_test_bed(autogpt: InstalledAutoGPT, server_pool: ServerPool,
                                                 models: dict[str, Path], tmp_path: Path) -> None:
    smart = _server(server_pool, models["mistral"], "mistral-7b-instruct-v0.2")
    fast = _server(server_pool, models["chatml"], "tiny-chatml-0.1")
    dotenv = (f"SMART_LLM=mistral-7b-instruct-v0.2\nFAST_LLM=tiny-chatml-0.1\n"
              f"LLAMAFILE_SMART_LLM_URL={smart.base_url}/v1\nLLAMAFILE_FAST_LLM_URL={fast.base_url}\n"
              f"LLAMAFILE_API_KEY={TEST_API_KEY}\n")
    logs = autogpt.env.classic / "forge" / "logs"  # AutoGPT logs next to forge's source
    sizes = {p: p.stat().st_size for p in logs.glob("*.log")} if logs.is_dir() else {}
    run = autogpt.env.run(tmp_path / "original_autogpt", dotenv, TASK, CYCLES, RUN_TIMEOUT)
    output, actions = run.output, run.actions
    assert not run.timed_out, f"autogpt run did not end within {RUN_TIMEOUT}s; output tail:\n{output[-3000:]}"
    finished = "finish" in actions
    assert len(actions) == CYCLES or (finished and actions[-1] == "finish"), \
        f"{len(actions)} of {CYCLES} cycles completed ({actions}); output tail:\n{output[-3000:]}"
    assert not set(actions) & set(DISABLED_COMMANDS.split(",")), actions  # only offered commands are chosen
    assert run.parse_failures == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "You don't have access to" not in output  # AutoGPT's gpt-3.5 fallback never fired
    appended = "".join(p.read_text(errors="replace")[sizes.get(p, 0):] for p in logs.glob("*.log"))
    assert TEST_API_KEY not in output and TEST_API_KEY not in appended
    for log in (tmp_path / "original_autogpt" / "data").rglob("*"):
        if log.is_file():
            assert TEST_API_KEY not in log.read_text(errors="replace"), log
    # both models were used, each at its own server
    assert f"{smart.base_url}/v1/chat/completions" in output and f"{fast.base_url}/" in output
    print(f"{len(actions)} cycles in {run.seconds:.1f}s: {actions}")


def test_autogpt_stops_with_one_message_when_the_smart_server_is_down(autogpt: InstalledAutoGPT,
                                                                      tmp_path: Path) -> None:
    dotenv = ("SMART_LLM=mistral-7b-instruct-v0.2\nFAST_LLM=mistral-7b-instruct-v0.2\n"
              "LLAMAFILE_SMART_LLM_URL=http://127.0.0.1:9\nLLAMAFILE_MAX_RETRIES=0\n")
    run = autogpt.env.run(tmp_path / "original_autogpt", dotenv, TASK, 1, 120)
    output = run.output
    assert not run.timed_out, output[-3000:]
    assert "llamafile-provider: AutoGPT cannot use its llamafile models" in output, output[-3000:]
    assert "http://127.0.0.1:9" in output and "Traceback" not in output
    assert "NEXT ACTION" not in output and "You don't have access to" not in output
