"""``serve.sh`` for real: stand-in llamafiles wrapping the test bed's llama-server, over loopback HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from script_support import SERVE, file_server, run_script, script_env, stand_in

from testbed.server import free_port

pytestmark = pytest.mark.server
KEY = "sk-serve-sh-secret-4242"


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    """The scripts' run dir; whatever a test leaves running there is killed afterwards."""
    path = tmp_path / "run dir"
    yield path
    for pid_file in path.glob("*.pid"):
        pid = int(pid_file.read_text().split()[0])
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    except httpx.TransportError:
        return False
    return True


def test_start_status_stop_with_a_hidden_key_and_dotenv_as_data(
        tmp_path: Path, run_dir: Path, llama_server_binary: Path, models: dict[str, Path]) -> None:
    source = tmp_path / "source"
    source.mkdir()
    smart_args, fast_args = tmp_path / "smart args", tmp_path / "fast args"
    stand_in(source / "smart.llamafile", llama_server_binary, dialect="classic", model=models["chatml"],
             args_log=smart_args)
    stand_in(source / "fast.llamafile", llama_server_binary, dialect="v10", model=models["mistral"],
             args_log=fast_args)
    smart_port, fast_port = free_port(), free_port()
    (tmp_path / ".env").write_text(
        "# read as data: nothing here runs\n"
        "LLAMAFILE_SERVER_ARGS=--alias \"my model\" -c 4096   # quotes group words\n"
        "LLAMAFILE_FAST_PORT=1  # the environment wins over .env\n"
        f"LLAMAFILE_SMART_PORT='{smart_port}'\n"
        f"export LLAMAFILE_API_KEY=\"{KEY}\"\n"
        "LLAMAFILE_NOTE=$(touch pwned) `touch pwned`\n"
    )
    with file_server(source) as files:
        env = script_env(tmp_path, LLAMAFILE_SMART_MODEL_URL=f"{files.url}/smart.llamafile",
                         LLAMAFILE_FAST_MODEL_URL=f"{files.url}/fast.llamafile", LLAMAFILE_FAST_PORT=str(fast_port))
        started = run_script(SERVE, "start", env=env, cwd=tmp_path, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "Servers are up" in started.stdout and not (tmp_path / "pwned").exists()

    for port in (smart_port, fast_port):
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).status_code == 401
        listed = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {KEY}"},
                           timeout=10)
        assert listed.json()["data"][0]["id"] == "my model"
    for name, args in (("smart", smart_args), ("fast", fast_args)):
        pid = (run_dir / f"{name}.pid").read_text().split()[0]
        command = subprocess.run(["ps", "-p", pid, "-o", "args="], capture_output=True, text=True).stdout
        assert command and KEY not in command
        assert KEY.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
        assert KEY not in args.read_text() and "--api-key-file" in args.read_text().split()
    assert (run_dir / "api-key").stat().st_mode & 0o077 == 0  # readable by its owner only
    assert "--nobrowser" in smart_args.read_text().split()  # classic needs it ...
    assert "--nobrowser" not in fast_args.read_text().split()  # ... 0.10 refuses it

    status = run_script(SERVE, "status", env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "smart: running, pid" in status.stdout and f":{fast_port}, ready" in status.stdout
    again = run_script(SERVE, "start", env=env, cwd=tmp_path)
    assert again.returncode == 1 and "already running" in again.stderr

    stopped = run_script(SERVE, "stop", env=env, cwd=tmp_path)
    assert stopped.returncode == 0 and "smart: stopped" in stopped.stdout and "fast: stopped" in stopped.stdout
    assert not answers(smart_port) and not answers(fast_port)
    assert not list(run_dir.glob("*.pid")) and not (run_dir / "api-key").exists()
    after = run_script(SERVE, "status", env=env, cwd=tmp_path)
    assert after.returncode == 3 and "smart: not running" in after.stdout


def test_a_busy_port_is_refused_not_moved(tmp_path: Path, run_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = script_env(tmp_path, LLAMAFILE_SMART_PORT=str(port), LLAMAFILE_FAST_PORT=str(free_port()),
                         LLAMAFILE_SMART_MODEL_URL="http://127.0.0.1:9/never-downloaded.llamafile")
        result = run_script(SERVE, "start", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert f"port {port} (smart) is already in use" in result.stderr
    assert not list(run_dir.glob("*.pid"))


def test_a_server_that_dies_while_loading_is_reported_with_its_log(
        tmp_path: Path, run_dir: Path, llama_server_binary: Path, models: dict[str, Path]) -> None:
    source = tmp_path / "source"
    source.mkdir()
    stand_in(source / "broken.llamafile", llama_server_binary, model=models["chatml"], die=True)
    with file_server(source) as files:
        env = script_env(tmp_path, LLAMAFILE_SMART_MODEL_URL=f"{files.url}/broken.llamafile",
                         LLAMAFILE_FAST_MODEL_URL="same", LLAMAFILE_SMART_PORT=str(free_port()))
        # The 600 s startup timeout is never reached: the script notices the exit.
        result = run_script(SERVE, "start", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert "exited" in result.stderr and "corrupted stand-in weights" in result.stderr


def test_a_server_that_moves_to_port_plus_one_is_not_reported_up(
        tmp_path: Path, run_dir: Path, llama_server_binary: Path, models: dict[str, Path]) -> None:
    source = tmp_path / "source"
    source.mkdir()
    stand_in(source / "mover.llamafile", llama_server_binary, model=models["chatml"], move_port=True)
    port = _free_port_pair()  # the stand-in moves to port+1, which must be free too
    with file_server(source) as files:
        env = script_env(tmp_path, LLAMAFILE_SMART_MODEL_URL=f"{files.url}/mover.llamafile",
                         LLAMAFILE_FAST_MODEL_URL="same", LLAMAFILE_SMART_PORT=str(port))
        result = run_script(SERVE, "start", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert f"went to port {port + 1}, not {port}" in result.stderr and "Servers are up" not in result.stdout
    assert not answers(port + 1) and not list(run_dir.glob("*.pid"))  # and it was stopped


def test_refuses_a_public_address_without_a_key(tmp_path: Path, run_dir: Path) -> None:
    env = script_env(tmp_path, LLAMAFILE_HOST="0.0.0.0", LLAMAFILE_SMART_PORT=str(free_port()),
                     LLAMAFILE_FAST_PORT=str(free_port()))
    result = run_script(SERVE, "start", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0 without an API key" in result.stderr
    assert "LLAMAFILE_ALLOW_NO_KEY=1" in result.stderr


def test_stop_and_status_leave_processes_they_did_not_start_alone(tmp_path: Path, run_dir: Path) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        run_dir.mkdir(parents=True)
        # A pid file whose process is someone else's (the start time does not match).
        (run_dir / "smart.pid").write_text(f"{bystander.pid}\nMon Jan  1 00:00:00 2001\n8080\n")
        env = script_env(tmp_path)
        status = run_script(SERVE, "status", env=env, cwd=tmp_path)
        assert status.returncode == 3 and "smart: not running" in status.stdout
        stopped = run_script(SERVE, "stop", env=env, cwd=tmp_path)
        assert stopped.returncode == 0 and "stopped" not in stopped.stdout
        assert bystander.poll() is None  # still alive
    finally:
        bystander.kill()
        bystander.wait()


def test_foreground_one_model_for_both_stops_on_sigterm(
        tmp_path: Path, run_dir: Path, llama_server_binary: Path, models: dict[str, Path]) -> None:
    source = tmp_path / "source"
    source.mkdir()
    stand_in(source / "only.llamafile", llama_server_binary, model=models["hermes"])
    port = free_port()
    with file_server(source) as files:
        env = script_env(tmp_path, LLAMAFILE_SMART_MODEL_URL=f"{files.url}/only.llamafile",
                         LLAMAFILE_FAST_MODEL_URL="same", LLAMAFILE_SMART_PORT=str(port))
        process = subprocess.Popen(["bash", str(SERVE)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            assert process.stdout is not None
            lines: list[str] = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not any("Servers are up" in line for line in lines):
                line = process.stdout.readline()
                if not line:
                    break
                lines.append(line)
            output = "".join(lines)
            assert "Servers are up" in output, output
            assert f"LLAMAFILE_API_BASE=http://127.0.0.1:{port}/v1" in output
            assert "hermes" in httpx.get(f"http://127.0.0.1:{port}/props", timeout=10).json()["model_path"]
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 143
            assert not answers(port) and not list(run_dir.glob("*.pid"))
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _free_port_pair() -> int:
    """A free loopback port whose successor is free as well (checked by binding it)."""
    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
