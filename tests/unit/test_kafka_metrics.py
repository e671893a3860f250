"""Consumer lag from a consumer's highwater and position, per assigned partition."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError
from prometheus_client import REGISTRY

from cdrmodel import kafka_metrics
from cdrmodel.kafka_metrics import ConsumerMetrics


class FakeConsumer:
    def __init__(self) -> None:
        self.highwaters: dict[TopicPartition, int | None] = {}
        self.positions: dict[TopicPartition, int] = {}
        self.hang: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.highwaters)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters[tp]

    async def position(self, tp: TopicPartition) -> int:
        if tp in self.hang:
            await asyncio.Event().wait()  # a position being reset
        if tp not in self.positions:
            raise IllegalStateError(f"Partition {tp} is not assigned")
        return self.positions[tp]


def lag(group: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "cdrflow_consumer_lag_records",
        {"group": group, "topic": "t", "partition": str(partition)},
    )


async def test_lag_is_highwater_minus_position_per_assigned_partition() -> None:
    fake = FakeConsumer()
    p0, p1, p2 = (TopicPartition("t", n) for n in range(3))
    fake.highwaters = {p0: 100, p1: 7, p2: None}  # p2 not fetched yet: no sample
    fake.positions = {p0: 40, p1: 7, p2: 0}
    metrics = ConsumerMetrics("g-lag")
    await metrics.sample_lag(cast(AIOKafkaConsumer, fake))
    assert (lag("g-lag", 0), lag("g-lag", 1), lag("g-lag", 2)) == (60, 0, None)

    # A rebalance moves p0 away: its series goes, so replicas' sums count it once.
    del fake.highwaters[p0]
    fake.positions[p1] = 5
    await metrics.sample_lag(cast(AIOKafkaConsumer, fake))
    assert (lag("g-lag", 0), lag("g-lag", 1)) == (None, 2)


async def test_a_partition_revoked_mid_sample_is_skipped() -> None:
    fake = FakeConsumer()
    p0, p1 = TopicPartition("t", 0), TopicPartition("t", 1)
    fake.highwaters = {p0: 10, p1: 10}
    fake.positions = {p1: 4}  # p0: position() raises IllegalStateError
    await ConsumerMetrics("g-revoked").sample_lag(cast(AIOKafkaConsumer, fake))
    assert (lag("g-revoked", 0), lag("g-revoked", 1)) == (None, 6)


async def test_a_position_being_reset_does_not_hold_up_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka_metrics, "_SAMPLE_WAIT", 0.05)
    fake = FakeConsumer()
    p0 = TopicPartition("t", 0)
    fake.highwaters, fake.positions, fake.hang = {p0: 10}, {p0: 0}, {p0}
    started = time.monotonic()
    await ConsumerMetrics("g-hang").sample_lag(cast(AIOKafkaConsumer, fake))
    assert time.monotonic() - started < 1.0
    assert lag("g-hang", 0) is None


def test_batches_are_observed_by_size_and_time() -> None:
    metrics = ConsumerMetrics("g-batch")
    metrics.batch(250, 0.04)
    metrics.batch(3, 0.01)

    def sample(name: str, **labels: Any) -> float | None:
        return REGISTRY.get_sample_value(name, {"group": "g-batch", **labels})

    assert sample("cdrflow_consumer_batch_records_sum") == 253
    assert sample("cdrflow_consumer_batch_records_bucket", le="5.0") == 1
    assert sample("cdrflow_consumer_batch_seconds_count") == 2
