"""The billing feed's one statement: a tenant's CDR versions from a feed id, under a horizon.

A feed id (cdr_next_feed_id(), migration queries_storage) is the writing transaction's id
shifted left by 20 bits, with a sequence value in the low bits. The statement answers only
ids below `pg_snapshot_xmin(pg_current_snapshot()) << 20`, read from the statement's own
snapshot: every transaction whose id is under that horizon has ended, so each of its rows
is visible to this statement or never will be, and every transaction still running or yet
to come has an id at or above it, so anything it writes sorts after every id answered here.
A client that asks again from the id after the last one it got therefore misses nothing.
docs/architecture.md, "The billing feed", has the argument in full.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cdr_notifier.search_repository import RECORD_SOURCE_COLUMNS
from cdrmodel.db import cdr

# What a record is rendered from, and no more: not `pricing`, the rater's explanation of the
# price (about 1 KB of JSON a row, which decoding cost more than the rest of the page).
_FEED_COLUMNS = [cdr.c[name] for name in RECORD_SOURCE_COLUMNS]

# Ids under this are final: no transaction that could still commit one is under it.
HORIZON: ColumnElement[int] = literal_column(
    "(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20)"
)


async def feed_page(
    conn: AsyncConnection, *, database_id: str, from_id: int, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` current CDR versions of the tenant with `from_id` <= feed id < horizon,
    in feed-id order: one range scan of the (database_id, feed_id) index."""
    stmt = (
        select(*_FEED_COLUMNS)
        .where(cdr.c.database_id == database_id, cdr.c.feed_id >= from_id)
        .where(cdr.c.feed_id < HORIZON)
        .order_by(cdr.c.feed_id)
        .limit(limit)
    )
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]
