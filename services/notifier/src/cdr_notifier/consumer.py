"""The notifier's Kafka loop: cdr.rated.v1 in batches becomes delivery rows.

Consistency order: the deliveries of a batch are committed to PostgreSQL first, then
(cdrmodel.kafka.run_batches) the offsets. A replayed batch meets the delivery table's unique
key (tenant, subscription, cdr_id, feed_id) and adds nothing.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import ConsumerRecord
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_notifier import repository
from cdr_notifier.service import deliveries_for
from cdrmodel.events import CdrRated

log = logging.getLogger(__name__)

QUEUED = Counter("cdrflow_notifier_deliveries_queued_total", "Deliveries recorded from events")


class DeliveryRecorder:
    def __init__(self, engine: AsyncEngine, wake: asyncio.Event) -> None:
        self._engine = engine
        self._wake = wake

    async def handle(self, records: list[ConsumerRecord]) -> None:
        events = []
        for rec in records:
            try:
                events.append(CdrRated.model_validate_json(rec.value))
            except ValidationError:
                log.error("malformed event at %s:%s:%s", rec.topic, rec.partition, rec.offset)
        if not events:
            return
        async with self._engine.begin() as conn:
            subs = await repository.enabled_subscriptions(
                conn, database_ids=[e.database_id for e in events]
            )
            rows = deliveries_for(events, subs)
            await repository.insert_deliveries(conn, rows=rows)
        if rows:
            QUEUED.inc(len(rows))
            self._wake.set()
