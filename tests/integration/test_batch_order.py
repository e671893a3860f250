"""run_batches with BatchProcessor keeps the consistency order: store commits, then publish
with no transaction open, then offsets; a failing store commits no offset and skips nothing;
a refused batch is narrowed to the record at fault."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cdrmodel.consumer import BatchProcessor, Item, Stored
from cdrmodel.db import asyncpg_dsn, make_engine
from cdrmodel.kafka import ensure_topics, make_consumer, make_producer, run_batches
from tests.conftest import Infra
from tests.helpers import unique_id, wait_for
from tests.records import consumer_record

PROBE_TABLE = "batch_order_probe"  # test-only scratch table: (stage, body) rows


@pytest.fixture
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(infra.database_url, pool_size=2)
    async with engine.begin() as conn:
        await conn.execute(
            text(f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (stage text, body text NOT NULL)")
        )
    yield engine
    await engine.dispose()


async def _insert(conn: AsyncConnection, stage: str, bodies: list[str]) -> None:
    await conn.execute(
        text(f"INSERT INTO {PROBE_TABLE} (stage, body) VALUES (:stage, :body)"),
        [{"stage": stage, "body": b} for b in bodies],
    )


async def _stored(infra: Infra, stage: str) -> list[str]:
    conn = await asyncpg.connect(asyncpg_dsn(infra.database_url))
    try:
        rows = await conn.fetch(f"SELECT body FROM {PROBE_TABLE} WHERE stage = $1", stage)
    finally:
        await conn.close()
    return sorted(r["body"] for r in rows)


@pytest.fixture
async def topic(infra: Infra) -> str:
    name = unique_id("order.")
    await ensure_topics(infra.bootstrap, [name], partitions=1)
    producer = make_producer(infra.bootstrap)
    await producer.start()
    try:
        for i in range(3):
            await producer.send(name, f"r{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()
    return name


async def test_offsets_are_committed_only_after_the_store_commits(
    infra: Infra, engine: AsyncEngine, topic: str
) -> None:
    stage = unique_id("order-")
    consumer = make_consumer(infra.bootstrap, topic, group_id=stage)
    await consumer.start()
    tp = TopicPartition(topic, 0)
    seen_at_publish: list[tuple[list[str], int | None, int]] = []

    async def store(conn: AsyncConnection, items: list[Item[str]]) -> Stored[str]:
        bodies = [i.event for i in items]
        await _insert(conn, stage, bodies)
        return Stored(results=bodies)

    async def publish(results: list[str]) -> None:
        # What the world looks like between the store's commit and the offset commit.
        pool = engine.pool
        checked_out = pool.checkedout()  # type: ignore[attr-defined]  # QueuePool
        seen_at_publish.append(
            (await _stored(infra, stage), await consumer.committed(tp), checked_out)
        )

    processor = BatchProcessor(
        engine, stage=stage, decode=lambda raw: raw.decode(), store=store, publish=publish
    )
    loop = asyncio.create_task(run_batches(consumer, processor.handle, group=stage))
    try:
        await wait_for(lambda: consumer.committed(tp), what="the offset commit")
        assert await consumer.committed(tp) == 3
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await consumer.stop()
    assert seen_at_publish[0] == (["r0", "r1", "r2"], None, 0)


async def _deadlock(conn: AsyncConnection) -> None:
    await conn.execute(text("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '40P01'; END $$"))


async def _statement_timeout(conn: AsyncConnection) -> None:
    await conn.execute(text("SET LOCAL statement_timeout = 1"))
    await conn.execute(text("SELECT pg_sleep(1)"))


async def _connection_lost(conn: AsyncConnection) -> None:
    raise ConnectionResetError("database went away")


async def _bug(conn: AsyncConnection) -> None:
    raise KeyError("a bug in the store step")


@pytest.mark.parametrize("fail", [_connection_lost, _deadlock, _statement_timeout, _bug])
async def test_a_failing_store_commits_no_offset_and_the_batch_is_retried_whole(
    infra: Infra,
    engine: AsyncEngine,
    topic: str,
    fail: Callable[[AsyncConnection], Awaitable[None]],
) -> None:
    """Failures that are not a record's fault (server trouble, a bug) never reject a record."""
    stage = unique_id("retry-")
    consumer = make_consumer(infra.bootstrap, topic, group_id=stage)
    await consumer.start()
    tp = TopicPartition(topic, 0)
    failures: list[int | None] = []

    async def store(conn: AsyncConnection, items: list[Item[str]]) -> Stored[str]:
        await _insert(conn, stage, [i.event for i in items])
        if len(failures) < 2:
            failures.append(await consumer.committed(tp))
            await fail(conn)
        return Stored()

    processor = BatchProcessor(engine, stage=stage, decode=lambda raw: raw.decode(), store=store)
    loop = asyncio.create_task(run_batches(consumer, processor.handle, group=stage))
    try:
        await wait_for(lambda: consumer.committed(tp), timeout=30, what="the offset commit")
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await consumer.stop()
    assert failures == [None, None]  # no offset committed while the store failed
    # The failed attempts rolled back; the batch was stored once, whole, by the retry.
    assert await _stored(infra, stage) == ["r0", "r1", "r2"]
    async with engine.connect() as conn:
        rejected = await conn.scalar(
            text("SELECT count(*) FROM rejected_event WHERE stage = :s"), {"s": stage}
        )
    assert rejected == 0


