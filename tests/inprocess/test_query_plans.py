"""The hot read statements never scan the whole `cdr` table (docs/architecture.md, "Storage
for size"): on a table of several tenants, one big, each statement an API account's read
runs (the feed page, /v1/cdrs pages and its CSV export, getCDR and getResellerCDR, every
report, the recording lookup) is planned on an index.

The statements are the code's own: those a repository function executes are recorded as it
runs them (SQLAlchemy's before_cursor_execute, on a database of this module's), the others
come from the functions that build them (`search_repository.page_sql` / `export_sql`). Each
is then explained twice: with its parameters (the custom plan PostgreSQL makes for the first
executions of a statement) and as a generic plan (what a statement cached by asyncpg may get
after five), and a `Seq Scan` on `cdr` anywhere in either plan fails the test.

`cdr` is partitioned by month of `cdr_id` (UUIDv7, the arrival time): the rows here get ids
of their `received_at`, so the calls of each tenant fill the months January to April 2026,
and one in 20 a UUIDv4, which lands in `cdr_default`. A plan reads the partitions, so a
`Seq Scan` of any partition fails, except of a tiny one (here: the empty months the migration
made ahead; tests/plans.py says why).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cdr_notifier import compat, compat_repository, recording_repository, reports_repository
from cdr_notifier.feed_repository import feed_sql
from cdr_notifier.search_repository import (
    EXPORT_PLANNER,
    CdrSearch,
    Position,
    export_sql,
    page_sql,
)
from cdrmodel.db import asyncpg_dsn, make_engine
from tests.conftest import Infra
from tests.helpers import uuid7_at
from tests.plans import plan_nodes, reads_cdr, tiny_partitions

BIG = "PLANBIG"
SMALL = [f"PLANSMALL{n}" for n in range(6)]
DAYS = 100
BIG_PER_DAY = 1000  # 100,000 rows
SMALL_ROWS = 15_000  # each: 90,000 rows
COPY_BATCH = 50_000  # rows per COPY transaction: far under the 2^20 feed ids of one xid
FIRST_DAY = datetime(2026, 1, 1, tzinfo=UTC)
MONTHS = [date(2026, month, 1) for month in range(1, 5)]  # the partitions the rows arrive in
WEEK = (FIRST_DAY + timedelta(days=40), FIRST_DAY + timedelta(days=47))
ONE_DAY = (FIRST_DAY + timedelta(days=60), FIRST_DAY + timedelta(days=61))

COLUMNS = (
    "cdr_id",
    "database_id",
    "api_account",
    "external_id",
    "originating_number",
    "destination_number",
    "start_time",
    "start_time_raw",
    "duration",
    "disposition",
    "received_at",
    "rated",
    "unrated_reason",
    "direction",
    "extension",
    "package_id",
    "account",
    "client",
    "normalized_number",
    "call_type",
    "call_billing",
    "rate",
    "total",
    "currency",
    "recording_url",
)
DISPOSITIONS = ["ANSWERED"] * 6 + ["NO ANSWER", "BUSY", "FAILED", "CONGESTION"]
CALL_TYPES = ["S"] * 5 + ["I", "M", "L", "IB", "2T"]


# A UUIDv4's first 48 bits read as a millisecond of a random year up to 10889: about 1 in
# 10^5 lands in a given month (and so in its partition, if there is one), which among the
# thousands here would give the empty months ahead a row or two, now and then.
_THIS_CENTURY_MS = (946_684_800_000, 4_102_444_800_000)  # 2000-01-01 .. 2100-01-01


def uuid4_outside_months(rand: random.Random) -> uuid.UUID:
    """A UUIDv4 whose first 48 bits are no millisecond of this century: one for the default
    partition, whatever month partitions exist."""
    while True:
        bits = rand.getrandbits(128) & ~(0xF << 76) & ~(0b11 << 62) | (0x4 << 76) | (0b10 << 62)
        if not _THIS_CENTURY_MS[0] <= bits >> 80 < _THIS_CENTURY_MS[1]:
            return uuid.UUID(int=bits)


def _rows(database_id: str, count: int, seed: int) -> Iterator[tuple[Any, ...]]:
    """`count` calls spread evenly over DAYS days: 100 accounts, 20 reseller clients, 200
    extensions, 1 in 200 unrated (some without a start time), 1 in 10 with a recording; ids
    UUIDv7 of their arrival, 1 in 20 a UUIDv4 (as the tests insert), which the default
    partition holds."""
    rand = random.Random(seed)
    step = timedelta(days=DAYS) / count
    for n in range(count):
        start = FIRST_DAY + n * step + timedelta(seconds=rand.random())
        ext = f"{n % 200 + 100}"
        unrated = n % 200 == 7
        untimed = n % 4000 == 7
        inbound = n % 10 == 3
        number = f"1{rand.randrange(200, 999)}555{n % 10000:04d}"
        disposition = rand.choice(DISPOSITIONS)
        received = start + timedelta(seconds=2)
        yield (
            uuid4_outside_months(rand) if n % 20 == 11 else uuid7_at(received, rand),
            database_id,
            "ACC",
            f"e{n}",
            number if inbound else ext,
            ext if inbound else number,
            None if untimed else start,
            "not a time" if untimed else None,
            rand.randrange(0, 600) if disposition == "ANSWERED" else 0,
            disposition,
            received,
            not unrated,
            ("invalid_start_time" if untimed else rand.choice(["no_rate", "no_package"]))
            if unrated
            else None,
            "inbound" if inbound else "outbound",
            ext,
            f"pkg{n % 5}",
            f"acct{n % 100}",
            f"client{n % 20}",
            number,
            None if unrated else ("IB" if inbound else rand.choice(CALL_TYPES)),
            None if unrated else "billed",
            None if unrated else Decimal("0.015"),
            None if unrated else Decimal("0.03"),
            "USD",
            f"https://rec.example.net/{n}.wav" if n % 10 == 0 else None,
        )


async def _load(url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for month in MONTHS:
            assert await conn.fetchval("SELECT cdr_create_month_partition($1)", month) == "created"
        tenants = [BIG, *SMALL]
        await conn.executemany(
            "INSERT INTO tenant (database_id, name) VALUES ($1, $1)", [(t,) for t in tenants]
        )
        sources = [(BIG, DAYS * BIG_PER_DAY)] + [(t, SMALL_ROWS) for t in SMALL]
        for seed, (database_id, count) in enumerate(sources):
            rows = _rows(database_id, count, seed)
            while batch := [row for _, row in zip(range(COPY_BATCH), rows, strict=False)]:
                # One COPY is one transaction: feed ids of one transaction must stay < 2^20.
                await conn.copy_records_to_table("cdr", records=batch, columns=COLUMNS)
        await conn.execute("ANALYZE cdr")
    finally:
        await conn.close()


@dataclass
class Loaded:
    engine: AsyncEngine
    url: str
    empty: frozenset[str]  # the partitions of cdr ANALYZE found tiny (here: empty)
    filled: frozenset[str]  # the others


@pytest.fixture(scope="module")
async def loaded(infra: Infra, inproc_template: str) -> AsyncIterator[Loaded]:
    """A database of this module's, copied from the migrated template and loaded."""
    name = f"plans_{uuid.uuid4().hex[:8]}"
    await infra.admin_sql(f'CREATE DATABASE "{name}" TEMPLATE "{inproc_template}"')
    try:
        url = infra.pg.url(name)
        await _load(url)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            empty = await tiny_partitions(conn)
            every = frozenset(
                r[0] for r in await conn.fetch("SELECT relid::text FROM pg_partition_tree('cdr')")
            )
        finally:
            await conn.close()
        filled = every - empty - {"cdr"}
        assert filled == {"cdr_default", *(f"cdr_y2026m{m.month:02d}" for m in MONTHS)}
        engine = make_engine(url, pool_size=2)
        try:
            yield Loaded(engine, url, empty, filled)
        finally:
            await engine.dispose()
    finally:
        await infra.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


