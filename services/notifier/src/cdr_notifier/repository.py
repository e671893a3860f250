"""SQL of the notifier: subscriptions, deliveries (claimed with SKIP LOCKED) and attempts."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cdrmodel.db import delivery, delivery_attempt, subscription

_WEBHOOK_NS = uuid.UUID("6f1d3a52-0c55-4c5e-9d55-6a3c1f0e2b77")


def webhook_id(database_id: str, subscription_id: str, cdr_id: uuid.UUID, feed_id: int) -> str:
    """Deterministic: the same delivery keeps its id on every retry and after a replay."""
    name = f"{database_id}/{subscription_id}/{cdr_id}/{feed_id}"
    return "msg_" + uuid.uuid5(_WEBHOOK_NS, name).hex


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


_CLAIM = text(
    """
    UPDATE delivery d
       SET locked_until = now() + make_interval(secs => :lease), updated_at = now()
      FROM subscription s
     WHERE d.id IN (
             SELECT id FROM delivery
              WHERE status = 'pending' AND next_attempt_at <= now()
                AND (locked_until IS NULL OR locked_until < now())
              ORDER BY next_attempt_at
              LIMIT :limit
              FOR UPDATE SKIP LOCKED)
       AND s.database_id = d.database_id AND s.subscription_id = d.subscription_id
    RETURNING d.id, d.locked_until AS lease, d.database_id, d.subscription_id, d.cdr_id, d.webhook_id, d.payload,
              d.attempt_count, s.url, s.format, s.secret, s.max_attempts, s.xmlrpc_method,
              s.enabled
    """
)


async def claim_due(conn: AsyncConnection, *, limit: int, lease: float) -> list[dict[str, Any]]:
    """Lease due deliveries; a crashed notifier's leases expire and another takes them."""
    rows = await conn.execute(_CLAIM, {"limit": limit, "lease": lease})
    return [dict(r._mapping) for r in rows]


async def record_outcomes(
    conn: AsyncConnection,
    *,
    attempts: Sequence[dict[str, Any]],
    updates: Sequence[dict[str, Any]],
) -> None:
    """Each attempt becomes a row; each delivery moves to delivered, dead or a later retry.

    The update holds only while this worker's lease does: a result that comes back after the
    lease expired (another worker took the delivery) or after an admin replay cleared it
    changes nothing but the attempt log."""
    if attempts:
        await conn.execute(delivery_attempt.insert(), attempts)
    if updates:
        await conn.execute(
            text(
                "UPDATE delivery SET status = :status, attempt_count = :attempt_count,"
                " next_attempt_at = :next_attempt_at, locked_until = NULL, updated_at = now()"
                " WHERE id = :id AND locked_until = :lease"
            ),
            updates,
        )
