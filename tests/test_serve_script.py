"""``llamafile-integration/serve.sh`` end to end, with stand-in llamafiles.

A stand-in is a shell script that runs the test-bed llama-server on a test-bed model and drops
the llamafile-only flags llama-server rejects (``--server``, ``--nobrowser``); it is "downloaded"
from a ``file://`` URL, so the script's fetch, serve, readiness and shutdown paths all run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from testbed.server import free_port

pytestmark = pytest.mark.server
SCRIPT = Path(__file__).parents[1] / "llamafile-integration" / "serve.sh"


def stand_in(path: Path, binary: Path, model: Path) -> Path:
    path.write_text(
        "#!/bin/sh\n"
        "args=''\n"
        'for a in "$@"; do case "$a" in --server|--nobrowser) ;; *) args="$args $a" ;; esac; done\n'
        f'exec "{binary}" -m "{model}" -c 4096 -np 1 -t 1 $args\n'
    )
    return path


def test_serve_sh_downloads_serves_both_models_and_stops_them(
        tmp_path: Path, llama_server_binary: Path, models: dict[str, Path]) -> None:
    source = tmp_path / "source"
    source.mkdir()
    smart = stand_in(source / "smart.llamafile", llama_server_binary, models["hermes"])
    fast = stand_in(source / "fast.llamafile", llama_server_binary, models["mistral"])
    smart_port, fast_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMAFILE_")}
    env.update(LLAMAFILE_SMART_MODEL_URL=smart.as_uri(), LLAMAFILE_FAST_MODEL_URL=fast.as_uri(),
               LLAMAFILE_SMART_PORT=str(smart_port), LLAMAFILE_FAST_PORT=str(fast_port),
               LLAMAFILE_MODELS_DIR=str(tmp_path / "models"))
    process = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(line.startswith("Both models are up") for line in lines):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        assert any(line.startswith("Both models are up") for line in lines), "".join(lines)
        assert (tmp_path / "models" / "smart.llamafile").exists()  # fetched into the models dir
        for port, model in ((smart_port, "hermes"), (fast_port, "mistral")):
            props = httpx.get(f"http://127.0.0.1:{port}/props", timeout=10).json()
            assert model in props["model_path"]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        for port in (smart_port, fast_port):
            with pytest.raises(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
