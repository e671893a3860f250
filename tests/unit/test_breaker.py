"""The notifier's per-endpoint circuit breaker and retry schedule, as pure functions of time."""

from __future__ import annotations

import random

from cdr_notifier.delivery import Breaker, backoff_seconds
from cdr_notifier.urls import endpoint_of


def _breaker() -> Breaker:
    return Breaker(failures=3, open_for=10.0, max_open=25.0)


def test_it_opens_after_the_failures_in_a_row_and_a_success_resets_the_count() -> None:
    b = _breaker()
    assert [b.record(True, 0.0), b.record(True, 0.0), b.record(False, 0.0)] == [False] * 3
    assert not b.is_open and b.admit(0.0)
    assert [b.record(True, 1.0) for _ in range(3)] == [False, False, True]
    assert b.is_open and b.open_until == 11.0
    assert not b.admit(10.9)


def test_one_probe_when_the_pause_ends_and_a_failed_probe_doubles_it_up_to_the_cap() -> None:
    b = _breaker()
    for _ in range(3):
        b.record(True, 0.0)
    assert b.admit(10.0)  # the probe
    assert not b.admit(10.0)  # only one at a time
    assert b.record(True, 10.5) and b.open_until == 30.5  # 20 s now
    assert b.admit(30.5)
    assert b.record(True, 31.0) and b.open_until == 56.0  # 40 s, capped at 25
    assert b.admit(56.0)
    assert not b.record(False, 56.1)
    assert not b.is_open and b.admit(56.2) and b.admit(56.2)
    for _ in range(3):  # closed again: the pause starts over from its first length
        b.record(True, 60.0)
    assert b.open_until == 70.0


def test_backoff_is_full_jitter_under_the_exponential_bound() -> None:
    random.seed(7)
    for attempt, bound in [
        (1, 2.0),
        (2, 8.0),
        (4, 128.0),
        (7, 8192.0),
        (8, 21600.0),
        (30, 21600.0),
    ]:
        draws = [backoff_seconds(attempt, base=2.0, cap=21600.0) for _ in range(200)]
        assert all(0 <= d <= bound for d in draws)
        assert min(draws) < bound * 0.1 and max(draws) > bound * 0.9


def test_an_endpoint_is_scheme_host_and_port() -> None:
    assert endpoint_of("https://crm.example.com/hook?x=1") == "https://crm.example.com:443"
    assert endpoint_of("http://CRM.example.com:8080/a") == "http://crm.example.com:8080"
    assert endpoint_of("http://[2001:db8::1]/a") == "http://2001:db8::1:80"
