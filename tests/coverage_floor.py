"""Fails `make test` when a measured module's branch coverage is under the floor, naming it.

Reads the JSON report pytest-cov writes (`coverage.json`, [tool.coverage.json] in
pyproject.toml). The figure per module is coverage.py's own with branch=true: covered
statements plus covered branch destinations over all of them, the `Cover` column of the
terminal report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FLOOR = 80.0


def below_floor(report: dict, floor: float = FLOOR) -> list[tuple[str, float, str]]:
    """(module, percent, branches covered/total) of every module under `floor`."""
    low = []
    for path, data in sorted(report["files"].items()):
        summary = data["summary"]
        percent = summary["percent_covered"]
        if percent < floor:
            branches = f"{summary['covered_branches']}/{summary['num_branches']} branches"
            low.append((path, percent, branches))
    return low


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "coverage.json")
    if not path.exists():
        print(f"coverage floor: {path} not found; run pytest with --cov first", file=sys.stderr)
        return 2
    report = json.loads(path.read_text())
    low = below_floor(report)
    total = report["totals"]["percent_covered"]
    if low:
        for module, percent, branches in low:
            print(f"coverage floor: {module} is at {percent:.1f}% ({branches}), under {FLOOR:.0f}%")
        return 1
    print(f"coverage floor: every module at {FLOOR:.0f}% or more (total {total:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
