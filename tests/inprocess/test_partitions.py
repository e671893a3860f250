"""`cdr` partitioned by month of `cdr_id` (migration cdr_partitions) and the rater's
partition-ahead task (cdr_rater.partitions), on a migrated database of this module's."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_rater.app import create_app
from cdr_rater.partitions import PartitionMaker, months_from, partition_name
from cdr_rater.repository import store_cdrs
from cdr_rater.settings import RaterSettings
from cdrmodel.db import asyncpg_dsn, make_engine
from cdrmodel.events import new_cdr_id
from cdrmodel.kafka import ALL_TOPICS, ensure_topics, topic_name
from tests.conftest import Infra
from tests.helpers import uuid7_at, wait_for

TENANT = "PARTS"
# A UUIDv4 (RFC 9562's example) whose first 48 bits read as a millisecond of the year 8,600:
# no month partition will ever hold it.
UUID4 = uuid.UUID("f47ac10b-58cc-4372-a567-0e02b2c3d479")


@dataclass
class Db:
    url: str
    engine: AsyncEngine

    async def sql(self, query: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(asyncpg_dsn(self.url))
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def value(self, query: str, *args: object) -> Any:
        (row,) = await self.sql(query, *args)
        return row[0]


@pytest.fixture(scope="module")
async def db(infra: Infra, inproc_template: str) -> AsyncIterator[Db]:
    name = f"parts_{uuid.uuid4().hex[:8]}"
    await infra.admin_sql(f'CREATE DATABASE "{name}" TEMPLATE "{inproc_template}"')
    try:
        found = Db(infra.pg.url(name), make_engine(infra.pg.url(name), pool_size=2))
        await found.sql("INSERT INTO tenant (database_id) VALUES ($1)", TENANT)
        try:
            yield found
        finally:
            await found.engine.dispose()
    finally:
        await infra.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cdr_row(cdr_id: uuid.UUID) -> dict[str, Any]:
    """A CDR as the rater stores it, with the columns that have no default."""
    return {
        "cdr_id": cdr_id,
        "database_id": TENANT,
        "api_account": "ACC",
        "originating_number": "100",
        "destination_number": "16138220000",
        "duration": 60,
        "disposition": "ANSWERED",
        "received_at": datetime.now(UTC),
    }


async def insert(db: Db, *cdr_ids: uuid.UUID) -> list[dict[str, Any]]:
    async with db.engine.begin() as conn:
        return await store_cdrs(conn, rows=[cdr_row(i) for i in cdr_ids])


def month_of(cdr_id: uuid.UUID) -> str:
    """The partition a UUIDv7's month is held in: its first 48 bits are the ms (UTC)."""
    at = datetime.fromtimestamp((cdr_id.int >> 80) / 1000, UTC)
    return partition_name(at.date())


async def where(db: Db, cdr_id: uuid.UUID) -> str:
    """The partition holding the row."""
    return str(await db.value("SELECT tableoid::regclass::text FROM cdr WHERE cdr_id = $1", cdr_id))


async def partitions(db: Db) -> set[str]:
    rows = await db.sql("SELECT relid::text FROM pg_partition_tree('cdr') WHERE isleaf")
    return {r[0] for r in rows}


def counted(outcome: str) -> float:
    labels = {"outcome": outcome}
    return REGISTRY.get_sample_value("cdrflow_rater_cdr_partition_months_total", labels) or 0.0


def maker(db: Db, *, lock_timeout: float = 2.0) -> PartitionMaker:
    return PartitionMaker(db.engine, ahead=3, lock_timeout=lock_timeout, interval=60, retry=60)


# -- the table ------------------------------------------------------------------------------


async def test_cdr_is_range_partitioned_on_cdr_id_with_this_month_and_three_ahead(db: Db) -> None:
    key = await db.value("SELECT pg_get_partkeydef('cdr'::regclass)")
    assert key == "RANGE (cdr_id)"
    months = months_from(datetime.now(UTC), 4)
    assert {"cdr_default", *map(partition_name, months)} <= await partitions(db)
    bounds = await db.value(
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = $1",
        partition_name(months[0]),
    )
    # The UUIDv7 of each month's first millisecond (UTC), every other bit zero.
    low, high = (
        uuid.UUID(int=int(datetime(m.year, m.month, 1, tzinfo=UTC).timestamp() * 1000) << 80)
        for m in months[:2]
    )
    assert bounds == f"FOR VALUES FROM ('{low}') TO ('{high}')"


