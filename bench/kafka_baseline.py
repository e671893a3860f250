"""Kafka baselines for `bench/run.py`: what aiokafka alone does against the same broker."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from loadgen import percentile

from cdrmodel.events import CdrSubmitted, new_cdr_id
from cdrmodel.kafka import make_producer

KEY = b"DEMO"  # ingest keys every record by tenant, so a single tenant lands on one partition


@dataclass
class ProducerResult:
    messages: int
    seconds: float
    payload_bytes: int
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def sample_payload(
    *, source: str = "api_submitcdr", start: datetime | None = None, external_id: str | None = None
) -> bytes:
    """A record of the shape and size ingest publishes (by default for the compat submission
    the benchmark sends)."""
    now = datetime.now(UTC)
    event = CdrSubmitted(
        cdr_id=new_cdr_id(),
        database_id="DEMO",
        api_account="DEMO",
        source=source,
        received_at=now,
        originating_number="100",
        destination_number="16138220000",
        start_time=start or now - timedelta(seconds=90),
        duration=90,
        external_id=external_id,
    )
    return event.model_dump_json().encode()


async def raw_producer(
    bootstrap: str,
    topic: str,
    *,
    messages: int,
    max_seconds: float,
    payloads: Sequence[bytes] | None = None,
) -> ProducerResult:
    """`messages` sends, one `send()` a message, as fast as aiokafka batches them (acks=all,
    linger 5 ms), all acked; the payloads taken in turn (default: one compat-like event)."""
    cycle = list(payloads) if payloads else [sample_payload()]
    payload = cycle[0]
    producer = make_producer(bootstrap, linger_ms=5)  # ingest's own producer settings
    await producer.start()
    try:
        await producer.send_and_wait(topic, payload, key=KEY)  # metadata and connection first
        start = time.perf_counter()
        deadline = start + max_seconds
        pending: list[asyncio.Future[object]] = []
        for sent in range(messages):
            # Checking the clock every 1000 sends keeps the bound cheap.
            if sent % 1000 == 0 and time.perf_counter() > deadline:
                break
            pending.append(await producer.send(topic, cycle[sent % len(cycle)], key=KEY))
        await asyncio.gather(*pending)
        seconds = time.perf_counter() - start
    finally:
        await producer.stop()
    size = sum(len(p) for p in cycle) // len(cycle)
    return ProducerResult(messages=len(pending), seconds=seconds, payload_bytes=size)


async def acked_senders(
    bootstrap: str, topic: str, *, concurrency: int, seconds: float
) -> ProducerResult:
    """Ingest's pattern without HTTP: `concurrency` senders, each awaiting its own ack."""
    payload = sample_payload()
    producer = make_producer(bootstrap, linger_ms=5)
    await producer.start()
    latencies: array[float] = array("d")
    try:
        await producer.send_and_wait(topic, payload, key=KEY)
        start = time.perf_counter()
        deadline = start + seconds

        async def sender() -> None:
            while (t0 := time.perf_counter()) < deadline:
                await producer.send_and_wait(topic, payload, key=KEY)
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    finally:
        await producer.stop()
    ordered = sorted(latencies)
    return ProducerResult(
        messages=len(latencies),
        seconds=elapsed,
        payload_bytes=len(payload),
        p50_ms=percentile(ordered, 50) * 1000,
        p99_ms=percentile(ordered, 99) * 1000,
    )
