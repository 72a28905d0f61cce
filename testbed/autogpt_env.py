"""AutoGPT classic in its own virtualenv, for the adapter's tests and benchmark.

``AUTOGPT_SOURCE`` names a tarball holding ``classic/forge`` + ``classic/original_autogpt``
(the shared one) or a checkout of AutoGPT's ``classic/`` directory. The venv is built once per
source (keyed by the tarball's sha256) in ``${XDG_CACHE_HOME:-~/.cache}/llamafile-provider/
autogpt-<sha256>/``, pinned to ``original_autogpt/poetry.lock`` — the versions a user of AutoGPT
classic really has (openai 1.8.0, httpx 0.24.1, pydantic 2.7.4) — built in a scratch directory
and renamed into place, so an interrupted build never leaves a half-made venv behind.

Layout of a ready env: ``venv/`` (the interpreter), ``src/classic/{forge,original_autogpt}``
(installed editable, as AutoGPT's own setup does), ``lock.txt`` (the pinned versions).

Run it by hand: ``python -m testbed.autogpt_env`` prints the env's python.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

# Declared by forge / original_autogpt but not installable here or never imported
# (see ../shared/autogpt/README.md): a GitHub-URL wheel, two unused heavyweights, path deps.
SKIPPED = {"en-core-web-sm", "chromadb", "litellm", "agbenchmark", "autogpt-forge", "python"}
# Python that runs AutoGPT classic (3.10-3.12); AUTOGPT_PYTHON overrides.
DEFAULT_PYTHONS = ("/root/.pyenv/versions/3.11.7/bin/python", "python3.11", "python3.12", "python3.10")
LOCKED_NAMES = ("openai", "httpx", "pydantic", "pydantic-core", "jinja2", "jsonschema")
# AutoGPT commands that would reach beyond this machine (web search, page reads, git clone, image
# APIs) or run code; an agent on a random-weight model picks commands at random, so they are off.
DISABLED_COMMANDS = ",".join((
    "web_search", "google", "read_webpage", "clone_repository", "generate_image", "ask_user",
    "execute_python_code", "execute_python_file", "execute_shell", "execute_shell_popen"))
# Variables a run sets itself; the rest of the caller's environment passes through.
CONTROLLED = ("SMART_LLM", "FAST_LLM", "OPENAI_FUNCTIONS", "OPENAI_API_KEY", "LLAMAFILE_AUTOGPT", "DISABLED_COMMANDS")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class AutoGPTEnvError(RuntimeError):
    """AutoGPT could not be found or installed; the message says what to set or fix."""


@dataclass(frozen=True)
class AutoGPTEnv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "venv" / "bin" / "python"

    @property
    def classic(self) -> Path:
        return self.root / "src" / "classic"

    @property
    def original_autogpt(self) -> Path:
        return self.classic / "original_autogpt"

    def locked(self) -> dict[str, str]:
        """name -> version from AutoGPT's poetry.lock (lower-case names)."""
        return read_lock(self.original_autogpt / "poetry.lock")

    def pip(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.python), "-m", "pip", "--disable-pip-version-check", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def installed(self) -> dict[str, str]:
        """name -> version of what is installed in the venv now."""
        script = ("import importlib.metadata as m, json; print(json.dumps({d.metadata['Name'].lower()"
                  ".replace('_', '-'): d.version for d in m.distributions()}))")
        out = subprocess.run([str(self.python), "-c", script], capture_output=True, text=True, check=True)
        return dict(json.loads(out.stdout))

    def environ(self, **values: str) -> dict[str, str]:
        """The caller's environment without LLAMAFILE_* / model settings, plus ``values``."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("LLAMAFILE_") and k not in CONTROLLED}
        environ.update(TELEMETRY_OPT_IN="false", PYTHONUNBUFFERED="1", DISABLED_COMMANDS=DISABLED_COMMANDS, **values)
        return environ

    def run(self, app: Path, dotenv: str, task: str, cycles: int, timeout: float, *,
            debug: bool = True, **values: str) -> AutoGPTRun:
        """``autogpt run --continuous`` in ``app``, a private copy of original_autogpt/ whose
        ``.env`` is ``dotenv`` (AutoGPT reads ``.env`` from its own directory; ``python -m autogpt``
        run from inside the copy imports the copy, so the cached install is never written to)."""
        shutil.copytree(self.original_autogpt, app, ignore=shutil.ignore_patterns("data", "logs", "__pycache__", ".env"))
        (app / ".env").write_text(dotenv)
        command = [str(self.python), "-m", "autogpt", "run", "--continuous", "--continuous-limit", str(cycles),
                   "--skip-news", "--skip-reprompt", *(["--debug"] if debug else [])]
        started = time.monotonic()
        try:
            done = subprocess.run(command, cwd=app, env=self.environ(**values), input=f"{task}\ny\nn\n",
                                  capture_output=True, text=True, timeout=timeout, check=False)
            output, timed_out = done.stdout + done.stderr, False
        except subprocess.TimeoutExpired as exc:
            output = "".join(part.decode(errors="replace") if isinstance(part, bytes) else part or ""
                             for part in (exc.stdout, exc.stderr))
            timed_out = True
        return AutoGPTRun(ANSI.sub("", output), time.monotonic() - started, timed_out)


@dataclass(frozen=True)
class AutoGPTRun:
    """What one ``autogpt run`` printed, how long it took, and whether the time bound stopped it."""

    output: str
    seconds: float
    timed_out: bool

    @property
    def actions(self) -> list[str]:
        """The command of each completed cycle (AutoGPT prints one NEXT ACTION per cycle)."""
        return re.findall(r"NEXT ACTION: COMMAND = (\S+)", self.output)

    @property
    def parse_failures(self) -> int:
        return self.output.count("could not be parsed") + self.output.count("Parsing attempt #")


def build_wheel(root: Path, out: Path) -> Path:
    """The wheel of the checkout at ``root`` (the way users get the package, .pth included)."""
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(root)],
                          capture_output=True, text=True, timeout=600, check=False)
    wheels = sorted(out.glob("llamafile_provider-*.whl"))
    if done.returncode or not wheels:
        raise AutoGPTEnvError(f"building the wheel failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wheels[-1]


def install_wheel(env: AutoGPTEnv, wheel: Path, report_dir: Path) -> dict[str, tuple[str, str]]:
    """A dry run (what a plain ``pip install <wheel>`` would change among AutoGPT's locked core
    packages: name -> (installed, would install)), then that install, then the wheel's files over
    an older install of the same version."""
    report_path = report_dir / "dry-run.json"
    dry = env.pip("install", "--dry-run", "--quiet", "--report", str(report_path), str(wheel))
    if dry.returncode:
        raise AutoGPTEnvError(f"pip install --dry-run of the wheel failed in the AutoGPT venv:\n{dry.stderr[-2000:]}")
    installed = env.installed()
    would = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
             for item in json.loads(report_path.read_text())["install"]}
    changes = {name: (installed.get(name, "-"), would[name]) for name in LOCKED_NAMES
               if name in would and would[name] != installed.get(name)}
    for args in (("install", "--quiet", str(wheel)), ("install", "--quiet", "--no-deps", "--force-reinstall", str(wheel))):
        done = env.pip(*args)
        if done.returncode:
            raise AutoGPTEnvError(f"pip {' '.join(args[:-1])} <wheel> failed in the AutoGPT venv:\n{done.stderr[-2000:]}")
    return changes


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "llamafile-provider"


def source_from_env() -> Path | None:
    value = os.environ.get("AUTOGPT_SOURCE", "").strip()
    return Path(value).expanduser().resolve() if value else None


def source_key(source: Path) -> str:
    """sha256 of the tarball, or of a checkout's two lock files and pyprojects plus its path."""
    digest = hashlib.sha256()
    if source.is_file():
        with source.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(str(source).encode())
        for part in ("forge", "original_autogpt"):
            for name in ("pyproject.toml", "poetry.lock"):
                digest.update((source / part / name).read_bytes())
    return digest.hexdigest()


