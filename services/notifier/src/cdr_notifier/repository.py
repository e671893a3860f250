"""SQL of the notifier: subscriptions, deliveries and attempts for the admin routes (the
dispatcher's claim and record are in `leases`, the search of `GET /v1/cdrs` in
`search_repository`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from cryptography.fernet import InvalidToken
from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cdr_notifier.secretbox import SecretBox
from cdrmodel.db import delivery, delivery_attempt, subscription
from cdrmodel.errors import NotFound

log = logging.getLogger(__name__)


async def enabled_subscriptions(
    conn: AsyncConnection, *, database_ids: Iterable[str]
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(subscription).where(
            subscription.c.database_id.in_(sorted(set(database_ids))),
            subscription.c.enabled.is_(True),
        )
    )
    return [dict(r._mapping) for r in rows]


async def insert_deliveries(conn: AsyncConnection, *, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        stmt = pg_insert(delivery).on_conflict_do_nothing(
            index_elements=["database_id", "subscription_id", "cdr_id", "feed_id"]
        )
        await conn.execute(stmt, rows)


# Subscriptions and deliveries, for the admin routes


def _key(database_id: str, subscription_id: str) -> Any:
    return (subscription.c.database_id == database_id) & (
        subscription.c.subscription_id == subscription_id
    )


async def subscription_secret(
    conn: AsyncConnection, *, database_id: str, subscription_id: str, lock: bool = False
) -> str | None:
    """The stored (sealed) secret, or None when the subscription does not exist yet; `lock`:
    the row stays locked to the end of the transaction (a rotation reads, then writes)."""
    stmt = select(subscription.c.secret).where(_key(database_id, subscription_id))
    secret: str | None = await conn.scalar(stmt.with_for_update() if lock else stmt)
    return secret


async def set_secrets(
    conn: AsyncConnection, *, database_id: str, subscription_id: str, values: dict[str, Any]
) -> None:
    await conn.execute(
        update(subscription)
        .where(_key(database_id, subscription_id))
        .values(**values, updated_at=func.now())
    )


async def list_subscriptions(conn: AsyncConnection, *, database_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(subscription)
        .where(subscription.c.database_id == database_id)
        .order_by(subscription.c.subscription_id)
    )
    return [dict(r._mapping) for r in rows]


async def delete_subscription(
    conn: AsyncConnection, *, database_id: str, subscription_id: str
) -> bool:
    """The subscription, and by the foreign keys' cascade its deliveries and their attempts;
    False when it did not exist."""
    gone = await conn.execute(
        subscription.delete()
        .where(_key(database_id, subscription_id))
        .returning(subscription.c.subscription_id)
    )
    return gone.first() is not None


async def upsert_subscription(
    conn: AsyncConnection,
    *,
    database_id: str,
    subscription_id: str,
    values: dict[str, Any],
    current_secret: str | None,
) -> None:
    """Insert, or update with `values`; a `values` without "secret" keeps the stored one."""
    # PostgreSQL checks NOT NULL on the proposed row before ON CONFLICT, so an update that
    # keeps the secret must still propose one: the stored secret, left untouched by set_.
    stmt = pg_insert(subscription).values(
        database_id=database_id,
        subscription_id=subscription_id,
        **{"secret": current_secret, **values},
    )
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["database_id", "subscription_id"],
            set_={**values, "updated_at": func.now()},
        )
    )


async def get_subscription(
    conn: AsyncConnection, *, database_id: str, subscription_id: str
) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                select(subscription).where(
                    subscription.c.database_id == database_id,
                    subscription.c.subscription_id == subscription_id,
                )
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


def subscription_not_found(database_id: str, subscription_id: str) -> NotFound:
    return NotFound(f"subscription {subscription_id!r} of tenant {database_id!r} not found")


async def require_subscription(
    conn: AsyncConnection, *, database_id: str, subscription_id: str
) -> None:
    if (
        await subscription_secret(conn, database_id=database_id, subscription_id=subscription_id)
        is None
    ):
        raise subscription_not_found(database_id, subscription_id)


async def list_deliveries(
    conn: AsyncConnection,
    *,
    database_id: str,
    subscription_id: str,
    status: str | None,
    before_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first, each with its attempts (oldest first) under "attempts"."""
    stmt = select(delivery.c.id, delivery.c.cdr_id, delivery.c.status, delivery.c.webhook_id).where(
        delivery.c.database_id == database_id, delivery.c.subscription_id == subscription_id
    )
    if status is not None:
        stmt = stmt.where(delivery.c.status == status)
    if before_id is not None:
        stmt = stmt.where(delivery.c.id < before_id)
    stmt = stmt.order_by(delivery.c.id.desc()).limit(limit)
    rows = [dict(r) for r in (await conn.execute(stmt)).mappings()]
    by_id = {r["id"]: r for r in rows}
    for r in rows:
        r["attempts"] = []
    if by_id:
        attempts = await conn.execute(
            select(delivery_attempt)
            .where(delivery_attempt.c.delivery_id.in_(list(by_id)))
            .order_by(delivery_attempt.c.id)
        )
        for a in attempts.mappings():
            by_id[a["delivery_id"]]["attempts"].append(dict(a))
    return rows