async def test_a_uuid7_of_now_lands_in_this_months_partition_a_uuid4_in_the_default(
    db: Db,
) -> None:
    now_id = new_cdr_id()  # ingest's own UUIDv7
    await insert(db, now_id, UUID4)
    assert month_of(now_id) == partition_name(datetime.now(UTC).date())
    assert await where(db, now_id) == month_of(now_id)
    assert await where(db, UUID4) == "cdr_default"


async def test_the_raters_insert_still_stores_a_replayed_cdr_once(db: Db) -> None:
    cdr_id = new_cdr_id()
    (first,) = await insert(db, cdr_id)
    (again,) = await insert(db, cdr_id)  # ON CONFLICT (cdr_id) DO NOTHING, then read back
    assert again["feed_id"] == first["feed_id"]
    assert await db.value("SELECT count(*) FROM cdr WHERE cdr_id = $1", cdr_id) == 1


async def test_revisions_reference_cdr_and_go_with_it(db: Db) -> None:
    ids = [new_cdr_id(), uuid7_at(datetime(2026, 1, 15, tzinfo=UTC))]  # a month and the default
    await insert(db, *ids)
    for cdr_id in ids:
        await db.sql(
            "INSERT INTO cdr_revision (cdr_id, database_id, revision, reason, old, new)"
            " VALUES ($1, $2, 2, 'rerate', '{}', '{}')",
            cdr_id,
            TENANT,
        )
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.sql(
            "INSERT INTO cdr_revision (cdr_id, database_id, revision, reason, old, new)"
            " VALUES ($1, $2, 2, 'rerate', '{}', '{}')",
            uuid.uuid4(),
            TENANT,
        )
    await db.sql("DELETE FROM cdr WHERE cdr_id = ANY($1::uuid[])", ids)
    assert await db.value("SELECT count(*) FROM cdr_revision WHERE cdr_id = ANY($1)", ids) == 0


# -- the partition-ahead task ---------------------------------------------------------------


async def test_the_task_creates_the_missing_months_once(db: Db) -> None:
    months = ["cdr_y2031m05", "cdr_y2031m06", "cdr_y2031m07", "cdr_y2031m08"]
    created = counted("created")
    first = await maker(db).round(now=datetime(2031, 5, 20, 23, 59, tzinfo=UTC))
    assert first == dict.fromkeys(months, "created")
    assert counted("created") == created + 4
    assert set(months) <= await partitions(db)
    again = await maker(db).round(now=datetime(2031, 5, 1, tzinfo=UTC))
    assert again == dict.fromkeys(months, "exists")
    # A new month's partition takes the rows of its range, with every index of cdr.
    cdr_id = uuid7_at(datetime(2031, 7, 4, 12, tzinfo=UTC))
    await insert(db, cdr_id)
    assert await where(db, cdr_id) == "cdr_y2031m07"
    indexes = await db.value("SELECT count(*) FROM pg_indexes WHERE tablename = 'cdr_y2031m07'")
    assert indexes == await db.value("SELECT count(*) FROM pg_indexes WHERE tablename = 'cdr'")


async def test_the_task_keeps_statistics_of_the_whole_table(db: Db) -> None:
    # Autovacuum never analyzes a partitioned table itself: the task does, after each round.
    stats = "SELECT count(*) FROM pg_stats WHERE tablename = 'cdr' AND inherited"
    await db.sql("DELETE FROM pg_statistic WHERE starelid = 'cdr'::regclass")
    assert await db.value(stats) == 0
    await insert(db, new_cdr_id())
    await maker(db).refresh_statistics()
    assert await db.value(stats) > 0


