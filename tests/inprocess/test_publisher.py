"""Publisher.publish_many against the real Tansu: record batches built directly still put one
Kafka record per event, on the partition a keyed `send()` would choose, all acknowledged."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaTimeoutError

from cdr_ingest.publisher import Publisher
from cdrmodel.events import CdrSubmitted, new_cdr_id
from cdrmodel.kafka import KafkaClient, ensure_topics, make_producer
from cdrmodel.supervisor import Supervisor
from tests.conftest import Infra

PARTITIONS = 3


def _events(tenants: list[str], per_tenant: int) -> list[CdrSubmitted]:
    now = datetime.now(UTC)
    return [
        CdrSubmitted(
            cdr_id=new_cdr_id(),
            database_id=tenant,
            api_account="A",
            received_at=now,
            originating_number="100",
            destination_number="16138220000",
            duration=i,
            extra={"pad": "x" * 200},  # ~600 bytes a record: several 256 KiB batches
        )
        for i in range(per_tenant)
        for tenant in tenants
    ]


@pytest.fixture
async def topic(infra: Infra) -> str:
    name = f"pubtest.{uuid.uuid4().hex[:8]}"
    await ensure_topics(infra.bootstrap, [name], partitions=PARTITIONS)
    return name


@pytest.fixture
async def connected(infra: Infra) -> AsyncIterator[KafkaClient[object]]:
    supervisor = Supervisor("test")
    client = KafkaClient(lambda: make_producer(infra.bootstrap), name="producer")
    client.begin(supervisor)
    try:
        await asyncio.wait_for(client.get(), timeout=30)
        yield client  # type: ignore[misc]
    finally:
        await supervisor.stop()
        await client.close()


async def _read_all(infra: Infra, topic: str, expected: int) -> dict[int, list[bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.bootstrap, enable_auto_commit=False)
    await consumer.start()
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        async with asyncio.timeout(30):
            while sum(len(v) for v in by_partition.values()) < expected:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    by_partition[tp.partition].extend(r.value for r in records if r.value)
    finally:
        await consumer.stop()
    return by_partition


async def test_publish_many_puts_one_record_per_event_on_the_keyed_partition(
    infra: Infra, topic: str, connected: KafkaClient[object]
) -> None:
    events = _events(["TENANT_A", "TENANT_B", "TENANT_C"], 700)
    publisher = Publisher(connected, topic, timeout=30)  # type: ignore[arg-type]
    assert await publisher.publish_many(events) == [True] * len(events)

    # Where a keyed send() puts each tenant: the batches must go to the same partitions.
    producer = make_producer(infra.bootstrap)
    await producer.start()
    try:
        expected_partition = {}
        for tenant in ("TENANT_A", "TENANT_B", "TENANT_C"):
            meta = await producer.send_and_wait(topic, b"{}", key=tenant.encode())
            expected_partition[tenant] = meta.partition
    finally:
        await producer.stop()

    stored = await _read_all(infra, topic, len(events) + 3)
    ids: dict[str, int] = {}
    for partition, values in stored.items():
        for value in values:
            if value == b"{}":
                continue
            record = orjson.loads(value)
            assert expected_partition[record["database_id"]] == partition
            ids[record["cdr_id"]] = ids.get(record["cdr_id"], 0) + 1
    assert ids == {str(e.cdr_id): 1 for e in events}


class _SecondHandOffFails(Publisher):
    """Sends through the real producer, but the hand-off of the second batch raises, as a
    broker error or a timeout in the middle of a request's produce would."""

    calls = 0

    async def _send(self, producer, batch, partition):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == 2:
            raise KafkaTimeoutError("stand-in: the second batch could not be handed over")
        return await super()._send(producer, batch, partition)


async def test_batches_acknowledged_before_a_failure_are_still_answered_acknowledged(
    infra: Infra, topic: str, connected: KafkaClient[object]
) -> None:
    # Tenant A's batch (the first: tenants go in order of appearance) is acknowledged by the
    # real broker; B's hand-off raises afterwards. A's records are durable: reporting them
    # failed (50503) would make a client resend them, and a keyless one would be stored twice.
    events = _events(["TENANT_A", "TENANT_B"], 5)
    publisher = _SecondHandOffFails(connected, topic, timeout=30)  # type: ignore[arg-type]
    acked = await publisher.publish_many(events)
    assert acked == [e.database_id == "TENANT_A" for e in events]
    stored = await _read_all(infra, topic, 5)
    tenants = [orjson.loads(v)["database_id"] for vs in stored.values() for v in vs]
    assert tenants == ["TENANT_A"] * 5