def read_lock(lock: Path) -> dict[str, str]:
    packages = tomllib.loads(lock.read_text())["package"]
    return {p["name"].lower().replace("_", "-"): p["version"] for p in packages}


def _requirements(classic: Path) -> list[str]:
    names: set[str] = set()
    for part in ("forge", "original_autogpt"):
        deps = tomllib.loads((classic / part / "pyproject.toml").read_text())["tool"]["poetry"]["dependencies"]
        for name, spec in deps.items():
            optional = isinstance(spec, dict) and spec.get("optional")
            if name.lower() not in SKIPPED and not optional:
                extras = spec.get("extras") if isinstance(spec, dict) else None
                names.add(f"{name}[{','.join(extras)}]" if extras else name)
    return sorted(names)


def _python() -> str:
    for candidate in (os.environ.get("AUTOGPT_PYTHON"), *DEFAULT_PYTHONS):
        if candidate and shutil.which(candidate):
            return str(shutil.which(candidate))
    raise AutoGPTEnvError("no Python 3.10-3.12 found for AutoGPT classic; set AUTOGPT_PYTHON")


def _run(cmd: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise AutoGPTEnvError(f"{' '.join(cmd[:4])}... failed ({result.returncode}); log {log}:\n{tail}")


def _unpack(source: Path, dest: Path) -> None:
    if source.is_file():
        with tarfile.open(source) as archive:
            archive.extractall(dest, filter="data")
        if not (dest / "classic" / "forge").is_dir():
            raise AutoGPTEnvError(f"{source} holds no classic/forge; expected AutoGPT's classic/ tree")
    else:
        root = source / "classic" if (source / "classic" / "forge").is_dir() else source
        if not (root / "forge").is_dir() or not (root / "original_autogpt").is_dir():
            raise AutoGPTEnvError(f"{source} is neither AutoGPT's classic/ nor a tarball of it")
        shutil.copytree(root, dest / "classic", ignore=shutil.ignore_patterns(".git", "__pycache__", "data"))


def _relocate(scratch: Path, final: Path) -> None:
    """Rewrite the absolute paths pip wrote (script shebangs, editable .pth files) to the final
    directory, so the venv works once it is renamed there."""
    old, new = str(scratch).encode(), str(final).encode()
    venv = scratch / "venv"
    candidates = [*(venv / "bin").iterdir(), *venv.glob("lib/python*/site-packages/*.pth"),
                  venv / "pyvenv.cfg"]
    for path in candidates:
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if old in data:
                path.write_bytes(data.replace(old, new))


def ensure_autogpt_env(source: Path | None = None, *, log=print) -> AutoGPTEnv:
    """The cached AutoGPT env for ``source`` (default ``AUTOGPT_SOURCE``), built if missing."""
    source = source or source_from_env()
    if source is None:
        raise AutoGPTEnvError("AUTOGPT_SOURCE is not set: point it at AutoGPT classic's tarball "
                              "(../shared/autogpt/autogpt-classic-c6703dd8.tar.gz) or a checkout of classic/")
    if not source.exists():
        raise AutoGPTEnvError(f"AUTOGPT_SOURCE={source} does not exist")
    final = cache_root() / f"autogpt-{source_key(source)}"
    if os.environ.get("AUTOGPT_PYTHON"):  # another interpreter: its own venv beside the default one
        final = final.with_name(f"{final.name}-{Path(_python()).resolve().parent.parent.name}")
    env = AutoGPTEnv(final)
    if (final / "lock.txt").is_file() and env.python.exists():
        return env
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = final.parent / f"{final.name}.partial-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    build_log = scratch / "build.log"
    log(f"[autogpt] installing AutoGPT classic from {source} into {final} (log {build_log})")
    _unpack(source, scratch / "src")
    classic = scratch / "src" / "classic"
    locked = read_lock(classic / "original_autogpt" / "poetry.lock")
    constraints = scratch / "lock.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(locked.items())))
    python = str(scratch / "venv" / "bin" / "python")
    _run([_python(), "-m", "venv", str(scratch / "venv")], build_log)
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "poetry-core"], build_log)
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(constraints),
          *_requirements(classic)], build_log)
    for part in ("forge", "original_autogpt"):
        _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
              "--no-build-isolation", "-e", str(classic / part)], build_log)
    _relocate(scratch, final)
    if final.exists():  # another process finished first (or a broken old env): replace it
        shutil.rmtree(final, ignore_errors=True)
    scratch.rename(final)  # atomic: the env appears whole or not at all
    return env


if __name__ == "__main__":
    try:
        print(ensure_autogpt_env(log=lambda msg: print(msg, file=sys.stderr)).python)
    except AutoGPTEnvError as exc:
        sys.exit(f"error: {exc}")
