"""The rater's Kafka loop: cdr.submitted.v1 in batches, rated, stored, then cdr.rated.v1.

Consistency order (cdrmodel.consumer.BatchProcessor): the batch is priced in memory against
the tenants' cached plans (cdr_rater.plans: one version query per batch) and inserted with one
multi-row statement in one transaction; after the commit each stored row is published and its ack awaited; only then are
the offsets committed. A replay re-inserts nothing (cdr_id is the key) and re-publishes the
stored versions with their original feed_id, which the notifier's unique key absorbs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from opentelemetry.context import Context
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cdr_rater import repository
from cdr_rater.handler import rate_events, rated_event
from cdr_rater.plans import PlanCache
from cdrmodel import tracing
from cdrmodel.consumer import BatchProcessor, Item, Rejection, Stored
from cdrmodel.events import CdrSubmitted
from cdrmodel.kafka import KafkaClient, run_batches
from cdrmodel.kafka_metrics import timed_produce

log = logging.getLogger(__name__)

RATED = Counter(
    "cdrflow_rater_cdrs_total",
    "CDRs stored and published by the rater's consumer (re-rates not counted): outcome rated "
    "or unrated, and for an unrated one its reason (no_package, no_rate, ...; empty when rated)",
    ["outcome", "reason"],
)
_outcomes: dict[str | None, Callable[[], None]] = {}


def _count(reason: str | None) -> None:
    """One stored row in RATED; `reason` None: rated. A child per reason, looked up once."""
    inc = _outcomes.get(reason)
    if inc is None:
        labels = ("rated", "") if reason is None else ("unrated", reason)
        inc = _outcomes[reason] = RATED.labels(*labels).inc
    inc()


# A stored cdr row, its tenant's time zone, and the trace context its cdr.rated.v1 record
# continues (its consumed record's span; None while tracing is off).
Published = tuple[dict[str, Any], str, Context | None]


class RatingHandler:
    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        rated_topic: str,
        *,
        stage: str,
        plans: PlanCache | None = None,
    ) -> None:
        self._producer = producer
        self._plans = plans if plans is not None else PlanCache()
        self._topic = rated_topic
        self._batches: BatchProcessor[CdrSubmitted, Published] = BatchProcessor(
            engine,
            stage=stage,
            decode=CdrSubmitted.model_validate_json,
            store=self._store,
            publish=self._publish,
        )

    async def handle(self, records: list[ConsumerRecord]) -> None:
        await self._batches.handle(records)

    async def _store(
        self, conn: AsyncConnection, items: list[Item[CdrSubmitted]]
    ) -> Stored[Published]:
        """Price and insert the batch inside the transaction BatchProcessor opened: one version
        query, the cached plans, one multi-row insert."""
        by_tenant: dict[str, list[Item[CdrSubmitted]]] = defaultdict(list)
        for item in items:
            by_tenant[item.event.database_id].append(item)
        configs = await self._plans.configs(conn, by_tenant)
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        out: Stored[Published] = Stored()
        for database_id, group in by_tenant.items():
            config = configs.get(database_id)
            if config is None:
                out.rejected += [
                    Rejection(i.record, "unknown_tenant", f"no tenant {database_id!r}")
                    for i in group
                ]
                continue
            rows += rate_events(
                [i.event for i in group],
                config.plan,
                default_packages=config.default_packages,
                currency=config.currency,
                now=now,
            )
        stored = await repository.store_cdrs(conn, rows=rows)
        origins = (
            {i.event.cdr_id: tracing.record_context(i.record) for i in items}
            if tracing.enabled()
            else {}
        )
        out.results = [
            (row, configs[row["database_id"]].timezone, origins.get(row["cdr_id"]))
            for row in stored
        ]
        return out

    async def _publish(self, stored: list[Published]) -> None:
        """After the commit, no transaction open: one CdrRated per stored row, acks awaited."""
        futures = []
        # Tracing on: each record carries the context of the record it was rated from.
        spans = (
            tracing.sends(self._topic, len(stored), [origin for _, _, origin in stored])
            if tracing.enabled()
            else None
        )
        acked = False
        try:
            with timed_produce(self._topic):
                for n, (row, zone, _) in enumerate(stored):
                    _count(None if row["rated"] else row["unrated_reason"] or "unknown")
                    event = rated_event(row, timezone=zone)
                    futures.append(
                        await self._producer.send(
                            self._topic,
                            value=event.model_dump_json().encode(),
                            key=row["database_id"].encode(),
                            headers=None if spans is None else spans.headers[n],
                        )
                    )
                if futures:
                    await asyncio.gather(*futures)
            acked = True
        finally:
            if spans is not None:
                spans.end(None if acked else [False] * len(stored))


async def consume(
    engine: AsyncEngine,
    *,
    consumer: KafkaClient[AIOKafkaConsumer],
    producer: KafkaClient[AIOKafkaProducer],
    rated_topic: str,
    stage: str,
    batch: int,
    plans: PlanCache | None = None,
    stopping: asyncio.Event | None = None,
) -> None:
    """Wait for both Kafka clients, then rate batches until cancelled, or until `stopping` is
    set and the batch in hand is stored and committed (graceful shutdown). If it raises, the
    app's supervisor reports the death and the process exits."""
    handler = RatingHandler(engine, await producer.get(), rated_topic, stage=stage, plans=plans)
    source = await consumer.get_unless(stopping)
    if source is None:
        return  # shut down before it was connected
    log.info("rater consuming")
    await run_batches(source, handler.handle, group=stage, max_records=batch, stopping=stopping)