async def test_a_month_whose_rows_are_already_in_the_default_is_skipped_and_they_stay(
    db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    early = uuid7_at(datetime(2032, 3, 9, tzinfo=UTC))  # before its month's partition exists
    await insert(db, early)
    await db.sql(
        "INSERT INTO cdr_revision (cdr_id, database_id, revision, reason, old, new)"
        " VALUES ($1, $2, 2, 'rerate', '{}', '{}')",
        early,
        TENANT,
    )
    assert await where(db, early) == "cdr_default"
    skipped = counted("default_has_rows")
    with caplog.at_level(logging.WARNING, logger="cdr_rater.partitions"):
        outcomes = await maker(db).round(now=datetime(2032, 2, 1, tzinfo=UTC))
    assert outcomes == {
        "cdr_y2032m02": "created",
        "cdr_y2032m03": "default_has_rows",
        "cdr_y2032m04": "created",
        "cdr_y2032m05": "created",
    }
    assert counted("default_has_rows") == skipped + 1
    assert any("cdr_y2032m03" in r.getMessage() for r in caplog.records)
    assert "cdr_y2032m03" not in await partitions(db)
    # Nothing was deleted: the row, and its history, are where they were.
    assert await where(db, early) == "cdr_default"
    assert await db.value("SELECT count(*) FROM cdr_revision WHERE cdr_id = $1", early) == 1
    # The month's later rows go on landing in the default, once each.
    later = uuid7_at(datetime(2032, 3, 20, tzinfo=UTC))
    await insert(db, later)
    assert await where(db, later) == "cdr_default"


async def _hold_the_default(db: Db) -> asyncpg.Connection:
    """A connection in a transaction that has read cdr_default (a long export, say): its
    ACCESS SHARE lock is held until it ends."""
    conn = await asyncpg.connect(asyncpg_dsn(db.url))
    await conn.execute("BEGIN")
    await conn.fetchval("SELECT count(*) FROM cdr_default")
    return conn


async def test_a_month_whose_locks_are_not_granted_in_time_is_left_for_the_next_round(
    db: Db,
) -> None:
    reader = await _hold_the_default(db)
    timeouts = counted("lock_timeout")
    try:
        outcomes = await maker(db, lock_timeout=0.2).round(now=datetime(2033, 1, 1, tzinfo=UTC))
    finally:
        await reader.close()
    # The round stops at the first month: the next ones would wait for the same lock.
    assert outcomes == {"cdr_y2033m01": "lock_timeout"}
    assert counted("lock_timeout") == timeouts + 1
    assert "cdr_y2033m01" not in await partitions(db)
    outcomes = await maker(db, lock_timeout=0.2).round(now=datetime(2033, 1, 1, tzinfo=UTC))
    assert set(outcomes.values()) == {"created"}


async def test_waiting_for_its_locks_the_task_does_not_hold_up_the_raters_insert(db: Db) -> None:
    reader = await _hold_the_default(db)
    try:
        attaching = asyncio.create_task(
            maker(db, lock_timeout=30).round(now=datetime(2034, 1, 1, tzinfo=UTC))
        )

        async def waiting() -> bool:
            return bool(
                await db.value(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted"
                    " AND relation = 'cdr_default'::regclass AND mode = 'AccessExclusiveLock'"
                )
            )

        await wait_for(waiting, timeout=10, what="the attach waiting for cdr_default")
        # ATTACH holds SHARE UPDATE EXCLUSIVE on cdr, which an INSERT does not conflict with.
        cdr_id = new_cdr_id()
        async with asyncio.timeout(10):
            await insert(db, cdr_id)
        assert not attaching.done()
    finally:
        await reader.close()
    assert set((await attaching).values()) == {"created"}
    assert await where(db, cdr_id) == month_of(cdr_id)


async def test_the_rater_runs_the_task(infra: Infra, db: Db) -> None:
    namespace = f"parts{uuid.uuid4().hex[:6]}."
    await ensure_topics(
        infra.bootstrap, [topic_name(t, namespace) for t in ALL_TOPICS], partitions=1
    )
    settings = RaterSettings(
        **{**infra.app_settings(namespace), "database_url": db.url},
        rater_group=f"{namespace}rater",
        partitions_ahead=7,
    )
    seventh = partition_name(months_from(datetime.now(UTC), 8)[-1])

    async def made() -> bool:
        return seventh in await partitions(db)

    async with LifespanManager(create_app(settings), startup_timeout=60, shutdown_timeout=60):
        await wait_for(made, timeout=30, what=f"the rater to create {seventh}")