async def test_a_refused_batch_is_narrowed_to_the_record_at_fault(
    infra: Infra, engine: AsyncEngine
) -> None:
    stage = unique_id("narrow-")
    bodies = [f"ok{i}" for i in range(9)]
    bodies[6] = "bad"
    records = [consumer_record("narrow.topic", i, b.encode()) for i, b in enumerate(bodies)]
    published: list[str] = []

    async def store(conn: AsyncConnection, items: list[Item[str]]) -> Stored[str]:
        # A NUL byte is refused by PostgreSQL itself: a real, non-transient failure.
        await _insert(conn, stage, [i.event.replace("bad", "b\x00d") for i in items])
        return Stored(results=[i.event for i in items])

    async def publish(results: list[str]) -> None:
        published.extend(results)

    processor = BatchProcessor(
        engine, stage=stage, decode=lambda raw: raw.decode(), store=store, publish=publish
    )
    await processor.handle(records)

    good = sorted(b for b in bodies if b != "bad")
    assert await _stored(infra, stage) == good
    assert sorted(published) == good
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text('SELECT "offset", reason FROM rejected_event WHERE stage = :s'),
                {"s": stage},
            )
        ).all()
    assert [tuple(r) for r in rows] == [(6, "unstorable")]


async def test_stopping_mid_batch_finishes_the_batch_commits_it_and_returns(
    infra: Infra, topic: str
) -> None:
    # Graceful shutdown: the batch in hand is handled to the end and its offsets committed
    # (the partition's next owner starts after it), then the loop returns instead of reading
    # more. Cancelled instead, the batch would be read and handled again by that next owner.
    group = unique_id("drain-")
    consumer = make_consumer(infra.bootstrap, topic, group_id=group)
    await consumer.start()
    tp = TopicPartition(topic, 0)
    stopping = asyncio.Event()
    release = asyncio.Event()
    handled: list[list[bytes]] = []

    async def handler(records: list[Any]) -> None:
        stopping.set()  # SIGTERM arrives while this batch is being stored
        await release.wait()
        handled.append([r.value for r in records])

    try:
        loop = asyncio.create_task(
            run_batches(consumer, handler, group="stopping", stopping=stopping)
        )
        await wait_for(stopping.is_set, timeout=30, what="a batch in hand")
        assert not loop.done()
        release.set()
        await asyncio.wait_for(loop, timeout=10)  # returns by itself: nothing cancelled it
        assert handled == [[b"r0", b"r1", b"r2"]]
        assert await consumer.committed(tp) == 3
    finally:
        await consumer.stop()
