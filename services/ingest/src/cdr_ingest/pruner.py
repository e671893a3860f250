"""Background pruning of dedupe keys and daily counters (cdrmodel.pruning)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cdr_ingest.repository import prune_keys, prune_usage
from cdrmodel.pruning import Pruner

USAGE_KEEP_DAYS = 7  # today's row is all a limit needs; a week is kept to look back on


def dedupe_pruner(
    engine: AsyncEngine, *, keep_days: int, batch: int, pause: float, interval: float
) -> Pruner:
    """Deletes keys older than `keep_days`, and counters older than a week."""
    keep = timedelta(days=keep_days)

    async def keys(conn: AsyncConnection, now: datetime, limit: int) -> int:
        return await prune_keys(conn, cutoff=now - keep, limit=limit)

    async def usage(conn: AsyncConnection, now: datetime, limit: int) -> int:
        cutoff = (now - timedelta(days=USAGE_KEEP_DAYS)).date()
        return await prune_usage(conn, cutoff=cutoff, limit=limit)

    return Pruner(
        engine,
        steps=[keys, usage],
        batch=batch,
        pause=pause,
        interval=interval,
        what="dedupe keys and counters",
    )
