"""The billing feed's one statement: a tenant's CDR versions from a feed id, under a horizon.

A feed id (cdr_next_feed_id(), migration queries_storage) is the writing transaction's id
shifted left by 20 bits, with a sequence value in the low bits. The statement answers only
ids below `pg_snapshot_xmin(pg_current_snapshot()) << 20`, read from the statement's own
snapshot: every transaction whose id is under that horizon has ended, so each of its rows
is visible to this statement or never will be, and every transaction still running or yet
to come has an id at or above it, so anything it writes sorts after every id answered here.
A client that asks again from the id after the last one it got therefore misses nothing.
docs/architecture.md, "The billing feed", has the argument in full.

PostgreSQL writes the page: each record as the JSON document render_record would give
(`record_sql.json_fields`, with `rest_sql` spliced in), the page as one JSON array in
feed-id order. Python only wraps it, so a page of 1,000 records costs the notifier no
per-record work.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cdr_notifier.record_sql import json_fields, rest_sql, use_zone
from cdr_notifier.search_repository import driver_connection

# Ids under this are final: no transaction that could still commit one is under it.
HORIZON = "(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20)"


@dataclass(frozen=True)
class FeedPage:
    records: str  # a JSON array of the records, each with its feed_id, in feed-id order
    last_feed_id: int | None  # None when the page is empty


@lru_cache(maxsize=64)
def _page_sql(currency: str) -> str:
    # `page` is one range scan of the (database_id, feed_id) index that stops after `limit`
    # rows; only those rows are rendered. row_to_json writes a row of the fields (`f`, the
    # same columns under their names) in one pass; the few rows with more to say (`rest`,
    # a JSON object without our field names) get its members spliced in front.
    fields = json_fields(currency)
    computed = ", ".join(f'{sql} AS "{name}"' for name, sql in fields.items())
    named = ", ".join(f'page."{name}"' for name in fields)
    doc = "row_to_json(f)::text"
    record = (
        f"CASE WHEN page.rest IS NULL THEN {doc} ELSE"
        f" '{{' || substr(page.rest, 2, length(page.rest) - 2) || ',' || substr({doc}, 2) END"
    )
    return (
        f"SELECT '[' || coalesce(string_agg({record}, ',' ORDER BY page.feed_id), '') || ']'"
        " AS records, max(page.feed_id) AS last_feed_id"
        f" FROM (SELECT {computed}, {rest_sql(list(fields), recording=True)} AS rest FROM cdr"
        f" WHERE database_id = $1 AND feed_id >= $2 AND feed_id < {HORIZON}"
        " ORDER BY feed_id LIMIT $3) AS page"
        f" CROSS JOIN LATERAL (SELECT {named}) AS f"
    )


def feed_sql(*, database_id: str, from_id: int, limit: int, currency: str) -> tuple[str, list[Any]]:
    """The page's statement and its parameters (the tenant's currency is tried first when
    amounts are turned into minor units)."""
    return _page_sql(currency), [database_id, from_id, limit]


async def feed_page(
    conn: AsyncConnection,
    *,
    database_id: str,
    from_id: int,
    limit: int,
    timezone: str,
    currency: str,
) -> FeedPage:
    """Up to `limit` current CDR versions of the tenant with `from_id` <= feed id < horizon,
    in feed-id order, start times shown in `timezone`."""
    db = await driver_connection(conn)
    sql, params = feed_sql(database_id=database_id, from_id=from_id, limit=limit, currency=currency)
    async with db.transaction(readonly=True):
        await use_zone(db, timezone)
        row = await db.fetchrow(sql, *params)
    assert row is not None  # an aggregate answers one row
    return FeedPage(records=row["records"], last_feed_id=row["last_feed_id"])
