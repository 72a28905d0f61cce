"""What the shell-script tests share: a loopback HTTP file server with Range support, stand-in
llamafiles, and running the scripts with a clean environment.

A stand-in "llamafile" is a POSIX sh script that answers ``--version`` like the llamafile release it
imitates (text from llamafile's source: ``puts("llamafile v" LLAMAFILE_VERSION_STRING)``), insists on
the flags that release needs, rejects the ones it refuses, logs its arguments, and then execs the
test bed's real llama-server after dropping the llamafile-only flags.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).parents[2]
SCRIPTS = ROOT / "llamafile-integration"
SETUP = SCRIPTS / "setup-llamafile.sh"
SERVE = SCRIPTS / "serve.sh"


@dataclass
class FileServer:
    """Files served from ``root`` at ``url``; ``ranges`` records each request's Range header."""

    root: Path
    url: str
    ranges: list[str | None] = field(default_factory=list)


@contextmanager
def file_server(root: Path) -> Iterator[FileServer]:
    """http.server with byte-range support (``bytes=N-``), which curl's ``-C -`` resume needs."""
    record = FileServer(root, "")

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            wanted = self.headers.get("Range")
            record.ranges.append(wanted)
            path = Path(self.translate_path(self.path))
            if not wanted or not path.is_file():
                super().do_GET()
                return
            data = path.read_bytes()
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()


VERSIONS = {"classic": "llamafile v0.9.3", "v10": "llamafile v0.10.0"}


def stand_in(path: Path, binary: Path, *, dialect: str = "classic", model: Path | None = None,
             args_log: Path | None = None, die: bool = False, move_port: bool = False,
             shebang: str = "#!/bin/sh", server_flags: str = "-c 4096 -np 1 -t 1 --no-warmup") -> Path:
    """Write a stand-in llamafile of ``dialect`` ("classic": 0.8-0.9, "v10": 0.10+).

    ``model=None`` makes a bare runtime that expects ``-m WEIGHTS``; ``die`` one that fails while
    loading; ``move_port`` one that does what llamafile 0.8-0.9 do when their port is taken (listen
    on port+1 and log it); ``server_flags`` what the wrapped server gets besides the script's
    arguments (the classic b2282 server knows no ``--no-warmup``); ``shebang`` an interpreter line (a missing interpreter imitates the binfmt problem:
    only ``sh FILE`` runs it)."""
    refuse = "--nobrowser" if dialect == "v10" else "--no-such-flag"
    weights = f"-m {shlex.quote(str(model))}" if model else ""
    log = f'printf "%s\\n" "$@" > {shlex.quote(str(args_log))}' if args_log else ":"
    ending = ('echo "llama_model_load: error loading model: corrupted stand-in weights" >&2; exit 1' if die
              else f'exec {shlex.quote(str(binary))} {weights} {server_flags} "$@"')
    path.write_text(f"""{shebang}
# stand-in for a {VERSIONS[dialect]} llamafile (tests/scripts/script_support.py)
for a do case $a in --version) echo "{VERSIONS[dialect]}"; exit 0 ;; esac; done
{log}
server=no port=none
for a do
    shift
    if [ "$port" = next ]; then a=$((a + {1 if move_port else 0})); port=$a; fi
    [ "$a" = --port ] && port=next
    case $a in
        --server) server=yes ;;
        --nobrowser|--v2) [ "$a" = {refuse} ] && {{ echo "error: unknown argument: $a" >&2; exit 1; }} ;;
        *) set -- "$@" "$a" ;;
    esac
done
[ $server = yes ] || {{ echo "stand-in: without --server a llamafile starts its chat UI" >&2; exit 1; }}
echo "llama server listening at http://127.0.0.1:$port"
{ending}
""")
    path.chmod(0o755)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def script_env(tmp: Path, **values: str) -> dict[str, str]:
    """The user's environment minus every LLAMAFILE_ setting, with a private cache under ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMAFILE_")}
    env.update(XDG_CACHE_HOME=str(tmp / "cache dir"), LLAMAFILE_MODELS_DIR=str(tmp / "models dir"),
               LLAMAFILE_RUN_DIR=str(tmp / "run dir"), **values)
    return env


def run_script(script: Path, *args: str, env: dict[str, str], cwd: Path,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
