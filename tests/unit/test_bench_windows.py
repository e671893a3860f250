"""`make bench`'s notifier rows: the steady window a delivery rate is measured over."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import notifier_bench


def test_the_window_runs_from_the_10_to_the_90_percent_sample() -> None:
    samples = [(0.0, 0, 0.0), (1.0, 50, 0.5), (2.0, 500, 1.0), (3.0, 950, 1.5), (4.0, 1000, 2.0)]
    assert notifier_bench.steady_window(samples) == (1.0, 450, 0.5)


def test_marks_passed_within_one_poll_give_the_whole_run_not_zero() -> None:
    # A poll that took seconds: 5% before it, everything after it. The 10% and 90% marks
    # fall on one sample, which made a window of 0 s (a rate of 0/s in the report).
    samples = [(0.0, 0, 0.0), (0.5, 50, 0.2), (3.5, 1000, 2.0)]
    assert notifier_bench.steady_window(samples) == (3.5, 1000, 2.0)
