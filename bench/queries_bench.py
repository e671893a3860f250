"""The queries rows of `make bench`: the notifier's reads over a `cdr` table of 10M rows.

What it does: loads `--queries-rows` CDRs (10,000,000 by default) into the bench's own
PostgreSQL by binary COPY (asyncpg `copy_records_to_table`), five tenants, one of them
holding 60% of the rows, start times spread over 90 days in call order; records the load
rate, the index build time and the size of the table and of each index; then starts one
notifier (`CDR_ROLE=api`) and times, one request at a time, a `/billing/feed` page of 1,000
records at random positions and a `getCDR` day of one account (random accounts and days),
each beside the same SQL statement run directly with asyncpg at the same positions and
beside the 50 ms p99 target; and a `/v1/cdrs?format=csv` export of 1,000,000 rows of the big
tenant beside a raw `COPY (SELECT ...) TO STDOUT` of the same statement through asyncpg and
beside the 100,000 rows/s target, with the notifier's resident memory during it (VmRSS
sampled, VmHWM reset just before) beside the 200 MB target.

How the rows are loaded, and why so. The secondary indexes of `cdr` are dropped before the
COPY and built again after it (their definitions read back from the catalog), each build
timed; the primary key stays. `cdr` is partitioned by month of `cdr_id` (migration
cdr_partitions): the indexes are the parent's, and dropping or creating one there does so on
every partition; the rows, with uuid7 ids of now, all land in this month's partition. Sizes
are the partitions' summed (`pg_partition_tree`): the parent itself stores nothing. A sorted build writes each index once, compact, and on two
cores it is several times faster than keeping five indexes up to date row by row; the
primary key stays because `cdr_revision` references it and because cdr ids are uuid7 (in
load order), so its entries are appended at the right edge anyway. Feed ids are given, not
left to `cdr_next_feed_id()`: each COPY is one transaction of at most 500,000 rows, and
its rows take `(that transaction's xid << 20) | n`, which is what the function would give
them (the 2^20 rows-per-transaction bound of the scheme holds). Then `VACUUM (ANALYZE)`:
statistics for the planner, and hint bits and the visibility map set once here instead of
by the first measured reads and by an autovacuum that would run during them.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import uuid_utils
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from cdr_notifier import compat, search_repository
from cdr_notifier.compat_repository import find_cdrs
from cdr_notifier.feed_repository import feed_sql
from cdr_notifier.search_repository import CdrSearch
from cdrflow_dev.processes import ServiceProcess
from cdrmodel.auth import hash_password

BIG = "QBIG"
# (database_id, share of the rows, time zone, billing accounts)
TENANTS = (
    (BIG, 6, "America/New_York", 100),
    ("QSMALL1", 1, "Europe/London", 20),
    ("QSMALL2", 1, "Asia/Tokyo", 20),
    ("QSMALL3", 1, "UTC", 20),
    ("QSMALL4", 1, "America/Los_Angeles", 20),
)
API_ACCOUNT = "API"
PASSWORD = "queries-bench-pass"
DAYS = 90
FIRST_DAY = datetime(2026, 8, 1, tzinfo=UTC)
TRANSACTION_ROWS = 500_000  # under the 2^20 feed ids one transaction may take
LOAD_PROCESSES = 2
UNRATED_SHARE = 0.05
FEED_LIMIT = 1000
EXPORT_ROWS = 1_000_000
REQUESTS = 300  # of each timed kind (and as many of its baseline)
WARMUP_REQUESTS = 30
P99_TARGET_MS = 50.0
EXPORT_TARGET = 100_000.0  # rows/s
RSS_TARGET_MB = 200.0
RSS_SAMPLE_SECONDS = 0.05

COLUMNS = (
    "cdr_id",
    "database_id",
    "api_account",
    "external_id",
    "originating_number",
    "destination_number",
    "start_time",
    "duration",
    "disposition",
    "ring_seconds",
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
    "destination_name",
    "matched_prefix",
    "billed_seconds",
    "rate",
    "total",
    "cost",
    "currency",
    "feed_id",
    "pricing",
)
_DISPOSITIONS = ["ANSWERED"] * 70 + ["NO ANSWER"] * 15 + ["BUSY"] * 8 + ["FAILED"] * 5
_DISPOSITIONS += ["CONGESTION"] * 2
_RATES = [Decimal(f"0.{k:04d}") for k in range(50, 450, 7)]
_EIGHT = Decimal("0.00000001")


# -- the rows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Price:
    """One pooled pricing outcome: every Decimal made once, reused by many rows."""

    duration: int
    disposition: str
    billed: int
    rate: Decimal
    total: Decimal
    cost: Decimal
    pricing: str  # the rater's explanation, compacted (what `pricing` holds, smaller)


def _price_pool(rng: random.Random, size: int = 4096) -> list[_Price]:
    pool = []
    for _ in range(size):
        disposition = rng.choice(_DISPOSITIONS)
        duration = rng.randint(1, 1800) if disposition == "ANSWERED" else 0
        billed = -(-duration // 6) * 6
        rate = rng.choice(_RATES)
        total = (rate * billed / 60).quantize(_EIGHT)
        cost = (total * Decimal("0.6")).quantize(_EIGHT)
        pricing = orjson.dumps(
            {
                "version": 1,
                "rated": True,
                "package": {"id": "std", "why": "default_package"},
                "price": {
                    "line": {"prefix": "1613", "rate": str(rate), "increment": 6},
                    "increments": {"duration": duration, "billed_seconds": billed},
                    "arithmetic": f"0 + {rate} * {billed} / 60 = {total}",
                    "total": str(total),
                },
            }
        ).decode()
        pool.append(_Price(duration, disposition, billed, rate, total, cost, pricing))
    return pool


@dataclass
class RowMaker:
    """Calls in start-time order over DAYS days, the tenants interleaved by their shares."""

    rows: int
    seed: int = 20261205
    made: int = 0  # the call-order number of the next row
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.prices = _price_pool(random.Random(1))
        self.slots = [t for t in TENANTS for _ in range(t[1])]
        pool = random.Random(2)
        self.numbers = [f"1{pool.randrange(2_000_000_000, 9_999_999_999)}" for _ in range(20_000)]
        self.step = DAYS * 86_400 / self.rows  # seconds between consecutive calls
        self.first = FIRST_DAY.timestamp()

    def batch(self, count: int, feed_base: int) -> Iterator[tuple[Any, ...]]:
        """The next `count` rows, feed ids `feed_base | 0`, `feed_base | 1`, ..."""
        rng, prices, slots, numbers = self.rng, self.prices, self.slots, self.numbers
        pick, rand = rng.choice, rng.random
        for n in range(count):
            k = self.made + n
            tenant, _, _, accounts = pick(slots)
            a = rng.randrange(accounts)
            start = datetime.fromtimestamp(self.first + (k + rand()) * self.step, UTC)
            p = pick(prices)
            ext = str(100 + a)
            other = pick(numbers)
            inbound = rand() < 0.2
            rated = rand() >= UNRATED_SHARE
            yield (
                uuid_utils.uuid7(),
                tenant,
                API_ACCOUNT,
                f"pbx-{k}",
                other if inbound else ext,
                ext if inbound else other,
                start,
                p.duration,
                p.disposition,
                5,
                start + timedelta(seconds=p.duration + 3),
                rated,
                None if rated else "no_rate",
                "inbound" if inbound else "outbound",
                ext,
                "std",
                f"acct-{a:03d}",
                f"client-{a % 20:02d}",
                "+" + other,
                ("IB" if inbound else "N") if rated else None,
                ("free" if inbound else "billed") if rated else None,
                "Canada - Ontario" if rated else None,
                "1613" if rated else None,
                p.billed if rated else 0,
                p.rate if rated else None,
                p.total if rated else None,
                p.cost if rated else None,
                "USD",
                feed_base | n,
                p.pricing if rated else None,
            )
        self.made += count


# -- loading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    rows: int
    copy_seconds: float
    index_seconds: dict[str, float]  # each secondary index's build
    vacuum_seconds: float
    table_rows: int  # every row of cdr after the load (the other sections' too)
    # Sizes summed over the partitions of cdr (the partitioned parent stores nothing).
    heap_bytes: int  # pg_relation_size
    toast_bytes: int
    index_bytes: dict[str, int]  # every index of cdr, the primary key included
    indexes_bytes: int  # pg_indexes_size
    total_bytes: int  # pg_total_relation_size
    partitions: int  # those holding rows

    @property
    def rate(self) -> float:
        return self.rows / self.copy_seconds if self.copy_seconds > 0 else 0.0

    @property
    def build_seconds(self) -> float:
        return sum(self.index_seconds.values())


async def connect(pg_port: int) -> asyncpg.Connection:
    return await asyncpg.connect(
        host="127.0.0.1", port=pg_port, user="postgres", database="cdrflow"
    )


async def create_tenants(conn: asyncpg.Connection) -> None:
    password_hash = hash_password(PASSWORD)
    for tenant, _, zone, _ in TENANTS:
        await conn.execute(
            "INSERT INTO tenant (database_id, name, timezone, country) VALUES ($1, $2, $3, 'US')",
            tenant,
            "queries bench",
            zone,
        )
        await conn.execute(
            "INSERT INTO api_account (database_id, api_account_id, password_hash)"
            " VALUES ($1, $2, $3)",
            tenant,
            API_ACCOUNT,
            password_hash,
        )


# The parent's indexes. Their definitions read `ON ONLY public.cdr` (pg_dump's form, which
# builds no partition's index): without ONLY, the CREATE builds every partition's.
_SECONDARY = """
SELECT c.relname AS name,
       replace(pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON ') AS definition
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'cdr'::regclass AND NOT i.indisprimary ORDER BY c.relname
"""
# Each index of the parent: the partitions' indexes attached to it, summed.
_INDEX_SIZES = """
SELECT c.relname AS name,
       (SELECT coalesce(sum(pg_relation_size(t.relid)), 0)
        FROM pg_partition_tree(i.indexrelid) t WHERE t.isleaf) AS bytes
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'cdr'::regclass ORDER BY c.relname
"""
_SIZES = """
SELECT coalesce(sum(pg_relation_size(t.relid)), 0) AS heap,
       coalesce(sum(pg_indexes_size(t.relid)), 0) AS indexes,
       coalesce(sum(pg_total_relation_size(t.relid)), 0) AS total,
       coalesce(sum(pg_total_relation_size(nullif(c.reltoastrelid, 0))), 0) AS toast,
       count(*) FILTER (WHERE c.reltuples > 0) AS partitions,
       (SELECT count(*) FROM cdr) AS n
FROM pg_partition_tree('cdr') t JOIN pg_class c ON c.oid = t.relid
WHERE t.isleaf
"""


async def _prepare(pg_port: int) -> list[tuple[str, str]]:
    """The tenants; the secondary indexes dropped (their definitions returned), the
    foreign-key triggers off and a larger WAL allowance for the load."""
    conn = await connect(pg_port)
    try:
        await create_tenants(conn)
        indexes = [(r["name"], r["definition"]) for r in await conn.fetch(_SECONDARY)]
        for name, _ in indexes:
            await conn.execute(f'DROP INDEX "{name}"')
        # Every row names one of the tenants just inserted: the foreign-key check per row
        # (half the COPY's server time) is left out, as pg_restore --disable-triggers does.
        await conn.execute("ALTER TABLE cdr DISABLE TRIGGER ALL")
        # Gigabytes of rows under the default 1GB would checkpoint every few seconds, and
        # each checkpoint makes the next writes of every page full-page images.
        await conn.execute("ALTER SYSTEM SET max_wal_size = '8GB'")
        await conn.execute("SELECT pg_reload_conf()")
        return indexes
    finally:
        await conn.close()


async def _copy_chunks(pg_port: int, rows: int, chunks: list[int]) -> int:
    """COPY the given chunks (of TRANSACTION_ROWS rows each, numbered in call order), one
    transaction each."""
    conn = await connect(pg_port)
    done = 0
    try:
        for chunk in chunks:
            first = chunk * TRANSACTION_ROWS
            count = min(TRANSACTION_ROWS, rows - first)
            maker = RowMaker(rows, seed=20261205 + chunk, made=first)
            async with conn.transaction():
                xid = int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))
                await conn.copy_records_to_table(
                    "cdr", records=maker.batch(count, xid << 20), columns=COLUMNS
                )
            done += count
        return done
    finally:
        await conn.close()


def _copy_worker(pg_port: int, rows: int, chunks: list[int]) -> int:
    return asyncio.run(_copy_chunks(pg_port, rows, chunks))


async def _finish(
    pg_port: int, indexes: list[tuple[str, str]], log: Callable[[str], None]
) -> tuple[dict[str, float], float, asyncpg.Record, dict[str, int]]:
    conn = await connect(pg_port)
    try:
        await conn.execute("ALTER TABLE cdr ENABLE TRIGGER ALL")
        await conn.execute("SET maintenance_work_mem = '1GB'")
        built: dict[str, float] = {}
        for name, definition in indexes:
            t0 = time.perf_counter()
            await conn.execute(definition)
            built[name] = time.perf_counter() - t0
            log(f"queries: built {name} in {built[name]:.1f} s")
        t0 = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) cdr")
        vacuum = time.perf_counter() - t0
        log(f"queries: VACUUM (ANALYZE) cdr in {vacuum:.1f} s")
        await conn.execute("ALTER SYSTEM RESET max_wal_size")
        await conn.execute("SELECT pg_reload_conf()")
        sizes = await conn.fetchrow(_SIZES)
        index_bytes = {r["name"]: int(r["bytes"]) for r in await conn.fetch(_INDEX_SIZES)}
        return built, vacuum, sizes, index_bytes
    finally:
        await conn.close()


def load_rows(pg_port: int, rows: int, log: Callable[[str], None]) -> LoadResult:
    """`rows` CDRs by COPY from LOAD_PROCESSES processes (each generating and encoding its
    own chunks, so the Python work of the two runs on both cores beside PostgreSQL's), then
    the indexes, VACUUM (ANALYZE) and the sizes."""
    indexes = asyncio.run(_prepare(pg_port))
    chunks = list(range(math.ceil(rows / TRANSACTION_ROWS)))
    log(
        f"queries: dropped {len(indexes)} secondary indexes of cdr; COPYing {rows:,} rows"
        f" from {LOAD_PROCESSES} processes"
    )
    began = time.perf_counter()
    # fork: the workers need nothing but this module's functions; no event loop runs here.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(LOAD_PROCESSES, mp_context=context) as pool:
        parts = [chunks[w::LOAD_PROCESSES] for w in range(LOAD_PROCESSES)]
        loaded = sum(pool.map(_copy_worker, [pg_port] * len(parts), [rows] * len(parts), parts))
    copy_seconds = time.perf_counter() - began
    log(f"queries: {loaded:,} rows in {copy_seconds:.1f} s ({loaded / copy_seconds:,.0f}/s)")
    built, vacuum, sizes, index_bytes = asyncio.run(_finish(pg_port, indexes, log))
    return LoadResult(
        rows=loaded,
        copy_seconds=copy_seconds,
        index_seconds=built,
        vacuum_seconds=vacuum,
        table_rows=int(sizes["n"]),
        heap_bytes=int(sizes["heap"]),
        toast_bytes=int(sizes["toast"]),
        index_bytes=index_bytes,
        indexes_bytes=int(sizes["indexes"]),
        total_bytes=int(sizes["total"]),
        partitions=int(sizes["partitions"]),
    )


# -- the notifier's own statements, for the baselines ---------------------------------------


class _Capture:
    """Stands in for a SQLAlchemy connection: keeps the statement a repository function
    would run, so the baseline runs exactly that statement."""

    statement: Any = None

    async def execute(self, statement: Any) -> Any:
        self.statement = statement
        return self

    def mappings(self) -> list[Any]:
        return []


def _asyncpg_sql(statement: Any) -> tuple[str, list[Any]]:
    compiled = statement.compile(dialect=asyncpg_dialect.dialect())
    return compiled.string, [compiled.params[name] for name in compiled.positiontup]


def feed_statement(from_id: int) -> tuple[str, list[Any]]:
    return feed_sql(database_id=BIG, from_id=from_id, limit=FEED_LIMIT, currency="USD")


def get_cdr_params(account: str, day: date) -> dict[str, str]:
    return {
        "action": "getCDR",
        "date_from": day.isoformat(),
        "date_to": day.isoformat(),
        "account": account,
        "timezone": "0",
    }


def get_cdr_statement(account: str, day: date) -> tuple[str, list[Any]]:
    capture = _Capture()
    query = compat.cdr_query(get_cdr_params(account, day), reseller=False)
    _run_sync(find_cdrs(capture, database_id=BIG, query=query))  # type: ignore[arg-type]
    return _asyncpg_sql(capture.statement)


def _run_sync(coro: Awaitable[Any]) -> Any:
    """Drive a coroutine that never suspends (its only await is on _Capture)."""
    gen = coro.__await__()
    try:
        next(gen)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the statement builder suspended")


# -- timing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latencies:
    what: str
    samples_ms: list[float]
    rows: int  # records answered, over all samples

    @property
    def p50(self) -> float:
        return _pct(self.samples_ms, 0.50)

    @property
    def p99(self) -> float:
        return _pct(self.samples_ms, 0.99)

    @property
    def mean_rows(self) -> float:
        return self.rows / len(self.samples_ms) if self.samples_ms else 0.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class Export:
    rows: int
    seconds: float
    bytes: int

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Memory:
    before_mb: float  # VmRSS just before the export
    peak_mb: float  # VmHWM over the export (reset just before it)
    sampled_max_mb: float  # the largest VmRSS sampled during it
    after_mb: float
    lifetime_peak_mb: float  # VmHWM from the process start to just before the reset


@dataclass(frozen=True)
class QueriesMeasurements:
    load: LoadResult
    feed: Latencies
    feed_base: Latencies
    get_cdr: Latencies
    get_cdr_base: Latencies
    export: Export
    export_base: tuple[Export, Export]  # just before and just after
    export_range: tuple[datetime, datetime]
    memory: Memory
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    cores: int

    @property
    def export_base_rate(self) -> float:
        a, b = self.export_base
        return (a.rows + b.rows) / (a.seconds + b.seconds)


def _status(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) / 1024
    return out


async def positions(pg_port: int, count: int) -> tuple[list[int], list[tuple[str, date]]]:
    """Random feed positions of the big tenant (feed ids of rows drawn at random), and random
    (account, day) pairs."""
    rng = random.Random(7)
    conn = await connect(pg_port)
    try:
        ids = [
            int(r[0])
            for r in await conn.fetch(
                "SELECT feed_id FROM cdr TABLESAMPLE SYSTEM (1) REPEATABLE (7)"
                " WHERE database_id = $1",
                BIG,
            )
        ]
    finally:
        await conn.close()
    ids.sort()
    usable = ids[: max(1, len(ids) - len(ids) // 100)]  # not the last 1%: a page must fill
    feed = [rng.choice(usable) for _ in range(count)]
    accounts = TENANTS[0][3]
    # Whole UTC days inside the loaded range (timezone=0).
    days = [(FIRST_DAY + timedelta(days=d + 1)).date() for d in range(DAYS - 2)]
    pairs = [(f"acct-{rng.randrange(accounts):03d}", rng.choice(days)) for _ in range(count)]
    return feed, pairs


async def time_requests(
    session: aiohttp.ClientSession,
    conn: asyncpg.Connection,
    urls: list[str],
    statements: list[tuple[str, list[Any]]],
    count_rows: Callable[[bytes], int],
) -> tuple[Latencies, Latencies]:
    """Each HTTP request, then its statement on asyncpg, one at a time, interleaved so that
    both see the same moment of the machine."""
    http_ms: list[float] = []
    sql_ms: list[float] = []
    http_rows = sql_rows = 0
    for url, (sql, params) in zip(urls, statements, strict=True):
        t0 = time.perf_counter()
        async with session.get(url) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{url}: {resp.status} {body[:200]!r}")
        http_ms.append((time.perf_counter() - t0) * 1000)
        http_rows += count_rows(body)
        t0 = time.perf_counter()
        rows = await conn.fetch(sql, *params)
        sql_ms.append((time.perf_counter() - t0) * 1000)
        sql_rows += len(rows)
    return Latencies("http", http_ms, http_rows), Latencies("sql", sql_ms, sql_rows)


async def measure_latencies(
    notifier: str, pg_port: int, log: Callable[[str], None]
) -> tuple[Latencies, Latencies, Latencies, Latencies]:
    feed_ids, pairs = await positions(pg_port, REQUESTS + WARMUP_REQUESTS)
    auth = aiohttp.BasicAuth(f"{BIG}/{API_ACCOUNT}", PASSWORD)
    timeout = aiohttp.ClientTimeout(total=120)
    conn = await connect(pg_port)
    try:
        async with aiohttp.ClientSession(auth=auth, timeout=timeout) as session:
            feed_urls = [f"{notifier}/billing/feed?fromid={f}&limit={FEED_LIMIT}" for f in feed_ids]
            feed_sql = [feed_statement(f) for f in feed_ids]

            def feed_rows(body: bytes) -> int:
                return len(orjson.loads(body)["cdr"])

            cdr_urls = [
                f"{notifier}/api/cdr?"
                + "&".join(f"{k}={v}" for k, v in get_cdr_params(a, d).items())
                for a, d in pairs
            ]
            cdr_sql = [get_cdr_statement(a, d) for a, d in pairs]

            def cdr_rows(body: bytes) -> int:
                return len(orjson.loads(body)["cdr"])

            w = WARMUP_REQUESTS
            await time_requests(session, conn, feed_urls[:w], feed_sql[:w], feed_rows)
            await time_requests(session, conn, cdr_urls[:w], cdr_sql[:w], cdr_rows)
            log(f"queries: warmed up; {REQUESTS} feed pages and their statements")
            feed, feed_base = await time_requests(
                session, conn, feed_urls[w:], feed_sql[w:], feed_rows
            )
            log(
                f"queries: feed page p50 {feed.p50:.1f} ms, p99 {feed.p99:.1f} ms"
                f" (statement alone p50 {feed_base.p50:.1f}, p99 {feed_base.p99:.1f})"
            )
            get_cdr, get_cdr_base = await time_requests(
                session, conn, cdr_urls[w:], cdr_sql[w:], cdr_rows
            )
            log(
                f"queries: getCDR day p50 {get_cdr.p50:.1f} ms, p99 {get_cdr.p99:.1f} ms"
                f" (statement alone p50 {get_cdr_base.p50:.1f}, p99 {get_cdr_base.p99:.1f});"
                f" {get_cdr.mean_rows:.0f} rows each on average"
            )
    finally:
        await conn.close()
    return feed, feed_base, get_cdr, get_cdr_base


async def export_range(pg_port: int) -> tuple[datetime, datetime]:
    """[from, to) of the big tenant holding EXPORT_ROWS rows (fewer if it has fewer), from
    a third of the way into the loaded days."""
    conn = await connect(pg_port)
    try:
        low = FIRST_DAY + timedelta(days=DAYS // 3)
        high = await conn.fetchval(
            "SELECT start_time FROM cdr WHERE database_id = $1 AND start_time >= $2"
            " ORDER BY start_time, cdr_id OFFSET $3 LIMIT 1",
            BIG,
            low,
            EXPORT_ROWS,
        )
        return low, high or FIRST_DAY + timedelta(days=DAYS + 1)
    finally:
        await conn.close()


def _export_search(low: datetime, high: datetime) -> CdrSearch:
    return CdrSearch(database_id=BIG, start_from=low, start_to=high)


async def raw_copy(pg_port: int, low: datetime, high: datetime) -> Export:
    """The export's own COPY statements (search_repository.export_sql), run through asyncpg
    in one read-only snapshot with the tenant's zone set, counting the bytes."""
    statements = search_repository.export_sql(_export_search(low, high), after=None, currency="USD")
    conn = await connect(pg_port)
    size = 0
    lines = 0

    async def sink(chunk: bytes) -> None:
        nonlocal size, lines
        size += len(chunk)
        lines += chunk.count(b"\n")

    try:
        began = time.perf_counter()
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute("SELECT set_config('TimeZone', $1, true)", TENANTS[0][2])
            for n, (sql, params) in enumerate(statements):
                await conn.copy_from_query(
                    sql, *params, output=sink, format="csv", header=n == 0, timeout=None
                )
        took = time.perf_counter() - began
    finally:
        await conn.close()
    return Export(lines - 1, took, size)


def _reset_peak(pid: int) -> None:
    """Writing 5 to clear_refs resets the peak resident set (VmHWM) to the current one."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def http_export(url: str, pid: int) -> tuple[Export, Memory]:
    """The export through the notifier, streamed and counted; its RSS sampled meanwhile."""
    lifetime = _status(pid)["VmHWM"]
    _reset_peak(pid)
    before = _status(pid)["VmRSS"]
    samples: list[float] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append(_status(pid)["VmRSS"])
            await asyncio.sleep(RSS_SAMPLE_SECONDS)

    auth = aiohttp.BasicAuth(f"{BIG}/{API_ACCOUNT}", PASSWORD)
    size = lines = 0
    sampler = asyncio.create_task(sample())
    try:
        async with aiohttp.ClientSession(
            auth=auth, timeout=aiohttp.ClientTimeout(total=600)
        ) as session:
            began = time.perf_counter()
            async with session.get(url) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"export: {resp.status} {await resp.text()}")
                async for chunk in resp.content.iter_any():
                    size += len(chunk)
                    lines += chunk.count(b"\n")
            took = time.perf_counter() - began
    finally:
        done.set()
        await sampler
    status = _status(pid)
    memory = Memory(
        before_mb=before,
        peak_mb=status["VmHWM"],
        sampled_max_mb=max(samples, default=before),
        after_mb=status["VmRSS"],
        lifetime_peak_mb=lifetime,
    )
    return Export(lines - 1, took, size), memory


# -- the section ----------------------------------------------------------------------------


def measure_queries(
    *,
    pg_port: int,
    bootstrap: str,
    database_url: str,
    workdir: Path,
    free_port: Callable[[], int],
    log: Callable[[str], None],
    rows: int = 10_000_000,
) -> QueriesMeasurements:
    """Every queries row, on an already running PostgreSQL (the services stopped)."""
    load_before = os.getloadavg()
    load = load_rows(pg_port, rows, log)
    log(
        f"queries: {load.rows:,} rows COPYed in {load.copy_seconds:.1f} s ({load.rate:,.0f}/s),"
        f" indexes built in {load.build_seconds:.1f} s; cdr is {load.total_bytes / 2**30:.2f} GiB"
    )
    env = {
        "CDR_DATABASE_URL": database_url,
        "CDR_KAFKA_BOOTSTRAP": bootstrap,
        "CDR_ADMIN_TOKEN": "queries-bench-token",
        "CDR_LOG_LEVEL": "warning",
        "CDR_ROLE": "api",
    }
    proc = ServiceProcess("notifier", free_port(), env, log_path=workdir / "queries-notifier.log")
    proc.start()
    try:
        proc.wait_ready(90)
        assert proc.proc is not None
        pid = proc.proc.pid
        feed, feed_base, get_cdr, get_cdr_base = asyncio.run(
            measure_latencies(proc.url, pg_port, log)
        )
        low, high = asyncio.run(export_range(pg_port))
        url = (
            f"{proc.url}/v1/cdrs?format=csv&from={low.isoformat().replace('+', '%2B')}"
            f"&to={high.isoformat().replace('+', '%2B')}"
        )
        before = asyncio.run(raw_copy(pg_port, low, high))
        log(f"queries: raw COPY of {before.rows:,} rows: {before.rate:,.0f} rows/s")
        export, memory = asyncio.run(http_export(url, pid))
        log(
            f"queries: CSV export of {export.rows:,} rows: {export.rate:,.0f} rows/s;"
            f" notifier RSS peak {memory.peak_mb:.0f} MiB (before {memory.before_mb:.0f})"
        )
        after = asyncio.run(raw_copy(pg_port, low, high))
        log(f"queries: raw COPY again: {after.rate:,.0f} rows/s")
    finally:
        proc.stop()
    return QueriesMeasurements(
        load=load,
        feed=feed,
        feed_base=feed_base,
        get_cdr=get_cdr,
        get_cdr_base=get_cdr_base,
        export=export,
        export_base=(before, after),
        export_range=(low, high),
        memory=memory,
        load_before=load_before,
        load_after=os.getloadavg(),
        cores=os.cpu_count() or 1,
    )


# -- the report -----------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _x(figure: float, baseline: float) -> str:
    return f"{figure / baseline:.2f}x" if baseline else "n/a"


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f}"


def _latency_rows(name: str, http: Latencies, sql: Latencies) -> list[str]:
    return [
        f"| {name}: p50, ms, vs the same statement on asyncpg | {_ms(sql.p50)} |"
        f" {_ms(http.p50)} | {_x(http.p50, sql.p50)} |",
        f"| {name}: p99, ms, vs the same statement on asyncpg | {_ms(sql.p99)} |"
        f" {_ms(http.p99)} | {_x(http.p99, sql.p99)} |",
        f"| {name}: p99, ms, vs the {P99_TARGET_MS:g} ms target | {_ms(P99_TARGET_MS)} |"
        f" {_ms(http.p99)} | {_x(http.p99, P99_TARGET_MS)} |",
    ]


def render_section(m: QueriesMeasurements) -> str:
    """The queries section of docs/benchmarks.md: its table rows and how they were taken."""
    load, mem, export = m.load, m.memory, m.export
    base_rate = m.export_base_rate
    per_row = load.total_bytes / load.table_rows if load.table_rows else 0
    rows = [
        "| what | baseline | figure | ratio |",
        "|---|---:|---:|---:|",
        *_latency_rows(f"`GET /billing/feed`, {FEED_LIMIT:,} records a page", m.feed, m.feed_base),
        *_latency_rows("`getCDR`, one account's day", m.get_cdr, m.get_cdr_base),
        f"| `GET /v1/cdrs?format=csv`, {export.rows:,} rows of one tenant: rows/s vs a raw"
        f" `COPY (SELECT ...) TO STDOUT` of the same statement through asyncpg |"
        f" {_n(base_rate)} | {_n(export.rate)} | {_x(export.rate, base_rate)} |",
        f"| the same export: rows/s vs the {EXPORT_TARGET:,.0f} rows/s target |"
        f" {_n(EXPORT_TARGET)} | {_n(export.rate)} | {_x(export.rate, EXPORT_TARGET)} |",
        f"| notifier peak RSS during the export (VmHWM reset just before), MiB, vs the"
        f" {RSS_TARGET_MB:g} MiB target | {_n(RSS_TARGET_MB)} | {_n(mem.peak_mb)} |"
        f" {_x(mem.peak_mb, RSS_TARGET_MB)} |",
        f"| load: {load.rows:,} CDRs by binary COPY, secondary indexes dropped: rows/s | |"
        f" {_n(load.rate)} | |",
        f"| load: building the {len(load.index_seconds)} secondary indexes afterwards, s | |"
        f" {load.build_seconds:.1f} | |",
        f"| `cdr` after the load ({load.table_rows:,} rows): pg_total_relation_size of its"
        f" partitions, MiB | | {_mib(load.total_bytes)} | |",
        f"| `cdr` heap (pg_relation_size of its partitions), MiB | | {_mib(load.heap_bytes)} | |",
        f"| `cdr` indexes (pg_indexes_size of its partitions), MiB | |"
        f" {_mib(load.indexes_bytes)} | |",
        *(
            f"| index `{name}`, MiB | | {_mib(size)} | |"
            for name, size in sorted(load.index_bytes.items())
        ),
    ]
    builds = ", ".join(f"`{k}` {v:.1f} s" for k, v in load.index_seconds.items())
    low, high = m.export_range
    notes = [
        f"- Data: {load.rows:,} CDRs in five tenants, one ({BIG}, America/New_York, 100"
        " billing accounts) holding 60%, four holding 10% each (20 accounts); start times"
        f" spread evenly over {DAYS} days from {FIRST_DAY:%Y-%m-%d}, rows stored in call order"
        " with the tenants interleaved (as the rater stores them), uuid7 cdr ids,"
        f" {UNRATED_SHARE:.0%} held unrated (`no_rate`), the rest priced (NUMERIC rate,"
        " total and cost from Decimal) with a `pricing` explanation of about 260 bytes of JSON (the"
        " rater's is about 1 KB, so a production table is larger). Generated in the bench's"
        " process and COPYed (binary, asyncpg) in transactions of"
        f" {TRANSACTION_ROWS:,} rows, each row's feed id `(xid << 20) | n` of its transaction.",
        f"- Load: the {len(load.index_seconds)} secondary indexes dropped before the COPY and"
        " built again from their own definitions after it (maintenance_work_mem 1GB): a"
        " sorted build writes each index once and compactly, where keeping six up to date"
        " costs every row six insertions; the primary key (uuid7, so appended in order) stays"
        f" for `cdr_revision`'s foreign key. COPY {load.copy_seconds:.1f} s; builds: {builds};"
        f" then `VACUUM (ANALYZE) cdr` {load.vacuum_seconds:.1f} s (planner statistics, and"
        " hint bits and the visibility map set before, not during, the timed reads). About"
        f" {per_row:,.0f} bytes a row, indexes included; TOAST {_mib(load.toast_bytes)} MiB."
        " The table also holds the rows the earlier sections left. `cdr` is partitioned by"
        " month of `cdr_id` (the arrival time), so the rows, all loaded now, sit in one"
        f" partition; {load.partitions} partitions hold rows, and the sizes are theirs summed.",
        f"- Latency rows: one notifier process (`python -m cdr_notifier`, `CDR_ROLE=api`, one"
        f" uvicorn worker), one request at a time from an aiohttp client, {REQUESTS} timed"
        f" requests of each kind after {WARMUP_REQUESTS} untimed ones, each followed by its"
        " own SQL statement (the one the notifier's repository function builds, compiled for"
        " asyncpg) run on an asyncpg connection of the bench: the baseline is the database's"
        " share, the ratio what HTTP, authentication, SQLAlchemy and rendering add. Feed:"
        f" `fromid` = a feed id of a row of {BIG} drawn at random (TABLESAMPLE), limit"
        f" {FEED_LIMIT:,}, {m.feed.mean_rows:,.0f} records a page on average; its statement"
        " writes the page's JSON (`feed_repository.feed_sql`), so its baseline includes"
        " that. getCDR:"
        " `date_from=date_to` a random UTC day of the 90, `account` a random one of the"
        f" 100, `timezone=0`; {m.get_cdr.mean_rows:,.0f} calls a day on average.",
        f"- Export: `from={low.isoformat()}&to={high.isoformat()}` of {BIG}, so"
        f" {export.rows:,} rows ({export.bytes / 2**20:,.0f} MiB of CSV) streamed in"
        f" {export.seconds:.1f} s and read by an aiohttp client as they came. The raw COPY"
        " baseline runs `search_repository.export_sql`'s statements as the notifier does (one"
        " read-only snapshot, the tenant's zone set) and only counts the bytes; it ran just"
        f" before ({_n(m.export_base[0].rate)} rows/s) and just after"
        f" ({_n(m.export_base[1].rate)} rows/s), the baseline is both together.",
        f"- Notifier memory during the export: VmRSS {mem.before_mb:.0f} MiB before,"
        f" {mem.after_mb:.0f} MiB after, at most {mem.sampled_max_mb:.0f} MiB sampled every"
        f" {RSS_SAMPLE_SECONDS * 1000:.0f} ms; VmHWM over the export {mem.peak_mb:.0f} MiB"
        f" (reset through /proc/PID/clear_refs just before it). Its VmHWM from its start up"
        f" to then was {mem.lifetime_peak_mb:.0f} MiB (the first request's argon2 check and"
        " the feed pages).",
        f"- Machine: {m.cores} cores shared by PostgreSQL, the notifier and the client; load"
        f" average (1, 5, 15 min) {_load(m.load_before)} when this section started,"
        f" {_load(m.load_after)} when it ended.",
    ]
    return "\n## Queries\n\n" + "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n"


def _load(avg: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in avg)


def main() -> None:
    """`python bench/queries_bench.py [rows]`: the queries rows alone, on a throwaway
    PostgreSQL and Tansu, printed (`make bench` writes them into docs/benchmarks.md)."""
    from stack import standalone

    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    with standalone("queries") as infra:
        print(render_section(measure_queries(**infra.section_args(), rows=rows)))


if __name__ == "__main__":
    main()
