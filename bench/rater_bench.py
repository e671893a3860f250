"""The rater rows of `make bench`: rating measured alone, fed straight from the topic.

Ingest is not in these rows: `CdrSubmitted` events are produced to a topic of their own
namespace before the rater processes start, so what is timed is the rater consuming, pricing
against a 100,000-line deck, storing and publishing. Baselines of the same run: a raw COPY of
the very rows the rater stored into the same `cdr` table, and one rater process against two.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from cdr_rater.pricing import Call, Package, RateDeck, RateLine, TenantPlan, rate_call
from cdrflow_dev.processes import ServiceProcess
from cdrmodel.events import CdrSubmitted
from cdrmodel.kafka import ALL_TOPICS, SUBMITTED, ensure_topics, topic_name

TENANT = "RATERBENCH"
ACCOUNT = "ACC"
DECK_LINES = 100_000
PARTITIONS = 2
# Distinct called numbers in a run: phonenumbers reads each once (cdrmodel.phone caches it).
DISTINCT_NUMBERS = 20_000
# Distinct rates and fees a deck carries: a real one has a few hundred, not one per line.
_RATES = [Decimal(f"0.{k:04d}") for k in range(5, 400)]
_FEES = [Decimal("0"), Decimal("0.01"), Decimal("0.025")]
_NPAS = range(201, 990)


@dataclass(frozen=True)
class RaterRun:
    processes: int
    events: int
    stored: int
    seconds: float  # the steady window: from 10% to 90% of the rows stored
    total_seconds: float  # from the first process started to the last row stored
    rss_mib: float | None = None
    peak_rss_mib: float | None = None

    @property
    def rate(self) -> float:
        return 0.8 * self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class RaterMeasurements:
    deck_lines: int
    pricing_calls: int
    pricing_rate: float
    one: RaterRun
    two: RaterRun
    copy_rows: int
    copy_rate: float
    cores: int


def deck_prefixes(seed: int = 7) -> list[str]:
    """DECK_LINES distinct NANP prefixes (1 + area + exchange), plus the country line `1`."""
    rng = random.Random(seed)
    picks = rng.sample(range(200_000, 1_000_000), DECK_LINES - 1)
    return ["1", *(f"1{p}" for p in picks)]


def deck_lines(prefixes: list[str], seed: int = 7) -> list[RateLine]:
    rng = random.Random(seed)
    return [
        RateLine(
            prefix=p,
            rate=rng.choice(_RATES),
            increment=rng.choice((6, 60)),
            connect_fee=rng.choice(_FEES),
            destination=f"US {p[1:4]}" if len(p) > 1 else "USA and Canada",
        )
        for p in prefixes
    ]


def called_numbers(
    prefixes: list[str], n: int, *, distinct: int | None = None, seed: int = 11
) -> list[str]:
    """`n` numbers under the deck's lines (a prefix and four more digits), drawn from a pool
    of `distinct` numbers (None: every one new), as a PBX calls the same numbers again."""
    rng = random.Random(seed)
    areas = prefixes[1:]
    pool = [f"{rng.choice(areas)}{rng.randrange(10_000):04d}" for _ in range(distinct or n)]
    return pool if distinct is None else [rng.choice(pool) for _ in range(n)]


def measure_pricing(calls: int, distinct: int | None) -> tuple[float, RateDeck]:
    """`rate_call` alone on the 100,000-line deck, in this process: calls/s."""
    prefixes = deck_prefixes()
    deck = RateDeck(deck_lines(prefixes))
    plan = TenantPlan(home_country="US", packages={"p": Package(None, deck)})
    start = datetime(2026, 11, 2, 15, tzinfo=UTC)
    batch = [
        Call("100", number, start + timedelta(seconds=i), 30 + i % 600)
        for i, number in enumerate(called_numbers(prefixes, calls, distinct=distinct))
    ]
    began = time.perf_counter()
    priced = sum(1 for call in batch if rate_call(call, plan, default_package="p").rated)
    took = time.perf_counter() - began
    if priced != calls:
        raise RuntimeError(f"only {priced} of {calls} benchmark calls priced")
    return calls / took, deck


async def load_tenant(conn: asyncpg.Connection) -> None:
    """The bench tenant, its account (default package `p`) and the deck, by COPY."""
    await conn.execute(
        "INSERT INTO tenant (database_id, name, country) VALUES ($1, 'rater bench', 'US')",
        TENANT,
    )
    await conn.execute(
        "INSERT INTO package (database_id, package_id, route_id) VALUES ($1, 'p', NULL)", TENANT
    )
    await conn.execute(
        "INSERT INTO api_account (database_id, api_account_id, password_hash, default_package)"
        " VALUES ($1, $2, 'not-a-login', 'p')",
        TENANT,
        ACCOUNT,
    )
    lines = deck_lines(deck_prefixes())
    await conn.copy_records_to_table(
        "rate_line",
        records=[
            (TENANT, "package", "p", x.prefix, x.destination, x.rate, x.increment, x.connect_fee)
            for x in lines
        ],
        columns=[
            "database_id",
            "deck_kind",
            "deck_id",
            "prefix",
            "destination",
            "rate",
            "increment",
            "connect_fee",
        ],
    )


async def produce_events(bootstrap: str, topic: str, numbers: list[str]) -> None:
    """One `CdrSubmitted` per number, keyed by cdr_id so the partitions share the load."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        now = datetime.now(UTC)
        for i, number in enumerate(numbers):
            event = CdrSubmitted(
                cdr_id=uuid.uuid4(),
                database_id=TENANT,
                api_account=ACCOUNT,
                received_at=now,
                originating_number="100",
                destination_number=number,
                start_time=now - timedelta(seconds=600 + i % 3600),
                duration=1 + i % 900,
            )
            await producer.send(topic, event.model_dump_json().encode(), key=event.cdr_id.bytes)
        await producer.flush()
    finally:
        await producer.stop()


