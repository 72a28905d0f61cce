"""The scripts read ``.env`` as python-dotenv does (the Python settings' reader) and pass shellcheck."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values
from script_support import SCRIPTS

DOTENV = r"""# a comment
LLAMAFILE_SERVER_ARGS=-c 8192
export LLAMAFILE_A='single $HOME `x` #not a comment'
LLAMAFILE_B="double \"quoted\" $(touch pwned) x"  # a comment
LLAMAFILE_C = spaced value   # trailing comment
LLAMAFILE_D=from .env
LLAMAFILE_E="-c 4096 --alias 'my model'"
LLAMAFILE_EMPTY=
OTHER_VARIABLE=not ours
"""


def shell_reading(env_file: Path, cwd: Path, **environment: str) -> dict[str, str]:
    """What lib.sh's lf_load_env sets, printed NUL-separated by a bash that sourced it."""
    script = (f'. "{SCRIPTS / "lib.sh"}"; lf_load_env "$1"; '
              'for v in $(compgen -v LLAMAFILE_); do printf "%s=%s\\0" "$v" "${!v}"; done')
    result = subprocess.run(["bash", "-c", script, "bash", str(env_file)], capture_output=True, text=True,
                            cwd=cwd, env={"PATH": "/usr/bin:/bin", **environment}, check=True)
    return dict(item.split("=", 1) for item in result.stdout.split("\0") if item)


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_dotenv_is_read_as_data_exactly_like_the_python_settings(tmp_path: Path, newline: str) -> None:
    env_file = tmp_path / "my .env"
    env_file.write_bytes(DOTENV.replace("\n", newline).encode())
    expected = {k: v or "" for k, v in dotenv_values(env_file).items() if k.startswith("LLAMAFILE_")}
    assert shell_reading(env_file, tmp_path) == expected
    assert not (tmp_path / "pwned").exists()


def test_the_environment_wins_over_dotenv_even_when_empty(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(DOTENV)
    read = shell_reading(env_file, tmp_path, LLAMAFILE_D="from the environment", LLAMAFILE_C="")
    assert read["LLAMAFILE_D"] == "from the environment" and read["LLAMAFILE_C"] == ""


def test_server_arguments_split_like_a_shell_without_running_anything(tmp_path: Path) -> None:
    script = (f'. "{SCRIPTS / "lib.sh"}"; lf_split_args "$1"; printf "<%s>" ${{LF_ARGS[@]+"${{LF_ARGS[@]}}"}}')
    words = subprocess.run(["bash", "-c", script, "bash", "-c 4096 --alias 'my model' \"$(touch pwned)\""],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert words == "<-c><4096><--alias><my model><$(touch pwned)>"
    assert not (tmp_path / "pwned").exists()


def test_scripts_pass_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed: apt-get install shellcheck (.ci/run does it)", pytrace=False)
    scripts = sorted(str(path) for path in SCRIPTS.glob("*.sh"))
    result = subprocess.run(["shellcheck", "--shell=bash", "--external-sources", *scripts],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("construct", ["declare -A", "local -A", "mapfile", "readarray", ",,}", "^^}", "|&",
                                       "[[ -v", "wait -n", "${@: -", "local -n", "declare -n"])
def test_scripts_keep_to_bash_3_2(construct: str) -> None:
    """macOS ships bash 3.2; these bash 4+ features would break there (shellcheck does not flag them)."""
    for path in SCRIPTS.glob("*.sh"):
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        assert construct not in code, f"{path.name} uses {construct!r}, which bash 3.2 lacks"
