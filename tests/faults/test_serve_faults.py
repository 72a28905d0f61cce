"""The serving side of the matrix, through ``serve.sh``: a busy port (held by a non-llama HTTP
server, which the provider then names as such) and a wrong dialect forced by LLAMAFILE_DIALECT."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llamafile_provider.errors import MalformedResponseError
from llamafile_provider.provider import LlamafileProvider
from testbed.server import free_port

from .support import HI, Loopback, bounded

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))  # the scripts' test helpers, shared
from script_support import SERVE, file_server, run_script, script_env, stand_in  # noqa: E402

pytestmark = pytest.mark.server


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    """The scripts' run dir; whatever a test leaves running there is killed afterwards."""
    path = tmp_path / "run dir"
    yield path
    for pid_file in path.glob("*.pid"):
        try:
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


async def test_a_port_held_by_another_http_server_is_refused_and_named(
        tmp_path: Path, run_dir: Path, loopback: Callable[..., Loopback]) -> None:
    other = loopback(probe=False)  # answers 404 to everything, like some other web app
    port = int(other.url.rsplit(":", 1)[1])
    env = script_env(tmp_path, LLAMAFILE_SMART_PORT=str(port), LLAMAFILE_FAST_PORT=str(free_port()),
                     LLAMAFILE_SMART_MODEL_URL="http://127.0.0.1:9/never-downloaded.llamafile")
    result = run_script(SERVE, "start", env=env, cwd=tmp_path)
    assert result.returncode == 1 and f"port {port} (smart) is already in use" in result.stderr
    assert not list(run_dir.glob("*.pid"))

    async with LlamafileProvider(smart_llm_url=other.url, startup_timeout=0) as llm:
        with pytest.raises(MalformedResponseError) as caught:
            await bounded(llm.create_chat_completion(HI))
    assert "no llamafile or llama.cpp server listens there" in str(caught.value)


def test_a_wrong_forced_dialect_is_reported_with_the_servers_complaint(
        tmp_path: Path, run_dir: Path, llama_server_binary: Path, models: dict[str, Path]) -> None:
    source = tmp_path / "source"
    source.mkdir()
    # A llamafile 0.10 (which refuses --nobrowser) forced to be run as a 0.8-0.9 one.
    stand_in(source / "new.llamafile", llama_server_binary, dialect="v10", model=models["chatml"])
    port = free_port()
    with file_server(source) as files:
        env = script_env(tmp_path, LLAMAFILE_SMART_MODEL_URL=f"{files.url}/new.llamafile",
                         LLAMAFILE_FAST_MODEL_URL="same", LLAMAFILE_SMART_PORT=str(port),
                         LLAMAFILE_DIALECT="classic")
        result = run_script(SERVE, "start", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "exited" in result.stderr and "unknown argument: --nobrowser" in result.stderr
    assert not list(run_dir.glob("*.pid"))  # nothing is left running
