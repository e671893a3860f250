"""The partitions of `cdr` made ahead: each day, this month's and the next months' (UTC).

`cdr` is range-partitioned by month of `cdr_id` (migration cdr_partitions,
docs/architecture.md "Partitioning"). A month with no partition is not an outage, its rows go
to `cdr_default`, but the default must stay small: attaching a month scans it, and a month
whose range it already holds rows of is not created at all. So the months are made well
before they begin, one transaction each, by `cdr_create_month_partition`.

Attaching takes SHARE UPDATE EXCLUSIVE on `cdr` and ACCESS EXCLUSIVE on `cdr_default`, which
every query not pruned to one month reads. Waiting behind a long CSV export would queue
those queries behind the attach, so the wait is bounded by a short `lock_timeout`; a month
that could not take its locks is tried again `retry` seconds later, not the next day.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_rater.repository import analyze_cdr, create_month_partition
from cdrmodel.db import is_transient, sqlstate

log = logging.getLogger(__name__)

PARTITIONS = Counter(
    "cdrflow_rater_cdr_partition_months_total",
    "Months the partition-ahead task looked at, by outcome: created, exists, busy (another "
    "replica was creating), default_has_rows and name_taken (not created, see the log), "
    "lock_timeout (tried again later)",
    ["outcome"],
)
LOCK_NOT_AVAILABLE = "55P03"
DONE = frozenset({"created", "exists"})


def partition_name(month: date) -> str:
    return f"cdr_y{month.year:04d}m{month.month:02d}"


def months_from(now: datetime, count: int) -> list[date]:
    """The first days of `now`'s month (UTC) and of the `count - 1` months after it."""
    first = now.astimezone(UTC).date().replace(day=1)
    months = []
    for n in range(count):
        year, month = divmod(first.month - 1 + n, 12)
        months.append(date(first.year + year, month + 1, 1))
    return months


class PartitionMaker:
    """Keeps this month's partition and the next `ahead` months' created."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        ahead: int,
        lock_timeout: float,
        interval: float,
        retry: float,
    ) -> None:
        self._engine = engine
        self._ahead = ahead
        self._lock_timeout = lock_timeout
        self._interval = interval
        self._retry = retry

    async def round(self, now: datetime | None = None) -> dict[str, str]:
        """One pass over the months, each in its own transaction: partition name -> outcome.
        A month whose locks are not granted in time ends the pass (the later ones would wait
        for the same locks) as `lock_timeout`; the months after it are not in the answer."""
        outcomes: dict[str, str] = {}
        for month in months_from(now or datetime.now(UTC), self._ahead + 1):
            name = partition_name(month)
            try:
                async with self._engine.begin() as conn:
                    outcome = await create_month_partition(
                        conn, month=month, lock_timeout=self._lock_timeout
                    )
            except Exception as exc:
                if sqlstate(exc) != LOCK_NOT_AVAILABLE:
                    raise
                outcome = "lock_timeout"
            outcomes[name] = outcome
            PARTITIONS.labels(outcome).inc()
            if outcome == "created":
                log.info("created partition %s of cdr (ids of %s, UTC)", name, f"{month:%Y-%m}")
            elif outcome == "lock_timeout":
                log.warning(
                    "partition %s of cdr not created: its locks were not granted within %g s"
                    " (a long read of cdr_default?); tried again in %g s",
                    name,
                    self._lock_timeout,
                    self._retry,
                )
                break
            elif outcome not in DONE and outcome != "busy":
                log.warning(
                    "partition %s of cdr not created (%s): its rows stay in cdr_default;"
                    " docs/architecture.md, Partitioning",
                    name,
                    outcome,
                )
        return outcomes

    async def refresh_statistics(self) -> None:
        """`ANALYZE cdr`: the planner's statistics of the table as a whole. Autovacuum
        analyzes each partition as it changes but never the partitioned parent, whose
        statistics (what a GROUP BY or a join over every month estimates from) would
        otherwise stay those of the empty table the migration made. It samples each
        partition (about 30,000 rows of each), taking no lock that writers wait for."""
        async with self._engine.begin() as conn:
            await analyze_cdr(conn)

    async def run(self) -> None:
        """Forever (a supervised task): a round now, then every `interval` seconds, or
        `retry` seconds after one that met a lock timeout or the database unavailable;
        after each round, the parent's statistics refreshed."""
        while True:
            pause = self._interval
            try:
                outcomes = await self.round()
                await self.refresh_statistics()
                if "lock_timeout" in outcomes.values():
                    pause = self._retry
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("partitions of cdr not checked, database unavailable: %r", exc)
                pause = self._retry
            await asyncio.sleep(pause)
