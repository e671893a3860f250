"""Credentials: argon2 at rest, cached comparisons, and the password-guessing throttle."""

from __future__ import annotations

import asyncio

import pytest

from cdrmodel import auth
from cdrmodel.auth import CredentialVerifier, FailureThrottle, client_key, hash_password


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = auth._verify_slow

    def spy(password_hash: str, password: str) -> bool:
        calls.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(auth, "_verify_slow", spy)
    return calls


async def test_a_burst_of_first_requests_shares_one_argon2_check(counted: list[str]) -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("$argon2") and "s3cret" not in stored
    verifier = CredentialVerifier()
    results = await asyncio.gather(*(verifier.verify(stored, "s3cret") for _ in range(32)))
    assert all(results)
    assert counted == ["s3cret"]
    assert await verifier.verify(stored, "s3cret")  # cached: no second argon2 check
    assert counted == ["s3cret"]


async def test_wrong_passwords_fail_and_are_never_cached(counted: list[str]) -> None:
    stored = hash_password("right")
    verifier = CredentialVerifier()
    assert not await verifier.verify(stored, "wrong")
    assert not await verifier.verify(stored, "wrong")
    assert counted == ["wrong", "wrong"]
    assert await verifier.verify(stored, "right")
    assert not await verifier.verify(stored, "wrong")  # compared against the cached MAC
    assert counted == ["wrong", "wrong", "right"]


async def test_a_new_hash_for_the_same_account_is_checked_again(counted: list[str]) -> None:
    verifier = CredentialVerifier()
    first, second = hash_password("one"), hash_password("two")
    assert await verifier.verify(first, "one")
    assert not await verifier.verify(second, "one")
    assert await verifier.verify(second, "two")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: FakeClock, **kw: float) -> FailureThrottle:
    return FailureThrottle(clock=clock, **kw)


def test_five_wrong_passwords_within_the_window_start_a_backoff() -> None:
    clock = FakeClock()
    guard = throttle(clock)
    assert [guard.failed("k") for _ in range(4)] == [0.0] * 4
    assert guard.blocked_for("k") == 0.0
    assert guard.failed("k") == 1.0
    assert guard.blocked_for("k") == 1.0
    clock.now += 0.6
    assert guard.blocked_for("k") == pytest.approx(0.4)
    assert guard.blocked_for("other") == 0.0


def test_failures_spread_beyond_the_window_never_block() -> None:
    clock = FakeClock()
    guard = throttle(clock, window=60.0)
    for _ in range(20):
        for _ in range(4):
            assert guard.failed("k") == 0.0
        clock.now += 61
    assert guard.blocked_for("k") == 0.0


def test_each_wrong_password_after_a_backoff_doubles_it_up_to_the_cap() -> None:
    clock = FakeClock()
    guard = throttle(clock, base_backoff=1.0, max_backoff=8.0)
    for _ in range(4):
        guard.failed("k")
    seen = []
    for _ in range(6):
        backoff = guard.failed("k")
        seen.append(backoff)
        clock.now += backoff
        assert guard.blocked_for("k") == 0.0
    assert seen == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_a_failure_checked_before_the_backoff_began_does_not_lengthen_it() -> None:
    clock = FakeClock()
    guard = throttle(clock)
    for _ in range(5):
        guard.failed("k")
    # The rest of a concurrent burst: their checks began before the block and end inside it.
    assert [guard.failed("k") for _ in range(27)] == [0.0] * 27
    clock.now += 1.0
    assert guard.failed("k") == 2.0


def test_a_success_or_a_long_quiet_spell_clears_the_pair() -> None:
    clock = FakeClock()
    guard = throttle(clock, forget_after=900.0)
    for _ in range(5):
        guard.failed("k")
    clock.now += 1.0
    guard.succeeded("k")
    assert [guard.failed("k") for _ in range(4)] == [0.0] * 4
    assert guard.failed("k") == 1.0  # a fresh grace, and the first backoff again
    clock.now += 901
    assert guard.failed("k") == 0.0


def test_a_flood_of_distinct_addresses_keeps_memory_bounded() -> None:
    clock = FakeClock()
    guard = throttle(clock, max_entries=100, base_backoff=60.0)
    for _ in range(5):
        guard.failed(("DB", "ACC", "198.51.100.7"))
    for n in range(100_000):
        guard.failed(("DB", "ACC", f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"))
        if n % 50 == 0:
            clock.now += 0.001
            # The blocked attacker keeps knocking: it stays while the one-off addresses go.
            assert guard.blocked_for(("DB", "ACC", "198.51.100.7")) > 0
    assert len(guard) == 100


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not:an:address", "not:an:address"),
        (None, ""),
        ("", ""),
    ],
)
def test_one_guessing_budget_per_ipv4_address_or_ipv6_64(address: str | None, key: str) -> None:
    assert client_key(address) == key
