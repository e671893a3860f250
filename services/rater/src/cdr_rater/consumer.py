"""The rater's Kafka loop: cdr.submitted.v1 in batches through RatingHandler."""

from __future__ import annotations

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
    stage: str,
    batch: int,
) -> None:
    """Wait for both Kafka clients, then rate batches until cancelled. It never returns; if it
    raises, the app's supervisor reports the death and the process exits."""
    handler = RatingHandler(engine, await producer.get(), rated_topic, stage=stage)
    source = await consumer.get()
    log.info("rater consuming")
    await run_batches(source, handler.handle, max_records=batch)
