"""The rater's batch handler: decode, price, store, publish. Thin around `pricing`.

Consistency order (cdrmodel.consumer.BatchProcessor, then cdrmodel.kafka.run_batches): the
batch's CDRs and its rejections (malformed, unknown_tenant, unstorable) commit to PostgreSQL
in one transaction; then, with no transaction open, cdr.rated.v1 is published and the broker's
acks awaited; only after that are the consumed offsets committed. A crash anywhere before that
replays the batch: the insert ignores cdr_ids already stored, the already-stored versions are
re-published with their original feed_id (the notifier's unique key absorbs them), and
rejected_event's unique key keeps each rejection once.
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
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cdr_rater import repository
from cdr_rater.pricing import Call, Rating, TenantPlan, party_number, rate_call
from cdrmodel.consumer import BatchProcessor, Item, Rejection, Stored
from cdrmodel.events import CdrRated, CdrSubmitted
from cdrmodel.record import render_record

log = logging.getLogger(__name__)

RATED = Counter("cdrflow_rater_cdrs_total", "CDRs stored by the rater", ["outcome"])
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


Published = tuple[dict[str, Any], str]  # a stored cdr row and its tenant's time zone


class RatingHandler:
    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        rated_topic: str,
        *,
        stage: str,
    ) -> None:
        self._producer = producer
        self._topic = rated_topic
        self._batches: BatchProcessor[CdrSubmitted, Published] = BatchProcessor(
            engine,
            stage=stage,
            decode=CdrSubmitted.model_validate_json,
            store=self._store,
            publish=self._publish,
        )

    async def handle(self, records: list[ConsumerRecord]) -> None:
        with BATCH_SECONDS.time():
            await self._batches.handle(records)

    async def _store(
        self, conn: AsyncConnection, items: list[Item[CdrSubmitted]]
    ) -> Stored[Published]:
        """Price and insert the batch inside the transaction BatchProcessor opened."""
        by_tenant: dict[str, list[Item[CdrSubmitted]]] = defaultdict(list)
        for item in items:
            by_tenant[item.event.database_id].append(item)
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        zones: dict[str, str] = {}
        out: Stored[Published] = Stored()
        for database_id, group in by_tenant.items():
            tenant = await repository.load_tenant(conn, database_id=database_id)
            if tenant is None:
                out.rejected += [
                    Rejection(i.record, "unknown_tenant", f"no tenant {database_id!r}")
                    for i in group
                ]
                continue
            evs = [i.event for i in group]
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
        if rows:
            await repository.insert_cdrs(conn, rows=rows)
            stored = await repository.fetch_cdrs(conn, cdr_ids=[r["cdr_id"] for r in rows])
            out.results = [(row, zones[row["database_id"]]) for row in stored]
        return out

    async def _publish(self, stored: list[Published]) -> None:
        """After the commit, no transaction open: one CdrRated per stored row, acks awaited."""
        futures = []
        for row, zone in stored:
            RATED.labels("rated" if row["rated"] else "unrated").inc()
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
