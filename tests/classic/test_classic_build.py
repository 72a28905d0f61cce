"""The classic server's builder: pinned source, the b2282 quirks, nothing half-built left behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from testbed import build_classic, build_server
from testbed.build_server import BuildError

pytestmark = pytest.mark.classic


def test_the_cached_sdist_is_the_pinned_release() -> None:
    sdist = build_server.cache_root() / "sdist" / f"llama_cpp_python-{build_classic.SDIST_VERSION}.tar.gz"
    assert sdist.exists(), "run ./scripts/test.sh (or python -m testbed.build_classic) first"
    assert build_server.sha256_of(sdist) == build_classic.SDIST_SHA256


def test_a_tampered_sdist_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "llama_cpp_python-0.2.53.tar.gz"
    fake.write_bytes(b"not the release")
    with pytest.raises(BuildError, match="checksum mismatch"):
        build_server.verify_sdist(fake, build_classic.SDIST_SHA256)


def test_build_drops_the_dangling_git_pointer_and_builds_the_server_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "llama.cpp"
    source.mkdir()
    (source / ".git").write_text("gitdir: ../../.git/modules/vendor/llama.cpp\n")
    commands: list[list[str]] = []

    def fake_run(cmd: list[str]) -> None:
        commands.append(cmd)
        if "--build" in cmd:
            (tmp_path / "build" / "bin").mkdir(parents=True)
            (tmp_path / "build" / "bin" / "server").write_bytes(b"")

    monkeypatch.setattr(build_classic, "run", fake_run)
    binary = build_classic.build(source, tmp_path / "build")
    assert not (source / ".git").exists()
    assert binary == tmp_path / "build" / "bin" / "server"
    assert commands[1][-4:-2] == ["--target", "server"]
    assert {"-DLLAMA_NATIVE=OFF", "-DLLAMA_STATIC=ON", "-DBUILD_SHARED_LIBS=OFF"} <= set(commands[0])


def test_failed_build_leaves_nothing_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(build_server, "check_prerequisites", lambda: None)
    monkeypatch.setattr(build_server, "fetch_sdist", lambda dest, *args, **kwargs: tmp_path / "fake.tar.gz")
    monkeypatch.setattr(build_server, "extract_llama_cpp", lambda sdist, dest, version: dest)

    def broken_build(source: Path, build_dir: Path) -> Path:
        build_dir.mkdir(parents=True)
        (build_dir / "half-built.o").write_bytes(b"\0")
        raise BuildError("compiler crashed")

    monkeypatch.setattr(build_classic, "build", broken_build)
    with pytest.raises(BuildError, match="compiler crashed"):
        build_classic.ensure_classic_server()
    assert not build_classic.server_path().exists()
    assert list((tmp_path / "llamafile-provider").iterdir()) == []


def test_the_built_binary_is_b2282_and_rejects_llamafile_only_flags(classic_binary: Path) -> None:
    help_text = subprocess.run([str(classic_binary), "--help"], capture_output=True, text=True, timeout=30)
    assert help_text.returncode == 0 and "--slots-endpoint-disable" in help_text.stdout
    assert "--jinja" not in help_text.stdout
    refused = subprocess.run([str(classic_binary), "--nobrowser"], capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0