async def _count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM cdr WHERE database_id = $1", TENANT))


async def wait_window(pg_port: int, base: int, events: int, timeout: float) -> tuple[float, float]:
    """Polls the row count: (seconds from 10% to 90% stored, seconds until all are)."""
    conn = await connect(pg_port)
    try:
        began = time.perf_counter()
        marks: dict[float, float] = {}
        while True:
            done = await _count(conn) - base
            now = time.perf_counter()
            for share in (0.1, 0.9, 1.0):
                if done >= share * events and share not in marks:
                    marks[share] = now
            if 1.0 in marks:
                return marks[0.9] - marks[0.1], marks[1.0] - began
            if now - began > timeout:
                raise RuntimeError(f"the rater stored {done} of {events} in {timeout:.0f} s")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def connect(pg_port: int) -> asyncpg.Connection:
    return await asyncpg.connect(
        host="127.0.0.1", port=pg_port, user="postgres", database="cdrflow"
    )


def rss_mib(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a process, MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def run_raters(
    *,
    processes: int,
    events: int,
    pg_port: int,
    bootstrap: str,
    env: dict[str, str],
    workdir: Path,
    free_port: Callable[[], int],
    log: Callable[[str], None],
    distinct: int,
) -> RaterRun:
    """Fill a fresh namespace's topic with `events`, then start `processes` raters on it."""
    namespace = f"rb{processes}-{uuid.uuid4().hex[:6]}."
    topics = [topic_name(t, namespace) for t in ALL_TOPICS]
    asyncio.run(ensure_topics(bootstrap, topics, partitions=PARTITIONS))
    numbers = called_numbers(deck_prefixes(), events, distinct=distinct, seed=processes)
    log(f"rater x{processes}: producing {events:,} events to {namespace}* ({PARTITIONS} parts)")
    asyncio.run(produce_events(bootstrap, topic_name(SUBMITTED, namespace), numbers))
    base = asyncio.run(_count_once(pg_port))
    raters = [
        ServiceProcess(
            "rater",
            free_port(),
            {**env, "CDR_TOPIC_NAMESPACE": namespace, "CDR_RATER_GROUP": f"{namespace}rater"},
            log_path=workdir / f"{namespace}rater{k}.log",
        )
        for k in range(processes)
    ]
    try:
        for proc in raters:
            proc.start()
        window, total = asyncio.run(wait_window(pg_port, base, events, timeout=300))
        rss, peak = rss_mib(raters[0].proc.pid) if raters[0].proc is not None else (None, None)
    finally:
        for proc in raters:
            proc.stop()
    stored = asyncio.run(_count_once(pg_port)) - base
    run = RaterRun(processes, events, stored, window, total, rss, peak)
    log(
        f"rater x{processes}: {run.rate:,.0f} CDRs/s priced and stored (10%-90% window),"
        f" all {stored:,} in {total:.1f} s from start; RSS of one {rss or 0:.0f} MiB"
        f" (peak {peak or 0:.0f})"
    )
    return run


async def _count_once(pg_port: int) -> int:
    conn = await connect(pg_port)
    try:
        return await _count(conn)
    finally:
        await conn.close()


async def copy_baseline(pg_port: int, rows: int) -> float:
    """The same rows the rater stored, COPYed again into `cdr` (new cdr_ids): rows/s.
    Removed afterwards, so the table is as the rater left it."""
    conn = await connect(pg_port)
    try:
        records = await conn.fetch(
            "SELECT * FROM cdr WHERE database_id = $1 ORDER BY feed_id LIMIT $2", TENANT, rows
        )
        columns = [c for c in records[0].keys() if c not in ("cdr_id", "feed_id")]
        fresh = [(uuid.uuid4(), *(r[c] for c in columns)) for r in records]
        async with conn.transaction():
            began = time.perf_counter()
            await conn.copy_records_to_table("cdr", records=fresh, columns=["cdr_id", *columns])
            took = time.perf_counter() - began
            await conn.execute(
                "DELETE FROM cdr WHERE cdr_id = ANY($1::uuid[])", [r[0] for r in fresh]
            )
        return len(fresh) / took
    finally:
        await conn.close()


def measure_rater(
    *,
    pg_port: int,
    bootstrap: str,
    database_url: str,
    workdir: Path,
    free_port: Callable[[], int],
    log: Callable[[str], None],
    events: int,
    distinct: int,
) -> RaterMeasurements:
    """Every rater row, on an already running PostgreSQL and Tansu (services stopped)."""
    log(f"pricing alone: {DECK_LINES:,}-line deck, {events:,} calls")
    pricing_rate, _ = measure_pricing(events, distinct)
    log(f"pricing alone: {pricing_rate:,.0f} calls/s")

    async def setup() -> None:
        conn = await connect(pg_port)
        try:
            await load_tenant(conn)
        finally:
            await conn.close()

    asyncio.run(setup())
    env = {
        "CDR_DATABASE_URL": database_url,
        "CDR_KAFKA_BOOTSTRAP": bootstrap,
        "CDR_ADMIN_TOKEN": "rater-bench-token",
        "CDR_LOG_LEVEL": "warning",
    }
    common = {
        "events": events,
        "pg_port": pg_port,
        "bootstrap": bootstrap,
        "env": env,
        "workdir": workdir,
        "free_port": free_port,
        "log": log,
        "distinct": distinct,
    }
    one = run_raters(processes=1, **common)  # type: ignore[arg-type]
    copy_rate = asyncio.run(copy_baseline(pg_port, one.stored))
    log(f"raw COPY of the same {one.stored:,} rows into cdr: {copy_rate:,.0f} rows/s")
    two = run_raters(processes=2, **common)  # type: ignore[arg-type]
    return RaterMeasurements(
        deck_lines=DECK_LINES,
        pricing_calls=events,
        pricing_rate=pricing_rate,
        one=one,
        two=two,
        copy_rows=one.stored,
        copy_rate=copy_rate,
        cores=os.cpu_count() or 1,
    )


def render_section(m: RaterMeasurements) -> str:
    """The rater section of docs/benchmarks.md: its table rows and how they were taken."""
    copy_share = m.one.rate / m.copy_rate if m.copy_rate else 0.0
    scale = m.two.rate / m.one.rate if m.one.rate else 0.0
    rows = [
        "| what | baseline | figure | ratio |",
        "|---|---:|---:|---:|",
        f"| rater, 1 process: CDRs priced and stored per s vs a raw COPY of the same rows into"
        f" `cdr`: rows/s | {m.copy_rate:,.0f} | {m.one.rate:,.0f} | {copy_share:.2f}x |",
        f"| rater, 2 processes vs 1 (topic of {PARTITIONS} partitions): CDRs priced and stored"
        f" per s | {m.one.rate:,.0f} | {m.two.rate:,.0f} | {scale:.2f}x |",
        f"| pricing alone (`rate_call`, {m.deck_lines:,}-line deck): calls/s | |"
        f" {m.pricing_rate:,.0f} | |",
        f"| RSS of a rater with the {m.deck_lines:,}-line deck loaded, after its run: MiB | |"
        f" {m.one.rss_mib or 0:,.0f} | |",
        f"| peak RSS of that rater over its run (deck load included): MiB | |"
        f" {m.one.peak_rss_mib or 0:,.0f} | |",
    ]
    notes = [
        f"- Feed: {m.one.events:,} `CdrSubmitted` events per run produced straight to a topic"
        f" of {PARTITIONS} partitions (keyed by cdr_id) before the raters start, so ingest is"
        " not measured. One tenant, its account's default package with a"
        f" {m.deck_lines:,}-line deck (NANP prefixes of 7 digits plus `1`), called numbers"
        f" drawn from {DISTINCT_NUMBERS:,} distinct ones (a PBX calls the same numbers"
        " again; each distinct number costs one phonenumbers read, about 0.1-0.4 ms, cached"
        " by `cdrmodel.phone`). The rater prices, stores (one INSERT from column arrays per"
        " batch of 1,000) and publishes every record on cdr.rated.v1, as in production.",
        "- Rate = records stored between 10% and 90% of the run / that time (the deck load"
        " at the first batch and the tail are outside it); 1 process stored all"
        f" {m.one.stored:,} in {m.one.total_seconds:.1f} s from its start, 2 processes all"
        f" {m.two.stored:,} in {m.two.total_seconds:.1f} s.",
        f"- Raw COPY: the {m.copy_rows:,} rows the single rater stored, read back and COPYed"
        " again (new cdr_ids) into the same table with asyncpg, in one transaction, then"
        " removed.",
        f"- Two processes on {m.cores} cores: PostgreSQL, Tansu and the raters share them, so"
        " a second rater gains only what the first left idle; the ratio says how much of"
        " a core the rater, not the database, was short of.",
        "- Pricing alone: one process, the same deck and number pool, no I/O.",
    ]
    return "\n## Rater\n\n" + "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n"


def main() -> None:
    """`python bench/rater_bench.py [events]`: the rater rows alone, on a throwaway PostgreSQL
    and Tansu, printed (`make bench` writes them into docs/benchmarks.md)."""
    import sys

    from stack import standalone

    events = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with standalone("rater") as infra:
        result = measure_rater(**infra.section_args(), events=events, distinct=DISTINCT_NUMBERS)
        print(render_section(result))


if __name__ == "__main__":
    main()
