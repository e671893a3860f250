"""Publishing accepted CDRs: answer only once the broker acknowledged (acks=all)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from cdr_ingest.dedupe import Unavailable
from cdrmodel import tracing
from cdrmodel.events import CdrSubmitted
from cdrmodel.kafka import KafkaClient
from cdrmodel.kafka_metrics import PRODUCE_SECONDS

if TYPE_CHECKING:
    from opentelemetry.context import Context

log = logging.getLogger(__name__)

# What the producer uses for keyed `send()`: a tenant's records land on the same partition.
_PARTITIONER = DefaultPartitioner()


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
        self._observe = PRODUCE_SECONDS.labels(topic).observe

    async def publish_many(
        self, events: Sequence[CdrSubmitted], *, origins: Sequence[Context | None] | None = None
    ) -> list[bool]:
        """Every event as one Kafka record; True for each the broker acknowledged within the
        timeout, nothing True before its ack. While tracing is on, each record's headers carry
        the `send` span of its request (`origins`, else the current one).

        Records are appended to aiokafka record batches directly (`create_batch` /
        `send_batch`) instead of `send()` one by one: consumers see the same records, but the
        partitioning (a pure-Python murmur2 of the tenant key) and the accumulator's
        bookkeeping are paid once per batch, not once per record, and a closed batch leaves
        at once instead of waiting out the producer's linger.
        """
        producer = self._producer.client
        if producer is None:
            log.warning("publish failed: not connected to Kafka yet")
            return [False] * len(events)
        sent: list[tuple[list[int], asyncio.Future[object]]] = []
        spans = tracing.sends(self._topic, len(events), origins) if tracing.enabled() else None
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._timeout
        try:
            async with asyncio.timeout_at(deadline):
                partitions = sorted(await producer.partitions_for(self._topic))
                for database_id, indexes in _by_tenant(events).items():
                    key = database_id.encode()
                    partition = _PARTITIONER(key, partitions, partitions)
                    batch = producer.create_batch()
                    members: list[int] = []
                    for i in indexes:
                        value = events[i].model_dump_json().encode()
                        headers = None if spans is None else spans.headers[i]
                        if (
                            batch.append(key=key, value=value, timestamp=None, headers=headers)
                            is None
                        ):
                            sent.append((members, await self._send(producer, batch, partition)))
                            batch, members = producer.create_batch(), []
                            # An empty batch takes any one record, however large.
                            batch.append(key=key, value=value, timestamp=None, headers=headers)
                        members.append(i)
                    sent.append((members, await self._send(producer, batch, partition)))
        except (TimeoutError, KafkaError, OSError) as exc:
            # Batches already handed to the producer may still be (or have been) acknowledged:
            # they are waited for below and counted, never reported failed wholesale.
            log.warning("publish failed after %d batches: %r", len(sent), exc)
        acked = await _acknowledged(len(events), sent, deadline - loop.time())
        self._observe(loop.time() - started)
        if spans is not None:
            spans.end(acked)
        return acked

    async def _send(
        self, producer: AIOKafkaProducer, batch: BatchBuilder, partition: int
    ) -> asyncio.Future[object]:
        batch.close()  # closed: the sender takes it now rather than after the linger
        future: asyncio.Future[object] = await producer.send_batch(
            batch, self._topic, partition=partition
        )
        return future


async def _acknowledged(
    count: int, sent: list[tuple[list[int], asyncio.Future[object]]], remaining: float
) -> list[bool]:
    """True for each record whose batch the broker acknowledged within `remaining` seconds.

    `asyncio.wait`, not `gather` under a timeout: a timeout must not cancel the futures of
    batches the broker already took, and a batch acknowledged before the deadline is counted
    as acknowledged (answered 0) even when a later one was not. A record answered 50503 while
    its batch was in fact stored would, without a dedupe key, be stored twice on retry."""
    futures = [f for _, f in sent]
    if futures and remaining > 0:
        await asyncio.wait(futures, timeout=remaining)
    acked = [False] * count
    failures: list[BaseException] = []
    for members, future in sent:
        if not future.done() or future.cancelled():
            continue  # unknown yet: the producer fails it within give_up_ms (50503)
        error = future.exception()
        if error is not None:
            failures.append(error)
            continue
        for i in members:
            acked[i] = True
    waiting = sum(not f.done() for f in futures)
    if failures or waiting:
        log.warning(
            "publish: %d of %d batches failed, %d unanswered in time%s",
            len(failures),
            len(sent),
            waiting,
            f": {failures[0]!r}" if failures else "",
        )
    return acked


def _by_tenant(events: Sequence[CdrSubmitted]) -> dict[str, list[int]]:
    """Event indexes per tenant (the partitioning key), in order."""
    groups: dict[str, list[int]] = {}
    for i, event in enumerate(events):
        groups.setdefault(event.database_id, []).append(i)
    return groups
