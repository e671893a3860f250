"""The notifier's Kafka loop: cdr.rated.v1 in batches becomes delivery rows.

Consistency order (cdrmodel.consumer.BatchProcessor, then cdrmodel.kafka.run_batches): the
deliveries of a batch and its rejections (malformed, unstorable) commit to PostgreSQL in one
transaction, then the dispatcher is woken, then the offsets are committed. A replayed batch
meets the delivery table's unique key (tenant, subscription, cdr_id, feed_id) and
rejected_event's (stage, topic, partition, offset), and adds nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import ConsumerRecord
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cdr_notifier import repository
from cdr_notifier.service import deliveries_for
from cdrmodel import tracing
from cdrmodel.consumer import BatchProcessor, Item, Stored
from cdrmodel.events import CdrRated

log = logging.getLogger(__name__)

QUEUED = Counter("cdrflow_notifier_deliveries_queued_total", "Deliveries recorded from events")


class DeliveryRecorder:
    def __init__(self, engine: AsyncEngine, wake: asyncio.Event, *, stage: str) -> None:
        self._wake = wake
        self._batches: BatchProcessor[CdrRated, dict[str, Any]] = BatchProcessor(
            engine,
            stage=stage,
            decode=CdrRated.model_validate_json,
            store=self._store,
            publish=self._queued,
        )

    async def handle(self, records: list[ConsumerRecord]) -> None:
        await self._batches.handle(records)

    async def _store(
        self, conn: AsyncConnection, items: list[Item[CdrRated]]
    ) -> Stored[dict[str, Any]]:
        events = [item.event for item in items]
        subs = await repository.enabled_subscriptions(
            conn, database_ids=[e.database_id for e in events]
        )
        rows = deliveries_for(events, subs)
        if rows and tracing.enabled():
            # Each delivery keeps its event's `process` span: every push of it, from whichever
            # notifier claims it, continues that trace (delivery.traceparent). Off, the rows
            # and the statement stay as they were, and the column NULL.
            records = {(i.event.cdr_id, i.event.feed_id): i.record for i in items}
            for row in rows:
                record = records[(row["cdr_id"], row["feed_id"])]
                row["traceparent"] = tracing.record_traceparent(record)
        await repository.insert_deliveries(conn, rows=rows)
        return Stored(results=rows)

    async def _queued(self, rows: list[dict[str, Any]]) -> None:
        """After the commit: the dispatcher stops idling."""
        QUEUED.inc(len(rows))
        self._wake.set()
