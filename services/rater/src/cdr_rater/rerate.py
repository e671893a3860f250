"""Re-rating stored CDRs with today's configuration: by itself after a configuration change
(the tenant's unrated records), over a period on request, and for a corrected start time.

Consistency order, as the consumer's: a keyset batch is locked and re-priced by the same pure
functions as live rating (`handler.rate_events`); each record whose rating changed gets its new
version (revision + 1, the next feed_id) and a `cdr_revision` row, all in ONE short transaction.
After the commit the new versions are published on cdr.rated.v1 and their acks awaited; only
then are their history rows marked published. A process that dies in between leaves them
unmarked and the background task publishes the current versions again (at least once: the
notifier's unique key absorbs a repeat). A re-rate that changes nothing writes nothing, so
every path here is safe to repeat, by a retry, a second replica or a replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cdr_rater import rerate_repository as sql
from cdr_rater.handler import rate_events, rated_event
from cdr_rater.plans import PlanCache, TenantConfig
from cdrmodel.db import is_transient
from cdrmodel.errors import CdrError, NotFound, Unprocessable
from cdrmodel.events import CdrSubmitted
from cdrmodel.kafka import KafkaClient
from cdrmodel.money import fmt8
from cdrmodel.timeutil import aware

log = logging.getLogger(__name__)

CONFIG_CHANGED, PERIOD, CORRECTED = "config_changed", "rerate", "start_time_corrected"
# How long after a pass the records stored unrated around it are looked at again, and how
# far before the pass they may have been priced (a consumer batch's transaction is shorter).
SETTLE_SECONDS = 5.0
SETTLE_MARGIN = timedelta(seconds=60)

Rows = list[dict[str, Any]]
Locker = Callable[[AsyncConnection, Mapping[str, Any] | None], Awaitable[Rows]]
_EVENT_FIELDS = tuple(f for f in CdrSubmitted.model_fields if f != "direction")


@dataclass
class Counts:
    """What a re-rate did: `still_unrated` counts the examined records unrated afterwards."""

    examined: int = 0
    changed: int = 0
    unchanged: int = 0
    still_unrated: int = 0

    def add(self, other: Counts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class Repriced:
    counts: Counts
    stored: list[dict[str, Any]] = field(default_factory=list)  # the new versions


def _event(row: Mapping[str, Any], start_time: datetime | None) -> CdrSubmitted:
    # The stored row already holds validated values: no second validation per record.
    values = {name: row[name] for name in _EVENT_FIELDS}
    if start_time is not None:
        values["start_time"] = start_time
    return CdrSubmitted.model_construct(**values)


def snapshot(row: Mapping[str, Any]) -> dict[str, Any]:
    """The priced fields of a row as JSON for the history: money as 8-place strings."""
    out: dict[str, Any] = {}
    for name in sql.PRICED:
        value = row.get(name)
        if isinstance(value, Decimal):
            value = fmt8(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        out[name] = value
    return out


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return any(old.get(name) != new.get(name) for name in sql.PRICED)


async def reprice(
    conn: AsyncConnection,
    *,
    config: TenantConfig,
    rows: Sequence[Mapping[str, Any]],
    reason: str,
    start_times: Mapping[uuid.UUID, datetime] | None = None,
) -> Repriced:
    """Re-price locked rows in the caller's transaction; store those whose rating changed."""
    if not rows:
        return Repriced(Counts())
    now = datetime.now(UTC)
    starts = start_times or {}
    fresh = rate_events(
        [_event(r, starts.get(r["cdr_id"])) for r in rows],
        config.plan,
        default_packages=config.default_packages,
        currency=config.currency,
        now=now,
    )
    counts = Counts(examined=len(rows))
    changes: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    for old, new in zip(rows, fresh, strict=True):
        counts.still_unrated += not new["rated"]
        if not _changed(old, new):
            counts.unchanged += 1
            continue
        changes.append(new)
        history.append(
            {
                "cdr_id": old["cdr_id"],
                "database_id": old["database_id"],
                "revision": old["revision"] + 1,
                "reason": reason,
                "old": snapshot(old),
                "new": snapshot(new),
                "changed_at": now,
            }
        )
    counts.changed = len(changes)
    stored = await sql.store_revisions(conn, rows=changes, history=history)
    return Repriced(counts, stored)


