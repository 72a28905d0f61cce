"""serve.sh and doctor on the classic dialect: a llamafile 0.9 stand-in wrapping the real b2282 server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from script_support import SERVE, file_server, run_script, script_env, stand_in

from testbed.server import free_port

pytestmark = [pytest.mark.server, pytest.mark.classic]
KEY = "sk-classic-serve-key-5150"


@pytest.fixture
def served(tmp_path: Path, classic_binary: Path, models: dict[str, Path]) -> Iterator[tuple[int, dict[str, str]]]:
    """One classic server started by ``serve.sh start`` behind KEY; stopped by ``serve.sh stop``."""
    source = tmp_path / "source"
    source.mkdir()
    stand_in(source / "classic.llamafile", classic_binary, dialect="classic", model=models["mistral"],
             server_flags="-c 4096 -np 1 -t 1")
    port = free_port()
    with file_server(source) as files:
        env = script_env(tmp_path, LLAMAFILE_SMART_MODEL_URL=f"{files.url}/classic.llamafile",
                         LLAMAFILE_FAST_MODEL_URL="same", LLAMAFILE_SMART_PORT=str(port), LLAMAFILE_API_KEY=KEY)
        started = run_script(SERVE, "start", env=env, cwd=tmp_path, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield port, env
    finally:
        run_script(SERVE, "stop", env=env, cwd=tmp_path)
        for pid_file in (tmp_path / "run dir").glob("*.pid"):
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass


def doctor(port: int, key: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLAMAFILE_")}
    return subprocess.run([sys.executable, "-m", "llamafile_provider.cli", "doctor", "--json"], capture_output=True,
                          text=True, timeout=300,
                          env={**clean, "LLAMAFILE_API_BASE": f"http://127.0.0.1:{port}", "LLAMAFILE_API_KEY": key})


def test_serve_sh_passes_the_key_file_to_a_classic_server(served: tuple[int, dict[str, str]]) -> None:
    port, _ = served
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(url, json=body, timeout=30).status_code == 401  # classic guards chat only
    assert httpx.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30).status_code == 200


def test_doctor_on_the_classic_dialect(served: tuple[int, dict[str, str]]) -> None:
    port, _ = served
    good = doctor(port, KEY)
    report = json.loads(good.stdout)
    checks = {row["check"]: row for row in report["checks"]}
    assert checks["dialect"]["detail"].startswith("classic")
    assert checks["authentication"]["status"] == "ok" and checks["tool call"]["status"] == "ok", good.stdout
    assert checks["tokenizer"]["status"] in ("ok", "warn")  # classic exposes no template: an estimate
    assert good.returncode == (0 if report["ok"] else 1)

    wrong = doctor(port, "sk-not-the-classic-key-00")
    assert wrong.returncode == 1
    auth = [row for row in json.loads(wrong.stdout)["checks"] if row["check"] == "authentication"]
    assert auth[0]["status"] == "fail"  # found at the chat request: classic's /props and /tokenize are open
    assert "sk-not-the-classic-key-00" not in wrong.stdout + wrong.stderr
