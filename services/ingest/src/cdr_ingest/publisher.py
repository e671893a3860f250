"""Publishing accepted CDRs: answer only once the broker acknowledged (acks=all)."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from cdrmodel.events import CdrSubmitted
from cdrmodel.kafka import KafkaClient

log = logging.getLogger(__name__)


class PublishFailed(Exception):
    """The broker did not acknowledge in time: the caller answers 50503, nothing stored."""


class Publisher:
    def __init__(
        self, producer: KafkaClient[AIOKafkaProducer], topic: str, *, timeout: float
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout = timeout

    async def publish(self, event: CdrSubmitted) -> None:
        producer = self._producer.client
        if producer is None:
            raise PublishFailed("not connected to Kafka yet")
        value = event.model_dump_json().encode()
        try:
            async with asyncio.timeout(self._timeout):
                await producer.send_and_wait(
                    self._topic, value=value, key=event.database_id.encode()
                )
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("publish failed: %r", exc)
            raise PublishFailed(str(exc)) from exc
