"""The rater's batch handler: decode, price, store, publish. Thin around `pricing`.

Consistency order (see cdrmodel.kafka.run_batches): this handler commits the batch to
PostgreSQL, then publishes cdr.rated.v1 and waits for the broker's acks, and only after it
returns are the consumed offsets committed. A crash anywhere before that replays the batch:
the insert ignores cdr_ids already stored and the already-stored versions are re-published
with their original feed_id, which the notifier's unique key absorbs.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_rater import repository
from cdr_rater.pricing import Call, Rating, TenantPlan, party_number, rate_call
from cdrmodel.db import is_transient
from cdrmodel.events import CdrRated, CdrSubmitted
from cdrmodel.record import render_record

log = logging.getLogger(__name__)

RATED = Counter("cdrflow_rater_cdrs_total", "CDRs stored by the rater", ["outcome"])
DROPPED = Counter(
    "cdrflow_rater_dead_lettered_total", "Events set aside on the dead-letter topic", ["reason"]
)
BATCH_SECONDS = Histogram("cdrflow_rater_batch_seconds", "Time to handle one consumed batch")


def _row(event: CdrSubmitted, rating: Rating, *, currency: str, now: datetime) -> dict[str, Any]:
    return {
        "cdr_id": event.cdr_id,
        "database_id": event.database_id,
        "api_account": event.api_account,
        "external_id": event.external_id,
        "source": event.source,
        "originating_number": event.originating_number,
        "destination_number": event.destination_number,
        "start_time": event.start_time,
        "start_time_raw": event.start_time_raw,
        "duration": event.duration,
        "disposition": event.disposition,
        "ring_seconds": event.ring_seconds,
        "account_code": event.account_code,
        "extra": event.extra,
        "received_at": event.received_at,
        "rated": rating.rated,
        "unrated_reason": rating.unrated_reason,
        "direction": rating.direction,
        "extension": rating.extension,
        "package_id": rating.package_id,
        "route_id": rating.route_id,
        "account": rating.account,
        "client": rating.client,
        "normalized_number": rating.number,
        "call_type": rating.call_type,
        "call_billing": rating.call_billing,
        "destination_name": rating.destination_name,
        "matched_prefix": rating.matched_prefix,
        "billed_seconds": rating.billed_seconds,
        "rate": rating.rate,
        "total": rating.total,
        "cost": rating.cost,
        "currency": currency,
        "rated_at": now,
        "updated_at": now,
    }


def _rate(cdr_id: uuid.UUID, call: Call, plan: TenantPlan, default_package: str | None) -> Rating:
    """Rating never stops a batch: a fault in it holds the record unrated, to be re-rated."""
    try:
        return rate_call(call, plan, default_package=default_package)
    except (ArithmeticError, ValueError) as exc:
        log.error("rating %s failed: %r", cdr_id, exc)
        return Rating(rated=False, unrated_reason="rating_error")


def _call(event: CdrSubmitted) -> Call:
    return Call(
        originating=event.originating_number,
        destination=event.destination_number,
        start_time=event.start_time,
        duration=event.duration,
        disposition=event.disposition,
    )


class RatingHandler:
    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        rated_topic: str,
        *,
        dead_letter_topic: str,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._topic = rated_topic
        self._dead_topic = dead_letter_topic

    async def handle(self, records: list[ConsumerRecord]) -> None:
        with BATCH_SECONDS.time():
            events = await self._decode(records)
            stored = await self._store_isolating(events)
            await self._publish(stored)

    async def _decode(self, records: list[ConsumerRecord]) -> list[tuple[CdrSubmitted, bytes]]:
        events = []
        for rec in records:
            try:
                events.append((CdrSubmitted.model_validate_json(rec.value), rec.value))
            except ValidationError as exc:
                await self._dead_letter(rec.value, "malformed", exc)
        return events

    async def _dead_letter(self, raw: bytes, reason: str, exc: BaseException | str) -> None:
        """Set a record that can never be stored aside on the dead-letter topic, kept as it
        came, so the partition keeps moving and nothing accepted silently disappears."""
        DROPPED.labels(reason).inc()
        log.error("dead-lettering a record (%s): %s", reason, exc)
        await self._producer.send_and_wait(
            self._dead_topic,
            value=raw,
            headers=[("reason", reason.encode()), ("error", str(exc)[:1000].encode())],
        )

    async def _store_isolating(
        self, events: list[tuple[CdrSubmitted, bytes]]
    ) -> list[tuple[dict[str, Any], str]]:
        """The batch in one transaction; if a record in it cannot be stored, each record alone,
        the ones that still fail going to the dead-letter topic."""
        try:
            return await self._store(events)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("batch of %d failed (%r); storing one by one", len(events), exc)
        stored = []
        for event in events:
            try:
                stored += await self._store([event])
            except Exception as exc:
                if is_transient(exc):
                    raise
                await self._dead_letter(event[1], "unstorable", exc)
        return stored

    async def _store(
        self, events: list[tuple[CdrSubmitted, bytes]]
    ) -> list[tuple[dict[str, Any], str]]:
        by_tenant: dict[str, list[tuple[CdrSubmitted, bytes]]] = defaultdict(list)
        for pair in events:
            by_tenant[pair[0].database_id].append(pair)
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        zones: dict[str, str] = {}
        async with self._engine.begin() as conn:
            for database_id, pairs in by_tenant.items():
                tenant = await repository.load_tenant(conn, database_id=database_id)
                if tenant is None:
                    for _ev, raw in pairs:
                        await self._dead_letter(raw, "unknown_tenant", database_id)
                    continue
                evs = [ev for ev, _raw in pairs]
                zones[database_id] = tenant["timezone"]
                plan = TenantPlan(home_country=tenant["country"])
                plan.extensions = await repository.load_extensions(
                    conn,
                    database_id=database_id,
                    numbers=[n for e in evs for n in (e.originating_number, e.destination_number)],
                )
                defaults = await repository.load_default_packages(
                    conn, database_id=database_id, accounts=[e.api_account for e in evs]
                )
                calls = [_call(e) for e in evs]
                numbers = [party_number(call, plan)[1] for call in calls]
                plan.packages, plan.routes = await repository.load_decks(
                    conn, database_id=database_id, prefixes=repository.all_prefixes(numbers)
                )
                for ev, call in zip(evs, calls, strict=True):
                    rating = _rate(ev.cdr_id, call, plan, defaults.get(ev.api_account))
                    rows.append(_row(ev, rating, currency=tenant["currency"], now=now))
            await repository.insert_cdrs(conn, rows=rows)
            stored = await repository.fetch_cdrs(conn, cdr_ids=[r["cdr_id"] for r in rows])
        for row in stored:
            RATED.labels("rated" if row["rated"] else "unrated").inc()
        return [(row, zones[row["database_id"]]) for row in stored]

    async def _publish(self, stored: list[tuple[dict[str, Any], str]]) -> None:
        futures = []
        for row, zone in stored:
            event = CdrRated(
                cdr_id=row["cdr_id"],
                database_id=row["database_id"],
                feed_id=row["feed_id"],
                record=render_record(row, timezone=zone),
            )
            futures.append(
                await self._producer.send(
                    self._topic,
                    value=event.model_dump_json().encode(),
                    key=row["database_id"].encode(),
                )
            )
        if futures:
            await asyncio.gather(*futures)
