"""Start and stop real ``llama-server`` (and classic b2282 ``server``) processes for tests and benchmarks.

Every process started here is stopped: on ``stop()``, when the ``with`` block ends (also on
exceptions and Ctrl-C), at interpreter exit, and — through ``PR_SET_PDEATHSIG`` on Linux —
even when the Python process that started it is killed outright.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

_RUNNING: set[subprocess.Popen[bytes]] = set()


class ServerStartError(RuntimeError):
    """The test-bed server did not come up; the message carries its log tail."""


@dataclass(frozen=True)
class ServerConfig:
    """How to run one server; equal configs can share one process."""

    model: Path
    api_key: str | None = None
    jinja: bool = True
    ctx_size: int = 32768
    slots: int = 4
    threads: int = 2
    extra_args: tuple[str, ...] = ()
    # The classic b2282 server (``testbed.build_classic``): its own flags, no Jinja.
    classic: bool = False


@dataclass
class RunningServer:
    """A started server: where it listens and how to stop it."""

    config: ServerConfig
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    stopped: bool = field(default=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        return "classic server (b2282)" if self.config.classic else "llama-server"

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        _terminate(self.process)
        self.stopped = True


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command_line(binary: Path, config: ServerConfig, port: int) -> list[str]:
    cmd = [
        str(binary), "-m", str(config.model), "--host", "127.0.0.1", "--port", str(port),
        "-c", str(config.ctx_size), "-np", str(config.slots), "-t", str(config.threads),
        "-tb", str(config.threads),
    ]
    if config.api_key is not None:
        cmd += ["--api-key", config.api_key]
    if config.classic:
        # b2282 knows neither --no-warmup nor --jinja (it has no Jinja). llamafile 0.8-0.9
        # batch continuously by default; b2282 does so only with -cb. --log-disable sends its
        # log to stdout (our log file) instead of a llama.log in the working directory.
        cmd += ["-cb", "--log-disable"]
    else:
        cmd += ["--no-warmup", "--jinja" if config.jinja else "--no-jinja"]
    return [*cmd, *config.extra_args]


def spawn(binary: Path, config: ServerConfig, port: int | None = None,
          log_dir: Path | None = None) -> RunningServer:
    """Start a server without waiting for it (tests of the loading phase use this)."""
    port = port or free_port()
    log_dir = log_dir or Path(tempfile.gettempdir())
    log_path = log_dir / f"{binary.name}-{port}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        command_line(binary, config, port), stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    log.close()
    _RUNNING.add(process)
    return RunningServer(config=config, port=port, process=process, log_path=log_path)


def wait_ready(server: RunningServer, timeout: float = 60.0) -> None:
    """Poll ``/health`` until it answers 200; raise with the log tail if it never does."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise ServerStartError(
                    f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get(server.base_url + "/health").status_code == 200:
                    return
            time.sleep(0.05)
    server.stop()
    raise ServerStartError(f"{server.name} not ready after {timeout:.0f}s:\n{server.log_tail()}")


def start(binary: Path, config: ServerConfig, log_dir: Path | None = None,
          attempts: int = 3) -> RunningServer:
    """Start a server on a free port and wait until it serves; retry if the port was taken."""
    last_error: ServerStartError | None = None
    for _ in range(attempts):
        server = spawn(binary, config, log_dir=log_dir)
        try:
            wait_ready(server)
            return server
        except ServerStartError as exc:
            server.stop()
            last_error = exc
            if "bind" not in str(exc).lower() and "address" not in str(exc).lower():
                break
    assert last_error is not None
    raise last_error


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _RUNNING.discard(process)


def _die_with_parent() -> None:
    """Runs in the child: ask the kernel to SIGTERM it when the parent dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the parent already died between fork and prctl
        os._exit(1)


@atexit.register
def _stop_all() -> None:
    for process in list(_RUNNING):
        _terminate(process)


class ServerPool:
    """Starts servers on demand, shares equal configurations, stops them all on ``close``."""

    def __init__(self, binary: Path, log_dir: Path | None = None) -> None:
        self.binary = binary
        self.log_dir = log_dir
        self._servers: dict[ServerConfig, RunningServer] = {}

    def get(self, config: ServerConfig) -> RunningServer:
        server = self._servers.get(config)
        if server is None or server.process.poll() is not None:
            server = start(self.binary, config, log_dir=self.log_dir)
            self._servers[config] = server
        return server

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()
