"""The coverage floor names each module under 80% and passes when none is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.coverage_floor import main


def _report(**percents: float) -> dict:
    files = {
        name: {"summary": {"percent_covered": p, "covered_branches": 3, "num_branches": 4}}
        for name, p in percents.items()
    }
    return {"files": files, "totals": {"percent_covered": 90.0}}


def test_a_module_under_the_floor_fails_and_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "coverage.json"
    path.write_text(json.dumps(_report(**{"a.py": 95.0, "b.py": 79.9, "c.py": 80.0})))
    assert main(["floor", str(path)]) == 1
    out = capsys.readouterr().out
    assert "b.py is at 79.9% (3/4 branches), under 80%" in out
    assert "a.py" not in out and "c.py" not in out


def test_every_module_at_the_floor_passes(tmp_path: Path) -> None:
    path = tmp_path / "coverage.json"
    path.write_text(json.dumps(_report(**{"a.py": 80.0})))
    assert main(["floor", str(path)]) == 0


def test_a_missing_report_is_an_error_not_a_pass(tmp_path: Path) -> None:
    assert main(["floor", str(tmp_path / "absent.json")]) == 2
