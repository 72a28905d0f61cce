"""Build llama.cpp's ``llama-server`` from the pinned ``llama-cpp-python`` sdist.

The sdist on the package registry carries llama.cpp's full source (``vendor/llama.cpp``),
so a real OpenAI-compatible server can be built with nothing but pip, cmake and a C++
compiler.  The binary lands in a per-version cache outside the clone and is reused:

    ${XDG_CACHE_HOME:-~/.cache}/llamafile-provider/llama-server-<version>/llama-server

The build happens in a scratch directory beside the cache entry and is moved into place
only once it has produced a binary that answers ``--version``: an interrupted or failed
build never leaves a half-built server in the cache.

Usage: ``python -m testbed.build_server`` (prints the binary's path on stdout).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

SDIST_NAME = "llama-cpp-python"
SDIST_VERSION = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
SDIST_FILE = f"llama_cpp_python-{SDIST_VERSION}.tar.gz"

CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX2=ON",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    # Without these two the build tries to download the web UI, which CI cannot reach.
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_CURL=OFF",
]


class BuildError(RuntimeError):
    """The test bed cannot be built on this machine; the message says how to fix it."""


def cache_root() -> Path:
    """Where built servers are kept, outside any clone so CI reuses them."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llamafile-provider"


def server_path() -> Path:
    """The cached binary for the pinned version (it may not exist yet)."""
    return cache_root() / f"llama-server-{SDIST_VERSION}" / "llama-server"


def check_prerequisites(which: Callable[[str], str | None] = shutil.which,
                        cpuinfo: Path = Path("/proc/cpuinfo")) -> None:
    """Fail early, with the package to install, instead of deep inside cmake."""
    missing = [tool for tool in ("cmake", "c++", "cc") if which(tool) is None]
    if missing:
        raise BuildError(
            f"missing build tools: {', '.join(missing)}. "
            "Install them (Debian/Ubuntu: `apt-get install -y cmake build-essential`) and retry."
        )
    if cpuinfo.exists() and " avx2" not in cpuinfo.read_text():
        raise BuildError(
            "this CPU lacks AVX2, which the test-bed server is built for. "
            "Run the tests on an x86-64 machine with AVX2."
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sdist(sdist: Path, expected: str = SDIST_SHA256) -> None:
    """Refuse to build from anything but the pinned release."""
    actual = sha256_of(sdist)
    if actual != expected:
        raise BuildError(
            f"checksum mismatch for {sdist}: expected {expected}, got {actual}. "
            "The download is corrupt or not the pinned release; delete it and retry."
        )


def fetch_sdist(dest: Path, version: str = SDIST_VERSION, sha256: str = SDIST_SHA256,
                size: str = "~77 MB") -> Path:
    """Download a pinned sdist with pip (the registry client the machine is set up for).

    ``version``/``sha256`` default to the llama-server pin; the classic server's builder
    passes its own (``testbed.build_classic``).
    """
    file_name = f"llama_cpp_python-{version}.tar.gz"
    cached = cache_root() / "sdist" / file_name
    if cached.exists():
        verify_sdist(cached, sha256)
        return cached
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--no-binary", ":all:", f"{SDIST_NAME}=={version}", "-d", str(dest),
    ]
    log(f"downloading {SDIST_NAME}=={version} sdist ({size})")
    result = subprocess.run(cmd, capture_output=True, text=True)
    sdist = dest / file_name
    if result.returncode != 0 or not sdist.exists():
        raise BuildError(f"pip could not download {SDIST_NAME}=={version}:\n{result.stderr[-2000:]}")
    verify_sdist(sdist, sha256)
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sdist, cached)
    return cached


def extract_llama_cpp(sdist: Path, dest: Path, version: str = SDIST_VERSION) -> Path:
    """Unpack only ``vendor/llama.cpp`` from the sdist."""
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        if not members:
            raise BuildError(f"{sdist.name} has no vendor/llama.cpp: not the expected sdist")
        tar.extractall(dest, members=members, filter="data")
    return dest / prefix


def build(source: Path, build_dir: Path) -> Path:
    jobs = str(os.cpu_count() or 2)
    log(f"configuring llama.cpp (cmake), then building llama-server with {jobs} jobs (~10 min on 2 cores)")
    run(["cmake", "-S", str(source), "-B", str(build_dir), *CMAKE_FLAGS])
    run(["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", jobs])
    binary = build_dir / "bin" / "llama-server"
    if not binary.exists():
        raise BuildError(f"the build finished but {binary} is missing")
    return binary


def run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise BuildError(f"command failed ({result.returncode}): {' '.join(cmd)}\n{result.stdout[-4000:]}")


def log(message: str) -> None:
    print(f"[testbed] {message}", file=sys.stderr, flush=True)


def ensure_server() -> Path:
    """Return the cached ``llama-server``, building it first if needed."""
    target = server_path()
    if target.exists():
        return target
    check_prerequisites()
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=root) as scratch:
        scratch_dir = Path(scratch)
        sdist = fetch_sdist(scratch_dir)
        source = extract_llama_cpp(sdist, scratch_dir / "src")
        binary = build(source, scratch_dir / "build")
        run([str(binary), "--version"])
        install(binary, target, scratch_dir)
    log(f"built {target}")
    return target


def install(binary: Path, target: Path, scratch_dir: Path) -> None:
    """Put ``binary`` at ``target`` through a staged directory inside ``scratch_dir``.

    A directory rename is atomic: readers see no entry or a complete one.
    """
    staged = scratch_dir / "staged"
    staged.mkdir()
    shutil.copy2(binary, staged / target.name)
    try:
        staged.rename(target.parent)
    except OSError:
        if not target.exists():
            raise


def main() -> int:
    try:
        print(ensure_server())
    except BuildError as exc:
        log(f"cannot build the test bed: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
