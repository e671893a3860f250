"""Publishing accepted CDRs: answer only once the broker acknowledged (acks=all)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from cdr_ingest.dedupe import Unavailable
from cdrmodel.events import CdrSubmitted
from cdrmodel.kafka import KafkaClient

log = logging.getLogger(__name__)


class PublishFailed(Unavailable):
    """The broker did not acknowledge in time: the caller answers 50503, nothing stored."""


class Publisher:
    def __init__(
        self, producer: KafkaClient[AIOKafkaProducer], topic: str, *, timeout: float
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout = timeout

    async def publish_many(self, events: Sequence[CdrSubmitted]) -> list[bool]:
        """All events in one produce round trip (the producer batches what is sent together);
        True for each the broker acknowledged within the timeout."""
        producer = self._producer.client
        if producer is None:
            log.warning("publish failed: not connected to Kafka yet")
            return [False] * len(events)
        try:
            async with asyncio.timeout(self._timeout):
                sends = [
                    await producer.send(
                        self._topic,
                        value=event.model_dump_json().encode(),
                        key=event.database_id.encode(),
                    )
                    for event in events
                ]
                acks = await asyncio.gather(*sends, return_exceptions=True)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("publish failed: %r", exc)
            return [False] * len(events)
        failed = [a for a in acks if isinstance(a, BaseException)]
        if failed:
            log.warning("publish failed for %d of %d: %r", len(failed), len(acks), failed[0])
        return [not isinstance(a, BaseException) for a in acks]
