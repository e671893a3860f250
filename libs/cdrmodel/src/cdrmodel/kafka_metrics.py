"""Kafka metrics every stage shares: produce latency, and the consumer loop's lag and batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError
from prometheus_client import Gauge, Histogram

PRODUCE_SECONDS = Histogram(
    "cdrflow_kafka_produce_seconds",
    "From handing records to the producer to the broker's acknowledgement (acks=all), "
    "once per publish call (a group of submissions at ingest, a stored batch at the rater)",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CONSUMER_LAG = Gauge(
    "cdrflow_consumer_lag_records",
    "Records on the broker not yet handled by this consumer: highwater minus position, per "
    "assigned partition, sampled after each poll (partitions assigned elsewhere drop out)",
    ["group", "topic", "partition"],
)
BATCH_RECORDS = Histogram(
    "cdrflow_consumer_batch_records",
    "Records per consumed batch",
    ["group"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
BATCH_SECONDS = Histogram(
    "cdrflow_consumer_batch_seconds",
    "Time to handle one consumed batch and commit its offsets, retries included",
    ["group"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

_SAMPLE_WAIT = 0.5  # seconds a lag sample may take at most
_produce: dict[str, Callable[[float], None]] = {}


@contextmanager
def timed_produce(topic: str) -> Iterator[None]:
    """Observes the block (sends, then the awaited acks) in PRODUCE_SECONDS{topic}."""
    observe = _produce.get(topic)
    if observe is None:
        observe = _produce[topic] = PRODUCE_SECONDS.labels(topic).observe
    started = time.perf_counter()
    try:
        yield
    finally:
        observe(time.perf_counter() - started)


class ConsumerMetrics:
    """One consumer loop's metrics (cdrmodel.kafka.run_batches), children looked up once."""

    def __init__(self, group: str) -> None:
        self._group = group
        self._records = BATCH_RECORDS.labels(group).observe
        self._seconds = BATCH_SECONDS.labels(group).observe
        self._lag: dict[TopicPartition, Gauge] = {}

    def batch(self, size: int, seconds: float) -> None:
        self._records(size)
        self._seconds(seconds)

    async def sample_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Highwater minus position for each assigned partition whose highwater is known
        (it comes with fetch answers). Partitions no longer assigned lose their series, so
        summing over replicas after a rebalance counts each partition once."""
        assigned = consumer.assignment()
        for tp in [tp for tp in self._lag if tp not in assigned]:
            CONSUMER_LAG.remove(self._group, tp.topic, str(tp.partition))
            del self._lag[tp]
        try:
            # position() answers at once for a partition that has been fetched, which a
            # highwater implies; it waits only while a position is being reset, and the
            # loop must not wait with it: such a partition is sampled next time.
            async with asyncio.timeout(_SAMPLE_WAIT):
                for tp in assigned:
                    try:
                        highwater = consumer.highwater(tp)
                        if highwater is None:
                            continue
                        position = await consumer.position(tp)
                    except (IllegalStateError, AssertionError):
                        continue  # revoked by a rebalance meanwhile (highwater asserts)
                    self._gauge(tp).set(max(0, highwater - position))
        except TimeoutError:
            pass

    def _gauge(self, tp: TopicPartition) -> Gauge:
        gauge = self._lag.get(tp)
        if gauge is None:
            gauge = self._lag[tp] = CONSUMER_LAG.labels(self._group, tp.topic, str(tp.partition))
        return gauge
