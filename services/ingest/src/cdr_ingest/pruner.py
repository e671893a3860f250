"""Background pruning of dedupe keys and daily counters: bounded batches, never on a request."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_ingest.repository import prune_keys, prune_usage
from cdrmodel.db import is_transient

log = logging.getLogger(__name__)

USAGE_KEEP_DAYS = 7  # today's row is all a limit needs; a week is kept to look back on


class Pruner:
    """Deletes keys older than `keep_days` in batches of `batch`, pausing `pause` seconds
    between batches so a backlog (a first run, a long outage) never hogs the database."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        keep_days: int,
        batch: int,
        pause: float,
        interval: float,
    ) -> None:
        self._engine = engine
        self._keep = timedelta(days=keep_days)
        self._batch = batch
        self._pause = pause
        self._interval = interval

    async def sweep(self, now: datetime | None = None) -> list[int]:
        """One pass; returns the rows deleted by each batch (each at most `batch`)."""
        now = now or datetime.now(UTC)
        counts: list[int] = []
        key_cutoff = now - self._keep
        usage_cutoff = (now - timedelta(days=USAGE_KEEP_DAYS)).date()
        for table in ("ingest_key", "ingest_usage"):
            while True:
                async with self._engine.begin() as conn:
                    if table == "ingest_key":
                        deleted = await prune_keys(conn, cutoff=key_cutoff, limit=self._batch)
                    else:
                        deleted = await prune_usage(conn, cutoff=usage_cutoff, limit=self._batch)
                counts.append(deleted)
                if deleted < self._batch:
                    break
                await asyncio.sleep(self._pause)
        return counts

    async def run(self) -> None:
        """Forever (a supervised task): a database outage skips a round, nothing else."""
        while True:
            try:
                counts = await self.sweep()
                if sum(counts):
                    log.info("pruned %d dedupe keys and counters", sum(counts))
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("pruning skipped, database unavailable: %r", exc)
            await asyncio.sleep(self._interval)
