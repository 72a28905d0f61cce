"""The runnable examples, each run as a real subprocess against test-bed servers.

The tiny test models write gibberish, so the checks are on the shape of the output
(usage lines, the tool name, the pydantic fields), never on wording.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.server import RunningServer

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, server: RunningServer) -> str:
    """Run ``examples/<name>`` with both models on ``server``; return stdout after a clean exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMAFILE_")}
    env.update(LLAMAFILE_SMART_LLM_URL=server.base_url, LLAMAFILE_FAST_LLM_URL=server.base_url,
               LLAMAFILE_MAX_RETRIES="0", PYTHONIOENCODING="utf-8")
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{name} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


def test_chat(chatml_server: RunningServer) -> None:
    out = run_example("chat.py", chatml_server)
    assert "prompt_tokens=" in out and "completion_tokens=" in out
    prompt_tokens = int(out.split("prompt_tokens=")[1].split()[0])
    assert prompt_tokens > 0


def test_stream(chatml_server: RunningServer) -> None:
    out = run_example("stream.py", chatml_server)
    chunks = int(out.rsplit("[", 1)[1].split(" chunks streamed")[0])
    assert chunks > 0 and "completion_tokens=" in out


def test_tools(hermes_server: RunningServer) -> None:
    out = run_example("tools.py", hermes_server)
    assert 'tool call (native): get_weather({"city": ' in out
    assert "answer:" in out and int(out.split("requests=")[1].split()[0]) >= 2


def test_structured(chatml_server: RunningServer) -> None:
    out = run_example("structured.py", chatml_server)
    assert out.startswith("City(name=") and '"population":' in out and '"country":' in out


def test_status(chatml_server: RunningServer) -> None:
    out = run_example("status.py", chatml_server)
    assert "smart" in out and "dialect=" in out and "context_size=" in out and "tool_mode=" in out
    assert "conversation of 4 messages:" in out
    assert int(out.split("conversation of 4 messages: ")[1].split()[0]) > 0
