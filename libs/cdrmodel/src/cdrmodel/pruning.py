"""Background pruning of old rows: bounded batches, pauses between them, never on a request.

Each service names its steps (a table's delete of at most `limit` rows older than a cutoff
derived from `now`); a pass runs each step batch after batch until one deletes fewer than
`batch` rows, pausing `pause` seconds between batches so a backlog (a first run, a long
outage) never hogs the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cdrmodel.db import is_transient

log = logging.getLogger(__name__)

# (connection, now, limit) -> rows deleted, at most `limit`
PruneStep = Callable[[AsyncConnection, datetime, int], Awaitable[int]]


class Pruner:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        steps: Sequence[PruneStep],
        batch: int,
        pause: float,
        interval: float,
        what: str,
    ) -> None:
        self._engine = engine
        self._steps = steps
        self._batch = batch
        self._pause = pause
        self._interval = interval
        self._what = what

    async def sweep(self, now: datetime | None = None) -> list[int]:
        """One pass; returns the rows deleted by each batch (each at most `batch`)."""
        now = now or datetime.now(UTC)
        counts: list[int] = []
        for step in self._steps:
            while True:
                async with self._engine.begin() as conn:
                    deleted = await step(conn, now, self._batch)
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
                    log.info("pruned %d %s", sum(counts), self._what)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("pruning %s skipped, database unavailable: %r", self._what, exc)
            await asyncio.sleep(self._interval)
