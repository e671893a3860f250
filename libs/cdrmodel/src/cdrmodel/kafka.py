"""Kafka plumbing: topic names, producer/consumer factories and the batch consumer loop.

Only the plain protocol is used (acks=all, keyed partitioning, manual offset commits) so the
same code runs on Tansu and on Apache Kafka; no idempotent producer, no transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

import stamina
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError

from cdrmodel.kafka_metrics import ConsumerMetrics
from cdrmodel.supervisor import Supervisor

log = logging.getLogger(__name__)

SUBMITTED = "cdr.submitted.v1"
RATED = "cdr.rated.v1"
# Records a stage cannot process are kept in PostgreSQL (rejected_event), not on a topic.
ALL_TOPICS = (SUBMITTED, RATED)


def topic_name(base: str, namespace: str = "") -> str:
    return f"{namespace}{base}"


def make_producer(
    bootstrap: str, *, linger_ms: int = 5, request_timeout_ms: int = 15000
) -> AIOKafkaProducer:
    # acks=all: a record is acknowledged only once every in-sync replica has it.
    # request_timeout_ms also bounds how long aiokafka keeps retrying a batch before failing
    # it: until then a batch nobody waits for any more can still be delivered.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        request_timeout_ms=request_timeout_ms,
        enable_idempotence=False,
    )


def make_consumer(bootstrap: str, topic: str, *, group_id: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,  # offsets are committed only after PostgreSQL committed
        auto_offset_reset="earliest",
        session_timeout_ms=10000,
        heartbeat_interval_ms=2000,
        max_poll_interval_ms=600000,
        fetch_max_wait_ms=100,
    )


async def ensure_topics(
    bootstrap: str, names: Sequence[str], *, partitions: int, replication: int = 1
) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=partitions, replication_factor=replication)
            for name in names
            if name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


class KafkaProbe:
    """Readiness: can we fetch cluster metadata right now?"""

    def __init__(self, bootstrap: str) -> None:
        self._client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        self._started = False

    async def check(self, timeout: float = 3.0) -> bool:
        try:
            async with asyncio.timeout(timeout):
                if not self._started:
                    await self._client.bootstrap()
                    self._started = True
                await self._client.fetch_all_metadata()
                return True
        except (TimeoutError, KafkaError, OSError):
            return False

    async def close(self) -> None:
        await self._client.close()


class _Startable(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


C = TypeVar("C", bound=_Startable)


class KafkaClient(Generic[C]):
    """A producer or consumer that connects in the background, retrying until it can.

    A service starts (and answers /healthz, /readyz 503) while Kafka is still unreachable,
    as happens when a cluster and its clients come up together; work waits on `get()`.
    """

    def __init__(self, factory: Callable[[], C], *, name: str) -> None:
        self._factory = factory
        self._name = name
        self.client: C | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def begin(self, supervisor: Supervisor) -> None:
        # Supervised: a connect loop that fails with anything but a connection error (a bad
        # setting) takes the service down loudly instead of leaving it waiting forever.
        self._task = supervisor.spawn(f"connect-{self._name}", self._connect(), finite=True)

    async def _connect(self) -> None:
        # Forever, with capped backoff: a cluster and its clients often come up together.
        async for attempt in stamina.retry_context(
            on=(KafkaError, OSError), attempts=None, timeout=None, wait_initial=0.5, wait_max=5.0
        ):
            with attempt:
                client = self._factory()
                try:
                    await client.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await client.stop()
                    raise
        self.client = client
        self._ready.set()

    async def get(self) -> C:
        await self._ready.wait()
        assert self.client is not None
        return self.client

    async def get_unless(self, stopping: asyncio.Event | None) -> C | None:
        """The client once connected, or None if `stopping` is set first (a shutdown that
        came while it was still connecting: there is no batch in hand to finish)."""
        if stopping is None:
            return await self.get()
        waits = [asyncio.ensure_future(self._ready.wait()), asyncio.ensure_future(stopping.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return self.client if self._ready.is_set() and not stopping.is_set() else None

    async def connected(self) -> bool:
        return self.client is not None

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.client is not None:
            await self.client.stop()
            self.client = None


BatchHandler = Callable[[list[ConsumerRecord]], Awaitable[None]]


async def run_batches(
    consumer: AIOKafkaConsumer,
    handler: BatchHandler,
    *,
    group: str,
    max_records: int = 500,
    timeout_ms: int = 200,
    stopping: asyncio.Event | None = None,
) -> None:
    """The consumer loop every service shares.

    Consistency order: the handler persists the whole batch (and publishes what follows from
    it) and returns; only then are the batch's offsets committed. A crash before the commit
    redelivers the batch, which the handler's unique keys absorb: at-least-once in,
    exactly-once stored. A failing handler is retried on the same batch, never skipped.
    `group` labels the loop's metrics (lag, batch size and time: cdrmodel.kafka_metrics).

    Once `stopping` is set (graceful shutdown) the loop returns after the batch in hand is
    stored and its offsets committed, so the partitions' next owner starts after it.
    """
    metrics = ConsumerMetrics(group)
    while stopping is None or not stopping.is_set():
        try:
            batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:  # broker away: keep the loop (and the service) alive
            log.warning("fetch failed (%r); retrying", exc)
            await asyncio.sleep(1.0)
            continue
        records = [rec for part in batches.values() for rec in part]
        if not records:
            await metrics.sample_lag(consumer)  # idle polls too: a drained partition reads 0
            continue
        started = time.perf_counter()

        def retry_batch(exc: Exception, size: int = len(records)) -> bool:
            # Every failure that reaches here is retried on the same batch, forever: the
            # handler has already set aside what can never be stored (cdrmodel.consumer).
            # Cancellation (shutdown) reaches this hook too, and must end the loop.
            if not isinstance(exc, Exception):
                return False
            log.error("batch of %d failed; retrying", size, exc_info=exc)
            return True

        async for attempt in stamina.retry_context(
            on=retry_batch, attempts=None, timeout=None, wait_initial=0.2, wait_max=10.0
        ):
            with attempt:
                await handler(records)
        offsets = {tp: part[-1].offset + 1 for tp, part in batches.items() if part}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions away (or the broker is away): their next owner
            # re-reads from the last commit and the unique keys absorb the repeat.
            log.warning("offset commit failed (%r); the batch will be seen again", exc)
        metrics.batch(len(records), time.perf_counter() - started)
        await metrics.sample_lag(consumer)
