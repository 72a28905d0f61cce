"""``setup-llamafile.sh`` for real: downloads over loopback HTTP, checksums, resume, dialects, sh fallback."""

from __future__ import annotations

from pathlib import Path

from script_support import SETUP, file_server, run_script, script_env, sha256, stand_in

NO_SERVER = Path("/nonexistent/llama-server")  # --version never execs it


def sources(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    stand_in(source / "smart.llamafile", NO_SERVER, dialect="classic", model=Path("/m.gguf"))
    stand_in(source / "fast.llamafile", NO_SERVER, dialect="v10", model=Path("/m.gguf"))
    return source


def test_downloads_verifies_and_tells_each_dialect(tmp_path: Path) -> None:
    source = sources(tmp_path)
    with file_server(source) as files:
        env = script_env(tmp_path, LLAMAFILE_SMART_MODEL_URL=f"{files.url}/smart.llamafile",
                         LLAMAFILE_SMART_MODEL_SHA256=sha256(source / "smart.llamafile").upper(),
                         LLAMAFILE_FAST_MODEL_URL=f"{files.url}/fast.llamafile",
                         LLAMAFILE_FAST_MODEL_FILE="my fast.llamafile",
                         LLAMAFILE_FAST_MODEL_SHA256=sha256(source / "fast.llamafile"))
        result = run_script(SETUP, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        models = tmp_path / "models dir"
        assert "smart: " + str(models / "smart.llamafile") + " (llamafile v0.9.3, classic dialect" in result.stdout
        assert "fast: " + str(models / "my fast.llamafile") + " (llamafile v0.10.0, v10 dialect" in result.stdout
        assert (models / "my fast.llamafile").stat().st_mode & 0o111  # executable
        assert "100.0%" in result.stderr  # curl's progress bar
        assert "NOT verified" not in result.stderr
        requests = len(files.ranges)
        again = run_script(SETUP, env=env, cwd=tmp_path)  # already there: nothing downloaded
        assert again.returncode == 0 and len(files.ranges) == requests, again.stderr


def test_checksum_mismatch_refuses_and_deletes_the_download(tmp_path: Path) -> None:
    source = sources(tmp_path)
    with file_server(source) as files:
        env = script_env(tmp_path, LLAMAFILE_SMART_MODEL_URL=f"{files.url}/smart.llamafile",
                         LLAMAFILE_SMART_MODEL_SHA256="0" * 64)
        result = run_script(SETUP, "smart", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr and "0" * 64 in result.stderr
    assert not list((tmp_path / "models dir").iterdir())  # neither the file nor a .part to resume


def test_resumes_a_partial_download(tmp_path: Path) -> None:
    source = sources(tmp_path)
    whole = (source / "smart.llamafile").read_bytes()
    models = tmp_path / "models dir"
    models.mkdir()
    (models / "smart.llamafile.part").write_bytes(whole[:100])
    with file_server(source) as files:
        env = script_env(tmp_path, LLAMAFILE_SMART_MODEL_URL=f"{files.url}/smart.llamafile",
                         LLAMAFILE_SMART_MODEL_SHA256=sha256(source / "smart.llamafile"))
        result = run_script(SETUP, "smart", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming smart model" in result.stderr
    assert files.ranges == ["bytes=100-"]
    assert (models / "smart.llamafile").read_bytes() == whole
    assert not (models / "smart.llamafile.part").exists()


def test_an_unpinned_download_warns_with_its_digest_or_is_refused(tmp_path: Path) -> None:
    source = sources(tmp_path)
    with file_server(source) as files:
        url = f"{files.url}/smart.llamafile"
        refused = run_script(SETUP, "smart", env=script_env(tmp_path, LLAMAFILE_SMART_MODEL_URL=url,
                                                            LLAMAFILE_REQUIRE_SHA256="1"), cwd=tmp_path)
        assert refused.returncode == 1 and "LLAMAFILE_REQUIRE_SHA256=1" in refused.stderr
        warned = run_script(SETUP, "smart", env=script_env(tmp_path, LLAMAFILE_SMART_MODEL_URL=url), cwd=tmp_path)
    assert warned.returncode == 0, warned.stderr
    assert "NOT verified" in warned.stderr and sha256(source / "smart.llamafile") in warned.stderr


def test_falls_back_to_sh_when_the_kernel_cannot_run_the_file(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    stand_in(source / "ape.llamafile", NO_SERVER, model=Path("/m.gguf"), shebang="#!/nonexistent/ape-loader")
    with file_server(source) as files:
        env = script_env(tmp_path, LLAMAFILE_SMART_MODEL_URL=f"{files.url}/ape.llamafile")
        result = run_script(SETUP, "smart", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "binfmt_misc/APE" in result.stderr
    assert "run as: sh " + str(tmp_path / "models dir" / "ape.llamafile") in result.stdout


def test_bare_runtime_with_external_gguf_weights(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    stand_in(source / "llamafile-0.9.3", NO_SERVER)  # a runtime without weights
    (source / "weights.gguf").write_bytes(b"GGUF" + b"\0" * 60)
    with file_server(source) as files:
        env = script_env(tmp_path, LLAMAFILE_SMART_MODEL_URL=f"{files.url}/weights.gguf",
                         LLAMAFILE_FAST_MODEL_URL="same", LLAMAFILE_BINARY_URL=f"{files.url}/llamafile-0.9.3",
                         LLAMAFILE_BINARY_SHA256=sha256(source / "llamafile-0.9.3"))
        result = run_script(SETUP, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    models = tmp_path / "models dir"
    assert f"run as: {models / 'llamafile-0.9.3'} -m {models / 'weights.gguf'}" in result.stdout
    assert "fast: same model as smart" in result.stdout
    assert not (models / "weights.gguf").stat().st_mode & 0o111  # weights are not made executable


def test_unknown_version_output_is_refused_unless_the_dialect_is_given(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    odd = source / "odd.llamafile"
    odd.write_text("#!/bin/sh\necho 'some other program 1.0'\n")
    with file_server(source) as files:
        result = run_script(SETUP, "smart", env=script_env(tmp_path, LLAMAFILE_SMART_MODEL_URL=f"{files.url}/odd.llamafile"),
                            cwd=tmp_path)
        assert result.returncode == 1 and "not a llamafile or llama-server" in result.stderr
        forced = run_script(SETUP, "smart", cwd=tmp_path, env=script_env(
            tmp_path, LLAMAFILE_SMART_MODEL_URL=f"{files.url}/odd.llamafile", LLAMAFILE_DIALECT="v10"))
    assert forced.returncode == 0 and "(some other program 1.0, v10 dialect" in forced.stdout, forced.stderr