Statement = tuple[str, tuple[Any, ...]]


@contextmanager
def recorded(engine: AsyncEngine) -> Iterator[list[Statement]]:
    """The statements (and parameters) the engine sends while the block runs."""
    seen: list[Statement] = []

    def listen(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        seen.append((sql, tuple(params or ())))

    event.listen(engine.sync_engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", listen)


def seq_scans_of_cdr(explained: str, empty: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The plan nodes (any depth: subplans, CTEs, union arms) that read `cdr` or one of its
    partitions whole, but for the partitions `empty`."""
    (top,) = json.loads(explained)
    return [
        n
        for n in plan_nodes(top["Plan"])
        if n["Node Type"] == "Seq Scan" and reads_cdr(n) and n["Relation Name"] not in empty
    ]


def _scans_of_cdr(explained: str) -> list[str]:
    (top,) = json.loads(explained)
    return [
        f"{n['Node Type']} {n.get('Relation Name')} {n.get('Index Name', '')}".strip()
        for n in plan_nodes(top["Plan"])
        if reads_cdr(n)
    ]


GENERIC_PLAN_FUNCTION = """
CREATE FUNCTION pg_temp.generic_plan(statement text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE plan text;
BEGIN
  EXECUTE 'EXPLAIN (FORMAT JSON, GENERIC_PLAN) ' || statement INTO plan;
  RETURN plan;
END
$f$
"""


async def assert_indexed(
    loaded: Loaded, statements: list[Statement], settings: dict[str, str] | None = None
) -> None:
    """Every statement, custom and generic plan, reads `cdr` only through an index (with
    the planner `settings` its code runs it with)."""
    assert statements, "the code ran no statement"
    conn = await asyncpg.connect(asyncpg_dsn(loaded.url), server_settings=settings or {})
    try:
        # GENERIC_PLAN takes the statement without values, which a protocol-level prepare
        # would refuse (it counts the $n): the text goes through PL/pgSQL's EXECUTE instead.
        await conn.execute(GENERIC_PLAN_FUNCTION)
        for sql, params in statements:
            custom = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *params)
            generic = await conn.fetchval("SELECT pg_temp.generic_plan($1)", sql)
            for kind, explained in (("custom", custom), ("generic", generic)):
                assert _scans_of_cdr(explained), f"{kind} plan reads no cdr: {sql}"
                bad = seq_scans_of_cdr(explained, loaded.empty)
                assert not bad, f"{kind} plan scans cdr whole:\n{sql}\n{params}\n{explained}"
    finally:
        await conn.close()


Run = Callable[[AsyncConnection], Awaitable[Any]]


async def run_recorded(loaded: Loaded, run: Run) -> list[Statement]:
    """Runs a repository function on the engine; what it sent."""
    with recorded(loaded.engine) as seen:
        async with loaded.engine.connect() as conn:
            await run(conn)
    return seen


def _export_statements(search: CdrSearch, after: Position | None) -> list[Statement]:
    return [(sql, tuple(params)) for sql, params in export_sql(search, after=after, currency="USD")]


def _page_statements(search: CdrSearch, after: Position | None, limit: int) -> list[Statement]:
    timed = page_sql(search, timed=True, after=after, limit=limit + 1)
    untimed = page_sql(search, timed=False, after=None, limit=limit + 1)
    return [(timed[0], tuple(timed[1])), (untimed[0], tuple(untimed[1]))]


# --- the cases -----------------------------------------------------------------------------


async def _feed_ids(loaded: Loaded) -> list[int]:
    conn = await asyncpg.connect(asyncpg_dsn(loaded.url))
    try:
        rows = await conn.fetch(
            "SELECT feed_id FROM cdr WHERE database_id = $1 ORDER BY feed_id", BIG
        )
    finally:
        await conn.close()
    return [r["feed_id"] for r in rows]


@pytest.mark.parametrize("where", ["start", "middle", "end"])
async def test_the_feed_page_is_read_on_its_index(loaded: Loaded, where: str) -> None:
    ids = await _feed_ids(loaded)
    from_id = {"start": 0, "middle": ids[len(ids) // 2], "end": ids[-1] + 1}[where]
    sql, params = feed_sql(database_id=BIG, from_id=from_id, limit=1000, currency="USD")
    await assert_indexed(loaded, [(sql, tuple(params))])


SEARCHES = {
    "no_filter": CdrSearch(database_id=BIG),
    "a_week": CdrSearch(database_id=BIG, start_from=WEEK[0], start_to=WEEK[1]),
    "a_week_filtered": CdrSearch(
        database_id=BIG,
        start_from=WEEK[0],
        start_to=WEEK[1],
        rated=True,
        call_types=("S", "I"),
        dispositions=("ANSWERED",),
        billing_groups=("pkg1",),
        min_seconds=10,
        max_seconds=300,
        caller="1",
        destination="1",
    ),
    "unrated": CdrSearch(database_id=BIG, rated=False),
    "caller_prefix": CdrSearch(database_id=BIG, caller="12"),
    "small_tenant": CdrSearch(database_id=SMALL[0], dispositions=("BUSY",)),
}


@pytest.mark.parametrize("name", list(SEARCHES))
async def test_a_v1_cdrs_page_is_read_on_the_start_time_index(loaded: Loaded, name: str) -> None:
    search = SEARCHES[name]
    deep = Position(FIRST_DAY + timedelta(days=70), uuid.uuid4())
    for after in (None, deep):
        await assert_indexed(loaded, _page_statements(search, after, 100))


# Every search, "caller_prefix" too: a whole-tenant export filtered by caller alone plans a
# parallel Seq Scan + Sort on this table but for the export's planner settings.
@pytest.mark.parametrize("name", list(SEARCHES))
async def test_the_csv_export_is_read_on_the_start_time_index(loaded: Loaded, name: str) -> None:
    search = SEARCHES[name]
    await assert_indexed(loaded, _export_statements(search, None), EXPORT_PLANNER)
    deep = Position(FIRST_DAY + timedelta(days=95), uuid.uuid4())
    await assert_indexed(loaded, _export_statements(search, deep), EXPORT_PLANNER)


def _compat(day: tuple[datetime, datetime], **params: str) -> compat.CdrQuery:
    start = day[0].date().isoformat()
    end = (day[1] - timedelta(days=1)).date().isoformat()
    base = {"date_from": start, "date_to": end, "timezone": "2", **params}
    return compat.cdr_query(base, reseller="client" in params)


COMPAT_QUERIES = {
    "getCDR_account_day": _compat(ONE_DAY, account="acct7"),
    "getCDR_client_day": _compat(ONE_DAY, client="client3"),
    "getCDR_tenant_day": _compat(ONE_DAY),
    "getCDR_tenant_day_filtered": _compat(
        ONE_DAY, answered="1", calltype="type:S", callbilling="billed"
    ),
    "getCDR_account_week_incoming": _compat(WEEK, account="acct7", calltype="incoming"),
    "getResellerCDR_week": _compat(WEEK, client="client3", busy="1"),
}


@pytest.mark.parametrize("name", list(COMPAT_QUERIES))
async def test_get_cdr_statements_are_read_on_an_index(loaded: Loaded, name: str) -> None:
    query = COMPAT_QUERIES[name]
    seen = await run_recorded(
        loaded, lambda conn: compat_repository.find_cdrs(conn, database_id=BIG, query=query)
    )
    await assert_indexed(loaded, seen)


async def _reports(conn: AsyncConnection, name: str) -> None:
    span = {"database_id": BIG, "start": WEEK[0], "end": WEEK[1]}
    zone = {"timezone": "America/New_York"}
    if name == "unrated":
        await reports_repository.unrated_reasons(conn, **span)
        await reports_repository.unrated_page(conn, **span, limit=100)
        after = (WEEK[0] + timedelta(days=3), uuid.uuid4())
        await reports_repository.unrated_page(
            conn, **span, reason="no_rate", after=after, limit=100
        )
    elif name == "agents":
        for sort in reports_repository.AGENT_SORTS:
            await reports_repository.agents(conn, **span, sort=sort)
    elif name == "answer-ratio":
        for by in reports_repository.RATIO_KEYS:
            for direction in (None, "inbound"):
                rows = reports_repository.answer_ratio(
                    conn, **span, **zone, by=by, direction=direction
                )
                async for _ in rows:
                    pass
    else:
        for by_weekday in (False, True):
            args = {**span, **zone, "direction": "outbound", "by_weekday": by_weekday}
            await reports_repository.hour_counts(conn, **args)
            await reports_repository.concurrency(conn, **args)


@pytest.mark.parametrize("name", ["unrated", "agents", "answer-ratio", "peak-hours"])
async def test_report_statements_are_read_on_an_index(loaded: Loaded, name: str) -> None:
    seen = await run_recorded(loaded, lambda conn: _reports(conn, name))
    await assert_indexed(loaded, seen)


async def test_the_recording_lookup_is_one_probe(loaded: Loaded) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(loaded.url))
    try:
        cdr_id = await conn.fetchval(
            "SELECT cdr_id FROM cdr WHERE database_id = $1 AND recording_url IS NOT NULL LIMIT 1",
            BIG,
        )
    finally:
        await conn.close()

    async def lookups(db: AsyncConnection) -> None:
        found = await recording_repository.recording_url(db, database_id=BIG, cdr_id=cdr_id)
        assert found[0] and found[1]  # the statement ran on a row that is there
        await recording_repository.recording_url(db, database_id=SMALL[0], cdr_id=cdr_id)

    await assert_indexed(loaded, await run_recorded(loaded, lookups))


async def test_the_plan_walk_finds_a_seq_scan_where_there_is_one(loaded: Loaded) -> None:
    """The check itself: a statement that must read the whole table is caught, however deep
    the scan sits in its plan."""
    sql = "SELECT count(*) FROM (SELECT 1 FROM cdr WHERE duration + 0 = $1 LIMIT 5) s"
    conn = await asyncpg.connect(asyncpg_dsn(loaded.url))
    try:
        explained = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, 1)
    finally:
        await conn.close()
    # One Seq Scan of each partition that holds rows, wherever it sits in the plan.
    found = seq_scans_of_cdr(explained, loaded.empty)
    assert sorted(n["Relation Name"] for n in found) == sorted(loaded.filled)
