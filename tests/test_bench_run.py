"""``bench.run``'s output contract, with stand-in sections (the real ones take minutes).

``--json`` must end in ONE parsable line holding every section's numbers and the machine; a
section that raises must not hide the others' numbers, and makes the run exit 1.
"""

from __future__ import annotations

import json

import pytest

from bench import run
from bench.common import Progress

MACHINE = {"cpu": "test cpu", "cores": "2"}


async def good(progress: Progress) -> dict[str, float]:
    progress("measuring")
    return {"p9_ratio": 1.25, "p9_count": 3}


async def broken(progress: Progress) -> dict[str, float]:
    raise RuntimeError("no server")


def test_json_is_one_parsable_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    status = run.main(["--json"], sections=[("p9", good), ("p10", broken)], machine=MACHINE)

    out, err = capsys.readouterr()
    result = json.loads(out.strip().splitlines()[-1])
    assert status == 1
    assert result["p9_ratio"] == 1.25 and result["p9_count"] == 3
    assert result["machine"] == MACHINE
    assert result["errors"] == {"p10": "RuntimeError: no server"}
    assert "measuring" in err and "no server" in err


def test_only_runs_the_named_sections_and_table_shows_them(capsys: pytest.CaptureFixture[str]) -> None:
    status = run.main(["--only", "p9"], sections=[("p9", good), ("p10", broken)], machine=MACHINE)

    out, _ = capsys.readouterr()
    assert status == 0
    assert "| `p9_ratio` | 1.25 |" in out and "| cpu | test cpu |" in out
    assert "p10" not in out


def test_unknown_section_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run.main(["--only", "p7"], sections=[("p9", good)], machine=MACHINE)
    assert "the sections are p9" in capsys.readouterr().err