class Publisher:
    """cdr.rated.v1 for new versions, after their commit; then their history rows marked."""

    def __init__(
        self,
        engine: AsyncEngine,
        producer: KafkaClient[AIOKafkaProducer],
        topic: str,
        *,
        timeout: float = 10.0,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._topic = topic
        self._timeout = timeout

    async def publish(self, rows: Sequence[Mapping[str, Any]], *, zones: Mapping[str, str]) -> None:
        """The new versions are committed already: broker trouble leaves their history rows
        unmarked, and the background round publishes them again later (`unpublished`). It
        never fails the request or the rerating task that committed them."""
        if not rows:
            return
        try:
            async with asyncio.timeout(self._timeout):
                producer = await self._producer.get()
                acks = []
                for row in rows:
                    event = rated_event(row, timezone=zones[row["database_id"]])
                    acks.append(
                        await producer.send(
                            self._topic,
                            value=event.model_dump_json().encode(),
                            key=row["database_id"].encode(),
                        )
                    )
                await asyncio.gather(*acks)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning(
                "publishing %d re-rated records failed, published again later: %r", len(rows), exc
            )
            return
        async with self._engine.begin() as conn:
            await sql.mark_published(conn, versions=[(r["cdr_id"], r["revision"]) for r in rows])


class Rerater:
    """Re-pricing with the tenants' current plans: the consumer's cache (`plans`), so a
    100,000-line deck is held once per process however many paths price with it."""

    def __init__(
        self, engine: AsyncEngine, publisher: Publisher, plans: PlanCache, *, batch: int
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._plans = plans
        self._batch = batch
        # tenant -> (when, since): a second look at records stored unrated around a pass
        self._settle: dict[str, tuple[float, datetime]] = {}

    async def _config(self, conn: AsyncConnection, database_id: str) -> TenantConfig:
        found = (await self._plans.configs(conn, [database_id])).get(database_id)
        if found is None:
            raise NotFound(f"tenant {database_id!r} not found")
        return found

    async def zone(self, database_id: str) -> str:
        """The tenant's time zone (NotFound without the tenant)."""
        async with self._engine.connect() as conn:
            return (await self._config(conn, database_id)).timezone

    async def _publish(
        self, database_id: str, config: TenantConfig, stored: list[dict[str, Any]]
    ) -> None:
        await self._publisher.publish(stored, zones={database_id: config.timezone})

    async def _walk(self, database_id: str, lock: Locker, *, reason: str) -> Counts:
        """Batches from `lock(conn, last row of the previous batch)` until one comes short,
        each locked, re-priced and stored in its own short transaction, then published."""
        total = Counts()
        last: dict[str, Any] | None = None
        while True:
            async with self._engine.begin() as conn:
                config = await self._config(conn, database_id)
                rows = await lock(conn, last)
                done = await reprice(conn, config=config, rows=rows, reason=reason)
            await self._publish(database_id, config, done.stored)
            total.add(done.counts)
            if len(rows) < self._batch:
                return total
            last = rows[-1]

    async def unrated(self, database_id: str, *, since: datetime | None = None) -> Counts:
        """Every unrated record of the tenant (rated since `since`, if given) once, in cdr_id
        order."""

        async def lock(conn: AsyncConnection, last: Mapping[str, Any] | None) -> Rows:
            after = last["cdr_id"] if last else None
            return await sql.lock_unrated(
                conn, database_id=database_id, after=after, since=since, limit=self._batch
            )

        return await self._walk(database_id, lock, reason=CONFIG_CHANGED)

    async def period(
        self, database_id: str, *, start: datetime, end: datetime, only_unrated: bool
    ) -> Counts:
        """Records started in [start, end), in (start_time, cdr_id) order: bounded memory
        whatever the range holds."""

        async def lock(conn: AsyncConnection, last: Mapping[str, Any] | None) -> Rows:
            return await sql.lock_period(
                conn,
                database_id=database_id,
                start=start,
                end=end,
                only_unrated=only_unrated,
                after=(last["start_time"], last["cdr_id"]) if last else None,
                limit=self._batch,
            )

        return await self._walk(database_id, lock, reason=PERIOD)

    async def correct(
        self, database_id: str, cdr_id: uuid.UUID, *, start_time: datetime
    ) -> tuple[dict[str, Any], str]:
        """A held record's start time set and the record re-rated at once: (row, zone)."""
        async with self._engine.begin() as conn:
            config = await self._config(conn, database_id)
            row = await sql.lock_one(conn, database_id=database_id, cdr_id=cdr_id)
            if row is None:
                raise NotFound(f"cdr {cdr_id} not found in tenant {database_id!r}")
            if row["rated"]:
                raise CdrError(
                    f"cdr {cdr_id} is rated: only a record held unrated takes a start time "
                    "correction (POST .../rerate re-prices rated records)",
                    status_code=409,
                )
            start = aware(start_time, config.timezone)
            if start is None:
                raise Unprocessable(f"start_time {start_time.isoformat()} is not a call time")
            done = await reprice(
                conn, config=config, rows=[row], reason=CORRECTED, start_times={cdr_id: start}
            )
        await self._publish(database_id, config, done.stored)
        return (done.stored[0] if done.stored else row), config.timezone

    async def catch_up(self, *, republish_after: float) -> None:
        """One round of the background task: passes due after configuration changes, then
        versions whose publication was lost."""
        async with self._engine.connect() as conn:
            due = await sql.due_tenants(conn)
        for database_id, version in due:
            began = datetime.now(UTC)
            try:
                counts = await self.unrated(database_id)
            except NotFound:  # deleted since: nothing left to re-rate
                continue
            async with self._engine.begin() as conn:
                await sql.mark_rerated(conn, database_id=database_id, version=version)
            # A consumer batch that read the old configuration may commit a record unrated
            # after this pass went by: look again, once its transaction must have ended.
            self._settle[database_id] = (time.monotonic() + SETTLE_SECONDS, began - SETTLE_MARGIN)
            if counts.changed:
                log.info("re-rated tenant %s at config %s: %s", database_id, version, counts)
        for database_id, (when, since) in list(self._settle.items()):
            if time.monotonic() >= when:
                del self._settle[database_id]
                with contextlib.suppress(NotFound):
                    await self.unrated(database_id, since=since)
        cutoff = datetime.now(UTC) - timedelta(seconds=republish_after)
        async with self._engine.connect() as conn:
            lost = await sql.unpublished(conn, older_than=cutoff, limit=self._batch)
        if lost:
            log.warning("publishing %d re-rated records again (their ack was lost)", len(lost))
            zones = {r["database_id"]: r["tenant_timezone"] for r in lost}
            await self._publisher.publish(lost, zones=zones)


async def run_rerating(rerater: Rerater, *, poll: float, republish_after: float) -> None:
    """The supervised background task: a round every `poll` seconds until cancelled. Passing
    database trouble waits for the next round; anything else is a death the supervisor
    reports (the work is safe to redo after the restart)."""
    while True:
        try:
            await rerater.catch_up(republish_after=republish_after)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("re-rating round failed, retried in %ss: %r", poll, exc)
        await asyncio.sleep(poll)
