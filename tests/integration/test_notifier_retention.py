"""Deliveries that ended (delivered, dead) are deleted with their attempts once older than the
retention period, in bounded batches; pending ones and recent ones are kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_notifier.app import delivery_pruner
from cdr_notifier.settings import NotifierSettings
from tests.helpers import ADMIN_TOKEN, unique_id


async def test_ended_deliveries_past_retention_go_in_bounded_batches(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    database_id = unique_id("RT")
    await db.execute("INSERT INTO tenant (database_id) VALUES ($1)", database_id)
    await db.execute(
        "INSERT INTO subscription (database_id, subscription_id, url, secret)"
        " VALUES ($1, 'crm', 'http://127.0.0.1:9/', 'whsec_x')",
        database_id,
    )
    cases = {  # name: (status, days since it ended)
        "old-delivered-1": ("delivered", 31),
        "old-delivered-2": ("delivered", 45),
        "old-dead": ("dead", 40),
        "old-pending": ("pending", 90),  # still being retried: never pruned
        "recent-delivered": ("delivered", 29),
        "recent-dead": ("dead", 1),
    }
    for n, (name, (status, days)) in enumerate(cases.items()):
        delivery_id = await db.fetchval(
            "INSERT INTO delivery (database_id, subscription_id, cdr_id, feed_id, webhook_id,"
            " status, payload, updated_at, next_attempt_at)"
            " VALUES ($1, 'crm', $2, $3, $4, $5, '{}', $6, $7) RETURNING id",
            database_id,
            uuid.uuid4(),
            n,
            name,
            status,
            now - timedelta(days=days),
            # Its next retry is tomorrow: a notifier of this session's stack, dispatching from
            # this database, must not claim and try it (an attempt row more) while we look.
            now + timedelta(days=1),
        )
        await db.execute(
            "INSERT INTO delivery_attempt (delivery_id, latency_ms) VALUES ($1, 5)", delivery_id
        )

    settings = NotifierSettings(admin_token=ADMIN_TOKEN, delivery_prune_batch=2)
    counts = await delivery_pruner(engine, settings).sweep(now)

    assert counts[-2:] == [2, 1]  # batches of at most 2, the last one short
    kept = await db.fetch(
        "SELECT webhook_id FROM delivery WHERE database_id = $1 ORDER BY webhook_id", database_id
    )
    assert [r["webhook_id"] for r in kept] == ["old-pending", "recent-dead", "recent-delivered"]
    attempts = await db.fetchval(
        "SELECT count(*) FROM delivery_attempt a JOIN delivery d ON d.id = a.delivery_id"
        " WHERE d.database_id = $1",
        database_id,
    )
    orphans = await db.fetchval(
        "SELECT count(*) FROM delivery_attempt a"
        " WHERE NOT EXISTS (SELECT 1 FROM delivery d WHERE d.id = a.delivery_id)"
    )
    assert attempts == 3 and orphans == 0
