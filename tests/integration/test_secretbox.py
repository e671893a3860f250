"""Webhook secrets at rest on the real database: in clear from before encryption, or under a
key that is no longer first, they are re-encrypted with the first key by the notifier's
start-up pass, and keep signing as before."""

from __future__ import annotations

import asyncpg
import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_notifier.repository import reseal_stored_secrets
from cdr_notifier.secretbox import SecretBox, parse_keys
from tests.helpers import unique_id

SECRET = "whsec_" + "A" * 32


async def _subscription(db: asyncpg.Connection, secret: str) -> str:
    database_id = unique_id("SB")
    await db.execute("INSERT INTO tenant (database_id) VALUES ($1)", database_id)
    await db.execute(
        "INSERT INTO subscription (database_id, subscription_id, url, secret)"
        " VALUES ($1, 'crm', 'http://127.0.0.1:9/', $2)",
        database_id,
        secret,
    )
    return database_id


async def _stored(db: asyncpg.Connection, database_id: str) -> str:
    value: str = await db.fetchval(
        "SELECT secret FROM subscription WHERE database_id = $1", database_id
    )
    return value


async def test_secrets_in_clear_or_under_an_old_key_are_resealed_with_the_first_key(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    old_box = SecretBox([old_key], admin_token="an-admin-token")
    in_clear = await _subscription(db, SECRET)
    under_old = await _subscription(db, old_box.seal(SECRET))
    # Sealed under a key this box does not hold (the database is shared with other tests'
    # notifiers, whose keys differ too): skipped and logged, the others resealed regardless.
    lost = SecretBox([Fernet.generate_key()], admin_token="another-token").seal(SECRET)
    unreadable = await _subscription(db, lost)

    box = SecretBox([new_key, old_key], admin_token="an-admin-token")
    assert await reseal_stored_secrets(engine, box, batch=1) >= 2
    assert await _stored(db, unreadable) == lost
    for database_id in (in_clear, under_old):
        stored = await _stored(db, database_id)
        assert not box.stale(stored) and box.open(stored) == SECRET
        with pytest.raises(InvalidToken):
            Fernet(old_key).decrypt(stored.encode())
    again = await _stored(db, in_clear)
    await reseal_stored_secrets(engine, box)
    assert await _stored(db, in_clear) == again  # a current token is never rewritten


def test_a_key_that_is_no_fernet_key_is_named() -> None:
    assert parse_keys("") == []
    with pytest.raises(ValueError, match="key 2 is not a Fernet key"):
        parse_keys(f"{Fernet.generate_key().decode()}, not-a-key")


def test_without_keys_a_key_derived_from_the_admin_token_seals() -> None:
    one, two = SecretBox([], admin_token="token-one"), SecretBox([], admin_token="token-two")
    sealed = one.seal(SECRET)
    assert one.open(sealed) == SECRET
    with pytest.raises(InvalidToken, match="not in CDR_WEBHOOK_KEYS"):
        two.open(sealed)
    # Keys of its own later: what the derived key sealed still opens, and is stale.
    mine = SecretBox([Fernet.generate_key()], admin_token="token-one")
    assert mine.open(sealed) == SECRET and mine.stale(sealed)
