"""The rater's Kafka loop: cdr.submitted.v1 in batches through RatingHandler."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer

from cdr_rater.handler import RatingHandler
from cdrmodel.kafka import run_batches

log = logging.getLogger(__name__)


async def consume(consumer: AIOKafkaConsumer, handler: RatingHandler, *, batch: int) -> None:
    try:
        await run_batches(consumer, handler.handle, max_records=batch)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("rater consumer stopped")
        raise
