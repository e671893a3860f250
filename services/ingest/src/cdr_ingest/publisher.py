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


def give_up_ms(produce_timeout: float) -> int:
    """The producer's request timeout for an ingest that answers 50503 after `produce_timeout`.

    aiokafka keeps a batch it could not deliver and retries it until the batch is older than
    the request timeout, even after the request that sent it stopped waiting. With the default
    (15 s) a record answered 50503 during a broker outage was still delivered, and stored,
    when the broker came back within that time. A batch is failed at the latest two request
    timeouts after it was made (one queued behind a request in flight, one in flight itself),
    so 0.4 of the answer's budget lets the producer give up before the client is told 50503.
    """
    return max(int(produce_timeout * 400), 100)


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
