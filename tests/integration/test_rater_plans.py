"""The rater's cached plans and its one-statement write, on the real database and broker:
a replayed batch stores one row per cdr_id and publishes the stored versions again, and a
deck change is seen by every replica on its next batch (each replica has its own cache)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_rater.consumer import RatingHandler
from cdr_rater.plans import RELOADS, PlanCache, TenantConfig
from cdrmodel.kafka import RATED, SUBMITTED, topic_name
from tests.conftest import Infra
from tests.helpers import unique_id
from tests.records import consumer_record, submitted

NAMESPACE = "plans."


@pytest.fixture(scope="module", autouse=True)
def plan_topics(infra: Infra) -> Iterator[None]:
    infra.create_topics(NAMESPACE)
    yield


async def _priced_tenant(db: asyncpg.Connection, rate: str) -> str:
    """A tenant whose account ACC defaults to package P, whose deck prices prefix 1 at `rate`."""
    database_id = unique_id("PL")
    await db.execute("INSERT INTO tenant (database_id, name) VALUES ($1, 'plans')", database_id)
    await db.execute("INSERT INTO package (database_id, package_id) VALUES ($1, 'P')", database_id)
    await db.execute(
        "INSERT INTO api_account (database_id, api_account_id, password_hash, default_package)"
        " VALUES ($1, 'ACC', 'x', 'P')",
        database_id,
    )
    await _set_rate(db, database_id, rate)
    return database_id


async def _set_rate(db: asyncpg.Connection, database_id: str, rate: str) -> None:
    """Replaces the deck and bumps config_version in one transaction, as the admin API does."""
    async with db.transaction():
        await db.execute("DELETE FROM rate_line WHERE database_id = $1", database_id)
        await db.execute(
            "INSERT INTO rate_line (database_id, deck_kind, deck_id, prefix, rate)"
            " VALUES ($1, 'package', 'P', '1', $2)",
            database_id,
            Decimal(rate),
        )
        version = await db.fetchval(
            "UPDATE tenant SET config_version = config_version + 1 WHERE database_id = $1"
            " RETURNING config_version",
            database_id,
        )
        await db.execute(
            "UPDATE package SET deck_version = $2 WHERE database_id = $1 AND package_id = 'P'",
            database_id,
            version,
        )


def _records(database_id: str, n: int, first_offset: int) -> list[ConsumerRecord]:
    events = [submitted(database_id, "ACC", external_id=f"e{first_offset + i}") for i in range(n)]
    return [
        consumer_record(SUBMITTED, first_offset + i, e.model_dump_json().encode())
        for i, e in enumerate(events)
    ]


async def _totals(db: asyncpg.Connection, database_id: str) -> dict[str, Decimal]:
    rows = await db.fetch("SELECT external_id, total FROM cdr WHERE database_id = $1", database_id)
    return {r["external_id"]: r["total"] for r in rows}


async def test_a_replayed_batch_stores_each_record_once_and_republishes_the_stored_rows(
    engine: AsyncEngine, db: asyncpg.Connection, producer: AIOKafkaProducer
) -> None:
    database_id = await _priced_tenant(db, "0.06")
    handler = RatingHandler(engine, producer, topic_name(RATED, NAMESPACE), stage=unique_id("r"))
    records = _records(database_id, 50, 0)
    await handler.handle(records)
    first = await db.fetch(
        "SELECT cdr_id, feed_id, total FROM cdr WHERE database_id = $1 ORDER BY cdr_id",
        database_id,
    )
    # The replay, with the price changed meanwhile: nothing is stored again or re-priced.
    await _set_rate(db, database_id, "0.60")
    published: list[list[tuple[object, ...]]] = []

    async def capture(stored: list[tuple[dict[str, object], str, object]]) -> None:
        published.append([(r["cdr_id"], r["feed_id"], r["total"]) for r, *_ in stored])

    handler._batches._publish = capture  # the stored versions a replay publishes again
    await handler.handle(records)
    again = await db.fetch(
        "SELECT cdr_id, feed_id, total FROM cdr WHERE database_id = $1 ORDER BY cdr_id",
        database_id,
    )
    assert len(first) == 50
    assert again == first
    assert {r["total"] for r in first} == {Decimal("0.06000000")}
    assert sorted(published[0]) == [tuple(r) for r in first]


async def test_every_replica_prices_its_next_batch_with_a_changed_deck(
    engine: AsyncEngine, db: asyncpg.Connection, producer: AIOKafkaProducer
) -> None:
    database_id = await _priced_tenant(db, "0.06")
    topic = topic_name(RATED, NAMESPACE)
    caches = [PlanCache(), PlanCache()]
    replicas = [RatingHandler(engine, producer, topic, stage="r", plans=c) for c in caches]
    await replicas[0].handle(_records(database_id, 3, 0))
    await replicas[1].handle(_records(database_id, 3, 10))
    assert set((await _totals(db, database_id)).values()) == {Decimal("0.06000000")}
    held = [c._tenants[database_id] for c in caches]

    await _set_rate(db, database_id, "0.12")
    before = set(await _totals(db, database_id))
    await replicas[0].handle(_records(database_id, 3, 20))
    await replicas[1].handle(_records(database_id, 3, 30))

    after = await _totals(db, database_id)
    assert {after[k] for k in set(after) - before} == {Decimal("0.12000000")}
    for cache, old in zip(caches, held, strict=True):
        assert cache._tenants[database_id].version == old.version + 1


async def test_an_unchanged_tenant_is_not_reloaded_and_a_deleted_one_is_dropped(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    database_id = await _priced_tenant(db, "0.06")
    cache = PlanCache()
    async with engine.connect() as conn:
        first = (await cache.configs(conn, [database_id, "NO_SUCH_TENANT"]))[database_id]
        assert (await cache.configs(conn, [database_id]))[database_id] is first
    assert first.default_packages == {"ACC": "P"}
    assert first.plan.packages["P"].deck.match("16135550000", datetime.now(UTC)) is not None
    await db.execute("DELETE FROM tenant WHERE database_id = $1", database_id)
    async with engine.connect() as conn:
        assert await cache.configs(conn, [database_id]) == {}
    assert len(cache) == 0


async def test_concurrent_callers_share_one_load_of_a_tenant(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    # The consumer, re-rating and quotes share one cache: callers that arrive while a
    # tenant loads wait for that load instead of holding a second copy of its deck.
    database_id = await _priced_tenant(db, "0.06")
    cache = PlanCache()
    before = RELOADS._value.get()

    async def one() -> object:
        async with engine.connect() as conn:
            return (await cache.configs(conn, [database_id]))[database_id]

    configs = await asyncio.gather(*(one() for _ in range(5)))
    assert RELOADS._value.get() - before == 1
    assert all(c is configs[0] for c in configs)


async def test_a_reload_reads_again_only_the_decks_that_changed(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    # A second package Q with its own deck; an extension added, then P's deck replaced.
    database_id = await _priced_tenant(db, "0.06")
    await db.execute("INSERT INTO package (database_id, package_id) VALUES ($1, 'Q')", database_id)
    await db.execute(
        "INSERT INTO rate_line (database_id, deck_kind, deck_id, prefix, rate)"
        " VALUES ($1, 'package', 'Q', '1', 0.5)",
        database_id,
    )
    cache = PlanCache()

    async def config() -> TenantConfig:
        async with engine.connect() as conn:
            return (await cache.configs(conn, [database_id]))[database_id]

    first = await config()
    decks = {name: first.plan.packages[name].deck for name in ("P", "Q")}
    async with db.transaction():
        await db.execute(
            "INSERT INTO extension (database_id, extension, package_id) VALUES ($1, '100', 'Q')",
            database_id,
        )
        await db.execute(
            "UPDATE tenant SET config_version = config_version + 1 WHERE database_id = $1",
            database_id,
        )
    second = await config()
    assert second.version == first.version + 1
    assert "100" in second.plan.extensions
    assert {n: second.plan.packages[n].deck for n in decks} == decks  # the same objects

    await _set_rate(db, database_id, "0.12")
    third = await config()
    assert third.plan.packages["Q"].deck is decks["Q"]
    assert third.plan.packages["P"].deck is not decks["P"]
    now = datetime.now(UTC)
    line = third.plan.packages["P"].deck.match("16135550000", now)
    assert line is not None and line.rate == Decimal("0.12")
    line = third.plan.packages["Q"].deck.match("16135550000", now)
    assert line is not None and line.rate == Decimal("0.5")
