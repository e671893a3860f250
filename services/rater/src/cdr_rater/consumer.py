"""The rater's Kafka loop: cdr.submitted.v1 in batches through RatingHandler."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_rater.handler import RatingHandler
from cdrmodel.kafka import KafkaClient, run_batches

log = logging.getLogger(__name__)


async def consume(
    engine: AsyncEngine,
    *,
    consumer: KafkaClient[AIOKafkaConsumer],
    producer: KafkaClient[AIOKafkaProducer],
    rated_topic: str,
    dead_letter_topic: str,
    batch: int,
) -> None:
    """Wait for both Kafka clients, then rate batches until cancelled."""
    handler = RatingHandler(
        engine, await producer.get(), rated_topic, dead_letter_topic=dead_letter_topic
    )
    source = await consumer.get()
    log.info("rater consuming")
    try:
        await run_batches(source, handler.handle, max_records=batch)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("rater consumer stopped")
        raise
