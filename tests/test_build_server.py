"""The test-bed builder refuses clearly and never leaves a half-built server in the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import build_server
from testbed.build_server import BuildError


def test_missing_cmake_names_the_package_to_install() -> None:
    with pytest.raises(BuildError, match=r"missing build tools: cmake.*apt-get install"):
        build_server.check_prerequisites(which=lambda tool: None if tool == "cmake" else "/usr/bin/x")


def test_missing_compiler_is_reported() -> None:
    with pytest.raises(BuildError, match=r"c\+\+"):
        build_server.check_prerequisites(which=lambda tool: None if tool == "c++" else "/usr/bin/x")


def test_cpu_without_avx2_is_refused(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu vme sse sse2 avx\n")
    with pytest.raises(BuildError, match="AVX2"):
        build_server.check_prerequisites(which=lambda tool: "/usr/bin/x", cpuinfo=cpuinfo)


def test_cpu_with_avx2_passes(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse avx avx2 fma\n")
    build_server.check_prerequisites(which=lambda tool: "/usr/bin/x", cpuinfo=cpuinfo)


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / build_server.SDIST_FILE
    fake.write_bytes(b"not the release")
    with pytest.raises(BuildError, match="checksum mismatch"):
        build_server.verify_sdist(fake)


def test_failed_build_leaves_nothing_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(build_server, "check_prerequisites", lambda: None)
    sdist = tmp_path / "fake.tar.gz"
    monkeypatch.setattr(build_server, "fetch_sdist", lambda dest: sdist)
    monkeypatch.setattr(build_server, "extract_llama_cpp", lambda s, dest: dest)

    def broken_build(source: Path, build_dir: Path) -> Path:
        build_dir.mkdir(parents=True)
        (build_dir / "half-built.o").write_bytes(b"\0")
        raise BuildError("compiler crashed")

    monkeypatch.setattr(build_server, "build", broken_build)
    with pytest.raises(BuildError, match="compiler crashed"):
        build_server.ensure_server()
    assert not build_server.server_path().exists()
    assert list((tmp_path / "llamafile-provider").iterdir()) == []


def test_main_reports_a_build_error_and_exits_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def refuse() -> None:
        raise BuildError("missing build tools: cmake")

    monkeypatch.setattr(build_server, "check_prerequisites", refuse)
    assert build_server.main() == 1
    assert "cannot build the test bed: missing build tools: cmake" in capsys.readouterr().err
