"""Credentials: argon2 at rest, one slow check per burst, constant-time cached comparisons."""

from __future__ import annotations

import asyncio

import pytest

from cdrmodel import auth
from cdrmodel.auth import CredentialVerifier, hash_password


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