# A replayed delivery is due now with a fresh attempt budget; clearing the lease makes any
# push still in flight for it unable to overwrite this (leases.record_outcomes checks the lease).
_REPLAY: dict[str, Any] = {
    "status": "pending",
    "next_attempt_at": func.now(),
    "attempt_count": 0,
    "locked_until": None,
    "updated_at": func.now(),
}


async def replay_delivery(
    conn: AsyncConnection, *, database_id: str, subscription_id: str, delivery_id: int
) -> bool:
    """True when the delivery exists (and is now due again)."""
    done = await conn.execute(
        update(delivery)
        .where(
            delivery.c.id == delivery_id,
            delivery.c.database_id == database_id,
            delivery.c.subscription_id == subscription_id,
        )
        .values(**_REPLAY)
    )
    return bool(done.rowcount)


async def replay_since(
    conn: AsyncConnection, *, database_id: str, subscription_id: str, since: datetime
) -> int:
    """Every delivery of the subscription created since `since` is due again; how many."""
    done = await conn.execute(
        update(delivery)
        .where(
            delivery.c.database_id == database_id,
            delivery.c.subscription_id == subscription_id,
            delivery.c.created_at >= since,
        )
        .values(**_REPLAY)
    )
    return int(done.rowcount)


async def reseal_stored_secrets(engine: AsyncEngine, box: SecretBox, *, batch: int = 100) -> int:
    """Re-encrypt with the first key every stored secret it did not seal (in clear from
    before encryption, or under an older key), a batch of subscriptions per transaction;
    answers how many were changed. Safe beside a PUT: each row is locked while resealed,
    and an unchanged token is never written."""
    changed = unreadable = 0
    after: tuple[str, str] = ("", "")
    while True:
        async with engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(
                        subscription.c.database_id,
                        subscription.c.subscription_id,
                        subscription.c.secret,
                        subscription.c.previous_secret,
                    )
                    .where(
                        tuple_(subscription.c.database_id, subscription.c.subscription_id) > after
                    )
                    .order_by(subscription.c.database_id, subscription.c.subscription_id)
                    .limit(batch)
                    .with_for_update()
                )
            ).all()
            for r in rows:
                try:
                    values = {
                        name: box.reseal(value)
                        for name, value in (
                            ("secret", r.secret),
                            ("previous_secret", r.previous_secret),
                        )
                        if value is not None and box.stale(value)
                    }
                except InvalidToken as exc:
                    # Sealed under a key that is gone: its pushes fail with that reason (in
                    # the attempt log); the other subscriptions are resealed all the same.
                    unreadable += 1
                    log.error(
                        "webhook secret of subscription %s/%s: %s",
                        r.database_id,
                        r.subscription_id,
                        exc,
                    )
                    continue
                if values:
                    changed += 1
                    await conn.execute(
                        update(subscription)
                        .where(_key(r.database_id, r.subscription_id))
                        .values(**values)
                    )
        if len(rows) < batch:
            break
        after = (rows[-1].database_id, rows[-1].subscription_id)
    if changed or unreadable:
        log.info(
            "webhook secrets: %d subscriptions re-encrypted with the first key, %d unreadable",
            changed,
            unreadable,
        )
    return changed


_PRUNE_DELIVERIES = text("""
DELETE FROM delivery WHERE id IN (
    SELECT id FROM delivery WHERE status <> 'pending' AND updated_at < :cutoff
    ORDER BY updated_at LIMIT :n FOR UPDATE SKIP LOCKED
)
""")


async def prune_deliveries(conn: AsyncConnection, *, cutoff: datetime, limit: int) -> int:
    """Deletes at most `limit` delivered or dead deliveries that ended before `cutoff`, with
    their attempts (the foreign key cascades); returns how many deliveries."""
    result = await conn.execute(_PRUNE_DELIVERIES, {"cutoff": cutoff, "n": limit})
    return result.rowcount  # type: ignore[attr-defined, no-any-return]
