"""The notifier rows of `make bench`: pushing rated CDRs to a CRM, measured alone.

The CRM is `bench/push_receiver.py`, an aiohttp server in a process of its own answering every
POST `{"Err":0}`. Each notifier run starts one notifier process (as `cdrflow dev` does) on
the bench's PostgreSQL and Tansu, with a topic namespace of its own, on a tenant of its own
that is deleted (with its subscriptions, deliveries and attempts) afterwards. Baselines of
the same run: a raw POST loop with the notifier's client library (aiohttp) and its
concurrency to the same receiver; the same nine subscriptions without a hanging tenth.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import orjson
import uvloop

from cdr_notifier.formats import encode, new_secret, sign
from cdr_notifier.service import webhook_id
from cdr_notifier.settings import NotifierSettings
from cdrflow_dev.processes import ServiceProcess
from cdrmodel.events import CdrRated
from cdrmodel.kafka import ALL_TOPICS, RATED, ensure_topics, make_producer, topic_name
from cdrmodel.record import render_record

RECEIVER = Path(__file__).resolve().parent / "push_receiver.py"
ADMIN_TOKEN = "notifier-bench-token"
ACCOUNT = "ACC"
HEALTHY = 9  # subscriptions of the hanging-endpoint rows, each to a port of its own
HANG_TIMEOUT = 2.0  # CDR_PUSH_TIMEOUT of those rows; the hanging CRM answers a second later
PACED_RATE = 500.0
THROUGHPUT_TARGET = 2_000.0
SHARE_TARGET = 0.60
LATENCY_TARGET_MS = 1_000.0
HANG_SHARE_TARGET = 0.90
# Pairs of hanging-endpoint runs (the nine alone, then with the tenth), alternating. One pair
# of ~5 s runs moved by a sixth between two runs of the same code here (0.84x, then 1.10x),
# so the row is the pair with the median ratio, and the notes list every pair.
HANG_PAIRS = 3
POLL_SECONDS = 0.1


def _default(name: str) -> Any:
    return NotifierSettings.model_fields[name].default


PUSH_CONCURRENCY: int = _default("push_concurrency")
ENDPOINT_CONCURRENCY: int = _default("push_endpoint_concurrency")
SUBSCRIPTION_CAP: int = _default("push_subscription_cap")
CLAIM_BATCH: int = _default("push_claim_batch")


@dataclass(frozen=True)
class DrainRun:
    """One notifier process working off a backlog inserted before it started."""

    rows: int  # deliveries counted (the healthy subscriptions')
    delivered: int
    window_seconds: float  # from 10% to 90% of what was delivered
    window_rows: int
    total_seconds: float  # from the process started to the last counted row delivered
    finished: bool
    attempts: int  # of the counted subscriptions
    other_attempts: int = 0  # of the subscriptions not counted (the hanging one)
    other_failed: int = 0
    cpu_share: float = 0.0  # of one core, the notifier process over the window

    @property
    def rate(self) -> float:
        return self.window_rows / self.window_seconds if self.window_seconds > 0 else 0.0


@dataclass(frozen=True)
class ClientRun:
    client: str
    requests: int
    errors: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class PacedRun:
    rate: float  # asked
    sent: int
    achieved: float  # events/s the feed kept
    attempted: int  # of those sent, with a first attempt by the end
    p50_ms: float
    p99_ms: float
    max_ms: float
    recorded_p50_ms: float  # publish -> delivery row (the recorder's transaction began)
    recorded_p99_ms: float
    dispatched_p50_ms: float  # delivery row -> first attempt
    dispatched_p99_ms: float


@dataclass(frozen=True)
class NotifierMeasurements:
    backlog: DrainRun
    clients: list[ClientRun]  # aiohttp first: the notifier's own library, the baseline
    # aiohttp again with as many in flight as the notifier keeps to one endpoint: the
    # baseline of the one-subscription backlog (the same client, the same concurrency).
    same_concurrency: ClientRun  # the mean of `same_runs`
    same_runs: tuple[ClientRun, ClientRun]  # just before the backlog row, and just after
    paced: PacedRun
    hang_pairs: list[tuple[DrainRun, DrainRun]]  # (alone, with the hanging one), in run order
    per_subscription: int
    warmup: float
    duration: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    versions: dict[str, str]
    cores: int

    @property
    def aiohttp(self) -> ClientRun:
        return self.clients[0]

    @property
    def median_pair(self) -> tuple[DrainRun, DrainRun]:
        """The pair whose with-hang/alone ratio is the median of the pairs'."""
        by_ratio = sorted(self.hang_pairs, key=lambda p: p[1].rate / p[0].rate if p[0].rate else 0)
        return by_ratio[len(by_ratio) // 2]

    @property
    def alone(self) -> DrainRun:
        return self.median_pair[0]

    @property
    def with_hang(self) -> DrainRun:
        return self.median_pair[1]


# -- feed -----------------------------------------------------------------------------------


def rated_record(tenant: str, cdr_id: uuid.UUID, i: int, now: datetime) -> dict[str, Any]:
    """The contract record of a rated outbound call, as the rater renders it."""
    duration = 1 + i % 900
    billed = -(-duration // 6) * 6
    rate = Decimal("0.0125")
    row = {
        "cdr_id": cdr_id,
        "database_id": tenant,
        "api_account": ACCOUNT,
        "external_id": f"pbx-{i}",
        "originating_number": "100",
        "destination_number": f"1613{5550000 + i % 10_000:07d}",
        "start_time": now - timedelta(seconds=600 + i % 3600),
        "duration": duration,
        "disposition": "ANSWERED",
        "ring_seconds": 4,
        "account_code": "sales",
        "extra": {},
        "rated": True,
        "unrated_reason": None,
        "direction": "outbound",
        "extension": "100",
        "account": "acme",
        "call_type": "national",
        "call_billing": "billed",
        "destination_name": "Canada, Ontario",
        "matched_prefix": "1613",
        "billed_seconds": billed,
        "rate": rate,
        "total": (rate * billed / 60).quantize(Decimal("0.00000001")),
        "cost": Decimal("0.00500000"),
        "currency": "USD",
    }
    return render_record(row, timezone="America/Toronto")


async def connect(pg_port: int) -> asyncpg.Connection:
    return await asyncpg.connect(
        host="127.0.0.1", port=pg_port, user="postgres", database="cdrflow"
    )


async def create_tenant(pg_port: int, tenant: str, subscriptions: dict[str, int]) -> None:
    """The tenant and its subscriptions ({id: receiver port}), JSON pushes, plain secrets
    (the notifier seals them at its start, as it does any stored before encryption)."""
    conn = await connect(pg_port)
    try:
        await conn.execute(
            "INSERT INTO tenant (database_id, name, country) VALUES ($1, 'notifier bench', 'US')",
            tenant,
        )
        await conn.executemany(
            "INSERT INTO subscription (database_id, subscription_id, url, format, secret)"
            " VALUES ($1, $2, $3, 'json', $4)",
            [
                (tenant, sub, f"http://127.0.0.1:{port}/crm/{sub}", new_secret())
                for sub, port in subscriptions.items()
            ],
        )
    finally:
        await conn.close()


async def copy_backlog(pg_port: int, tenant: str, subs: list[str], per_subscription: int) -> int:
    """`per_subscription` pending deliveries for each of `subs`, interleaved, by COPY: the rows
    the recorder makes of rated CDRs, all due now."""
    now = datetime.now(UTC)
    records = []
    for i in range(per_subscription):
        cdr_id = uuid.uuid4()
        payload = orjson.dumps(rated_record(tenant, cdr_id, i, now)).decode()
        for sub in subs:
            records.append(
                (tenant, sub, cdr_id, i + 1, webhook_id(tenant, sub, cdr_id, i + 1), payload)
            )
    conn = await connect(pg_port)
    try:
        await conn.copy_records_to_table(
            "delivery",
            records=records,
            columns=[
                "database_id",
                "subscription_id",
                "cdr_id",
                "feed_id",
                "webhook_id",
                "payload",
            ],
        )
    finally:
        await conn.close()
    return len(records)


async def settle_database(pg_port: int) -> None:
    """Every backlog run starts from the same state: the dead rows earlier runs left in `delivery` and
    `delivery_attempt` (each run's tenant is deleted after it) vacuumed, and the dirty pages
    written out. Without it, later runs met an autovacuum of hundreds of thousands of dead
    rows, or a checkpoint, in their window: in one `make bench`, the third pair of
    hanging-endpoint runs went at 1,341/s and 827/s with the notifier at 0.30 and 0.12 of a
    core (waiting on PostgreSQL) where the first pair went at 3,866/s and 4,148/s."""
    conn = await connect(pg_port)
    try:
        await conn.execute("VACUUM delivery, delivery_attempt")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def drop_tenant(pg_port: int, tenant: str) -> None:
    """The tenant, and by the foreign keys its subscriptions, deliveries and attempts."""
    conn = await connect(pg_port)
    try:
        await conn.execute("DELETE FROM tenant WHERE database_id = $1", tenant)
    finally:
        await conn.close()


# -- the processes --------------------------------------------------------------------------


class Bench:
    """What every notifier run shares: the database, the broker, the receiver, logging."""

    def __init__(
        self,
        *,
        pg_port: int,
        bootstrap: str,
        database_url: str,
        workdir: Path,
        free_port: Callable[[], int],
        log: Callable[[str], None],
    ) -> None:
        self.pg_port = pg_port
        self.bootstrap = bootstrap
        self.database_url = database_url
        self.workdir = workdir
        self.free_port = free_port
        self.log = log
        self.port = free_port()  # the receiver's one endpoint of the single-subscription rows
        self.healthy_ports = [free_port() for _ in range(HEALTHY)]
        self.hang_port = free_port()
        self._runs = 0

    @contextmanager
    def receiver(self) -> Iterator[ServiceProcess]:
        argv = [sys.executable, str(RECEIVER)]
        for port in (self.port, *self.healthy_ports):
            argv.append(f"--port={port}")
        argv += [f"--hang-port={self.hang_port}", f"--hang-seconds={HANG_TIMEOUT + 1}"]
        proc = ServiceProcess(
            "push receiver",
            self.port,
            {},
            log_path=self.workdir / "push_receiver.log",
            command=argv,
            ready_path="/ping",
        )
        proc.start()
        try:
            proc.wait_ready(30)
            yield proc
        finally:
            proc.stop()

    @contextmanager
    def notifier(self, **settings: str) -> Iterator[tuple[ServiceProcess, str]]:
        """A notifier process on a topic namespace of its own: (process, that namespace)."""
        self._runs += 1
        namespace = f"nb{self._runs}-{uuid.uuid4().hex[:6]}."
        asyncio.run(
            ensure_topics(
                self.bootstrap, [topic_name(t, namespace) for t in ALL_TOPICS], partitions=2
            )
        )
        env = {
            "CDR_DATABASE_URL": self.database_url,
            "CDR_KAFKA_BOOTSTRAP": self.bootstrap,
            "CDR_ADMIN_TOKEN": ADMIN_TOKEN,
            "CDR_ALLOW_PRIVATE_WEBHOOKS": "true",
            "CDR_LOG_LEVEL": "warning",
            "CDR_TOPIC_NAMESPACE": namespace,
            "CDR_NOTIFIER_GROUP": f"{namespace}notifier",
            **{f"CDR_{k.upper()}": v for k, v in settings.items()},
        }
        log_path = self.workdir / f"{namespace}notifier.log"
        proc = ServiceProcess("notifier", self.free_port(), env, log_path=log_path)
        proc.start()
        try:
            yield proc, namespace
        except BaseException:
            tail = (
                log_path.read_text(errors="replace").splitlines()[-15:] if log_path.exists() else []
            )
            if tail:
                print(f"--- {log_path.name}\n" + "\n".join(tail), file=sys.stderr)
            raise
        finally:
            proc.stop()


# -- a backlog ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Sample = tuple[float, int, float]  # (seconds since the start, rows delivered, notifier CPU s)


# Successful attempts of the counted subscriptions since the last poll: a range of the
# attempt table's key, so a poll costs the rows that are new, not the whole table (counting
# `delivery` rows by status took 15 ms a poll at 20,000 rows, 15% of a core at 10 polls/s,
# taken from the processes measured).
_NEW_DELIVERED = (
    "SELECT count(*) FILTER (WHERE a.error IS NULL AND d.subscription_id = ANY($3::text[])),"
    " max(a.id) FROM delivery_attempt a JOIN delivery d ON d.id = a.delivery_id"
    " WHERE a.id > $1 AND d.database_id = $2"
)
_DELIVERED = (
    "SELECT count(*) FROM delivery WHERE database_id = $1"
    " AND subscription_id = ANY($2::text[]) AND status = 'delivered'"
)


async def watch_delivered(
    pg_port: int,
    tenant: str,
    subs: list[str],
    expected: int,
    timeout: float,
    proc: ServiceProcess,
) -> list[Sample]:
    """Rows of `subs` delivered (and the notifier's CPU), sampled until all are or `timeout`.
    Counted from successful attempts as they are recorded (each delivery of a healthy CRM
    succeeds once), confirmed from the `delivery` table at the end."""
    assert proc.proc is not None
    pid = proc.proc.pid
    conn = await connect(pg_port)
    try:
        began = time.perf_counter()
        samples: list[Sample] = [(0.0, 0, 0.0)]
        count, last = 0, 0
        while True:
            new, top = await conn.fetchrow(_NEW_DELIVERED, last, tenant, subs)
            count, last = count + int(new), top or last
            now = time.perf_counter() - began
            if not proc.alive():
                raise RuntimeError(f"the notifier exited after {count} of {expected} deliveries")
            if count >= expected:
                # Confirmed in the table itself; any shortfall is waited for as before.
                count = int(await conn.fetchval(_DELIVERED, tenant, subs))
            samples.append((now, count, cpu_seconds(pid)))
            if count >= expected or now > timeout:
                return samples
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await conn.close()


def steady_window(samples: list[Sample]) -> tuple[float, int, float]:
    """(seconds, rows, notifier CPU seconds) between the samples where 10% and 90% of the
    final count were reached."""
    reached = samples[-1][1]
    lo = next(s for s in samples if s[1] >= 0.1 * reached)
    hi = next(s for s in samples if s[1] >= 0.9 * reached)
    if hi[0] <= lo[0]:
        # Both marks passed within one poll (a poll that took seconds was seen here once in
        # a dozen runs): the whole run, from the start to the last sample, rather than 0/s.
        lo, hi = samples[0], samples[-1]
    return hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]


async def attempt_counts(pg_port: int, tenant: str, subs: list[str]) -> tuple[int, int]:
    """(attempts, failed attempts) of `subs`."""
    conn = await connect(pg_port)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(*) FILTER (WHERE a.error IS NOT NULL) AS failed"
            " FROM delivery_attempt a JOIN delivery d ON d.id = a.delivery_id"
            " WHERE d.database_id = $1 AND d.subscription_id = ANY($2::text[])",
            tenant,
            subs,
        )
        return int(row["n"]), int(row["failed"])
    finally:
        await conn.close()


def run_backlog(
    bench: Bench,
    *,
    label: str,
    subscriptions: dict[str, int],
    counted: list[str],
    per_subscription: int,
    timeout: float,
    **settings: str,
) -> DrainRun:
    """`per_subscription` due deliveries for each subscription, then one notifier started on
    them; timed until every row of the `counted` subscriptions is delivered."""
    tenant = f"NOTIFYBENCH{label}"
    # Before its rows are copied in: they are measured as fresh as the recorder's would be.
    asyncio.run(settle_database(bench.pg_port))
    asyncio.run(create_tenant(bench.pg_port, tenant, subscriptions))
    try:
        rows = asyncio.run(
            copy_backlog(bench.pg_port, tenant, list(subscriptions), per_subscription)
        )
        expected = per_subscription * len(counted)
        bench.log(
            f"notifier {label}: {rows:,} pending deliveries ({len(subscriptions)} subscriptions),"
            f" timing {expected:,}"
        )
        with bench.notifier(**settings) as (proc, _):
            samples = asyncio.run(
                watch_delivered(bench.pg_port, tenant, counted, expected, timeout, proc)
            )
        others = [s for s in subscriptions if s not in counted]
        attempts, failed = asyncio.run(attempt_counts(bench.pg_port, tenant, counted))
        other_attempts, other_failed = (
            asyncio.run(attempt_counts(bench.pg_port, tenant, others)) if others else (0, 0)
        )
    finally:
        asyncio.run(drop_tenant(bench.pg_port, tenant))
    window, window_rows, cpu = steady_window(samples)
    delivered = samples[-1][1]
    finished = delivered >= expected
    run = DrainRun(
        rows=expected,
        delivered=delivered,
        window_seconds=window,
        window_rows=window_rows,
        total_seconds=samples[-1][0],
        finished=finished,
        attempts=attempts,
        other_attempts=other_attempts,
        other_failed=other_failed,
        cpu_share=cpu / window if window > 0 else 0.0,
    )
    bench.log(
        f"notifier {label}: {run.rate:,.0f} deliveries/s (10%-90% window; notifier CPU"
        f" {run.cpu_share:.2f} core), {delivered:,} of {expected:,} delivered in"
        f" {run.total_seconds:.1f} s, {attempts:,} attempts ({failed:,} failed)"
        + ("" if finished else " (timed out)")
        + (
            f"; other subscriptions: {other_attempts:,} attempts, {other_failed:,} failed"
            if others
            else ""
        )
    )
    return run


# -- raw POST loops ---------------------------------------------------------------------------


def push_bodies(count: int = 256) -> list[tuple[bytes, dict[str, str]]]:
    """What the notifier sends for `count` deliveries: JSON body and signed headers."""
    now = datetime.now(UTC)
    secret = new_secret()
    out = []
    for i in range(count):
        cdr_id = uuid.uuid4()
        body, content_type = encode(
            "json", rated_record("RAW", cdr_id, i, now), xmlrpc_method="cdr.notify"
        )
        hook = webhook_id("RAW", "crm", cdr_id, i + 1)
        ts = int(time.time())
        headers = {
            "content-type": content_type,
            "user-agent": "cdrflow-notifier/0.1",
            "webhook-id": hook,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(secret, hook, ts, body),
        }
        out.append((body, headers))
    return out


async def post_loop(
    post: Callable[[int], Awaitable[bool]], *, concurrency: int, seconds: float, warmup: float
) -> tuple[int, int]:
    """`concurrency` workers POSTing back to back: (answered `{"Err":0}`, other outcomes),
    counted over the `seconds` after `warmup`."""
    began = time.perf_counter()
    start, end = began + warmup, began + warmup + seconds
    ok = bad = 0

    async def worker(k: int) -> None:
        nonlocal ok, bad
        i = k
        while time.perf_counter() < end:
            good = await post(i)
            i += concurrency
            if start <= time.perf_counter() < end:
                if good:
                    ok += 1
                else:
                    bad += 1

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return ok, bad


async def raw_aiohttp(url: str, concurrency: int, seconds: float, warmup: float) -> tuple[int, int]:
    bodies = push_bodies()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post(i: int) -> bool:
            body, headers = bodies[i % len(bodies)]
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    reply = await resp.read()
                    return resp.status == 200 and b'"Err":0' in reply
            except (aiohttp.ClientError, TimeoutError):
                return False

        return await post_loop(post, concurrency=concurrency, seconds=seconds, warmup=warmup)


async def raw_httpx(
    url: str, concurrency: int, seconds: float, warmup: float, *, aiohttp_transport: bool
) -> tuple[int, int]:
    bodies = push_bodies()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client: httpx.AsyncClient
    if aiohttp_transport:
        from httpx_aiohttp import HttpxAiohttpClient

        client = HttpxAiohttpClient(limits=limits, timeout=10)
    else:
        client = httpx.AsyncClient(limits=limits, timeout=10)
    async with client:

        async def post(i: int) -> bool:
            body, headers = bodies[i % len(bodies)]
            try:
                resp = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                return False
            return resp.status_code == 200 and b'"Err":0' in resp.content

        return await post_loop(post, concurrency=concurrency, seconds=seconds, warmup=warmup)


def run_client(
    bench: Bench, client: str, *, concurrency: int, seconds: float, warmup: float
) -> ClientRun | None:
    url = f"http://127.0.0.1:{bench.port}/crm/raw"
    loops: dict[str, Callable[[], Coroutine[Any, Any, tuple[int, int]]]] = {
        "aiohttp": lambda: raw_aiohttp(url, concurrency, seconds, warmup),
        "httpx": lambda: raw_httpx(url, concurrency, seconds, warmup, aiohttp_transport=False),
        "httpx-aiohttp": lambda: raw_httpx(
            url, concurrency, seconds, warmup, aiohttp_transport=True
        ),
    }
    if client == "httpx-aiohttp" and not _version("httpx-aiohttp"):
        bench.log("httpx-aiohttp is not installed: skipping its row")
        return None
    # uvloop, as the notifier's uvicorn runs it.
    ok, bad = uvloop.run(loops[client]())
    run = ClientRun(client, ok, bad, seconds)
    bench.log(
        f"raw POST loop, {client}, {concurrency} in flight: {run.rate:,.0f} req/s, {bad} errors"
    )
    return run


# -- a steady feed --------------------------------------------------------------------------


def _rated_events(tenant: str, count: int, first_feed_id: int) -> list[tuple[uuid.UUID, bytes]]:
    now = datetime.now(UTC)
    out = []
    for i in range(count):
        cdr_id = uuid.uuid4()
        event = CdrRated(
            cdr_id=cdr_id,
            database_id=tenant,
            feed_id=first_feed_id + i,
            record=rated_record(tenant, cdr_id, i, now),
        )
        out.append((cdr_id, event.model_dump_json().encode()))
    return out


async def paced_feed(
    bootstrap: str,
    topic: str,
    tenant: str,
    events: list[tuple[uuid.UUID, bytes]],
    rate: float,
    sent: dict[uuid.UUID, float] | None,
    until: Callable[[], Awaitable[bool]] | None = None,
) -> float:
    """`events` on `topic` at `rate` a second (open loop; keyed by tenant as the rater keys
    them, its producer settings), each send's wall time into `sent`; with `until`, stops
    early once it answers True (checked every half second). Answers the rate kept."""
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        acks = []
        began = time.perf_counter()
        next_check = began + 0.5
        n = 0
        while n < len(events):
            due = min(len(events), int((time.perf_counter() - began) * rate) + 1)
            while n < due:
                cdr_id, value = events[n]
                if sent is not None:
                    sent[cdr_id] = time.time()
                acks.append(await producer.send(topic, value=value, key=tenant.encode()))
                n += 1
            if until is not None and time.perf_counter() >= next_check:
                next_check += 0.5
                if await until():
                    break
            await asyncio.sleep(0.002)
        took = time.perf_counter() - began
        await asyncio.gather(*acks)
        return n / took if took > 0 else 0.0
    finally:
        await producer.stop()


def _pct(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)] if ordered else 0.0


async def first_attempts(pg_port: int, tenant: str) -> dict[uuid.UUID, tuple[float, float]]:
    """cdr_id -> (delivery row created, first attempt started), epoch seconds."""
    conn = await connect(pg_port)
    try:
        rows = await conn.fetch(
            "SELECT d.cdr_id, extract(epoch FROM d.created_at)::float8 AS created,"
            " extract(epoch FROM min(a.at))::float8 AS first"
            " FROM delivery d JOIN delivery_attempt a ON a.delivery_id = d.id"
            " WHERE d.database_id = $1 GROUP BY d.id",
            tenant,
        )
        return {r["cdr_id"]: (r["created"], r["first"]) for r in rows}
    finally:
        await conn.close()


async def count_attempted(pg_port: int, tenant: str, min_feed_id: int) -> int:
    conn = await connect(pg_port)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(DISTINCT a.delivery_id) FROM delivery_attempt a"
                " JOIN delivery d ON d.id = a.delivery_id"
                " WHERE d.database_id = $1 AND d.feed_id >= $2",
                tenant,
                min_feed_id,
            )
        )
    finally:
        await conn.close()


def run_paced(
    bench: Bench, *, seconds: float, rate: float = PACED_RATE, **settings: str
) -> PacedRun:
    """cdr.rated.v1 events at a steady `rate` to a running notifier (one subscription): the
    time from each event's publish to its first push attempt."""
    tenant = "NOTIFYBENCHPACED"
    asyncio.run(create_tenant(bench.pg_port, tenant, {"crm": bench.port}))
    try:
        with bench.notifier(**settings) as (proc, namespace):
            proc.wait_ready(90)
            topic = topic_name(RATED, namespace)
            # Warm-up, not measured: until the consumer has joined its group and a pushed
            # record shows the whole path works (30 s at most).
            warm = _rated_events(tenant, int(30 * rate), 1)

            async def delivered_any() -> bool:
                return await count_attempted(bench.pg_port, tenant, 1) > 0

            began = time.perf_counter()
            asyncio.run(paced_feed(bench.bootstrap, topic, tenant, warm, rate, None, delivered_any))
            bench.log(f"paced feed: warmed up in {time.perf_counter() - began:.1f} s")
            events = _rated_events(tenant, int(seconds * rate), 10_000_000)
            sent: dict[uuid.UUID, float] = {}
            bench.log(f"paced feed: {len(events):,} events at {rate:,.0f}/s")
            achieved = asyncio.run(paced_feed(bench.bootstrap, topic, tenant, events, rate, sent))

            async def settle() -> int:
                deadline = time.perf_counter() + 30
                while True:
                    done = await count_attempted(bench.pg_port, tenant, 10_000_000)
                    if done >= len(events) or time.perf_counter() > deadline:
                        return done
                    await asyncio.sleep(0.2)

            asyncio.run(settle())
        seen = asyncio.run(first_attempts(bench.pg_port, tenant))
    finally:
        asyncio.run(drop_tenant(bench.pg_port, tenant))
    total, recorded, dispatched = [], [], []
    for cdr_id, at in sent.items():
        found = seen.get(cdr_id)
        if found is None:
            continue
        created, first = found
        total.append((first - at) * 1000)
        recorded.append((created - at) * 1000)
        dispatched.append((first - created) * 1000)
    run = PacedRun(
        rate=rate,
        sent=len(sent),
        achieved=achieved,
        attempted=len(total),
        p50_ms=_pct(total, 0.5),
        p99_ms=_pct(total, 0.99),
        max_ms=max(total, default=0.0),
        recorded_p50_ms=_pct(recorded, 0.5),
        recorded_p99_ms=_pct(recorded, 0.99),
        dispatched_p50_ms=_pct(dispatched, 0.5),
        dispatched_p99_ms=_pct(dispatched, 0.99),
    )
    bench.log(
        f"paced feed: {run.attempted:,} of {run.sent:,} attempted; publish to first attempt"
        f" p50 {run.p50_ms:.0f} ms, p99 {run.p99_ms:.0f} ms, max {run.max_ms:.0f} ms"
        f" (to the row: p99 {run.recorded_p99_ms:.0f} ms; row to attempt: p99"
        f" {run.dispatched_p99_ms:.0f} ms)"
    )
    return run


# -- the section ----------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def measure_notifier(
    *,
    pg_port: int,
    bootstrap: str,
    database_url: str,
    workdir: Path,
    free_port: Callable[[], int],
    log: Callable[[str], None],
    deliveries: int,
    duration: float = 5.0,
    warmup: float = 1.0,
    paced_seconds: float = 20.0,
    drain_timeout: float = 60.0,
) -> NotifierMeasurements:
    """Every notifier row, on an already running PostgreSQL and Tansu (other services stopped)."""
    load_before = os.getloadavg()
    bench = Bench(
        pg_port=pg_port,
        bootstrap=bootstrap,
        database_url=database_url,
        workdir=workdir,
        free_port=free_port,
        log=log,
    )
    with bench.receiver():
        log(f"push receiver: ready on {HEALTHY + 2} ports")
        clients = [
            run
            for name in ("aiohttp", "httpx", "httpx-aiohttp")
            if (
                run := run_client(
                    bench, name, concurrency=PUSH_CONCURRENCY, seconds=duration, warmup=warmup
                )
            )
            is not None
        ]
        # The baseline of the backlog row just before it and again just after: the speed of
        # these shared cores drifts by a third within minutes, and the mean of the two
        # brackets the backlog's time.
        before = run_client(
            bench, "aiohttp", concurrency=ENDPOINT_CONCURRENCY, seconds=duration, warmup=warmup
        )
        backlog = run_backlog(
            bench,
            label="ONE",
            subscriptions={"crm": bench.port},
            counted=["crm"],
            per_subscription=deliveries,
            timeout=drain_timeout,
        )
        after = run_client(
            bench, "aiohttp", concurrency=ENDPOINT_CONCURRENCY, seconds=duration, warmup=warmup
        )
        assert before is not None and after is not None
        same = ClientRun(
            "aiohttp",
            before.requests + after.requests,
            before.errors + after.errors,
            before.seconds + after.seconds,
        )
        paced = run_paced(bench, seconds=paced_seconds)
        healthy = {f"crm{k}": port for k, port in enumerate(bench.healthy_ports)}
        per_sub = max(1, deliveries // HEALTHY)
        common: dict[str, Any] = {
            "counted": list(healthy),
            "per_subscription": per_sub,
            "timeout": drain_timeout,
            "push_timeout": f"{HANG_TIMEOUT:g}",
        }
        hang_pairs = []
        for n in range(HANG_PAIRS):
            alone = run_backlog(bench, label=f"NINE{n}", subscriptions=healthy, **common)
            with_hang = run_backlog(
                bench,
                label=f"TEN{n}",
                subscriptions={**healthy, "hangs": bench.hang_port},
                **common,
            )
            hang_pairs.append((alone, with_hang))
    return NotifierMeasurements(
        backlog=backlog,
        clients=clients,
        same_concurrency=same,
        same_runs=(before, after),
        paced=paced,
        hang_pairs=hang_pairs,
        per_subscription=per_sub,
        warmup=warmup,
        duration=duration,
        load_before=load_before,
        load_after=os.getloadavg(),
        versions={d: _version(d) for d in ("aiohttp", "httpx", "httpx-aiohttp")},
        cores=os.cpu_count() or 1,
    )


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _x(figure: float, baseline: float) -> str:
    return f"{figure / baseline:.2f}x" if baseline else "n/a"


def _drain(run: DrainRun) -> str:
    if run.finished:
        return f"all {run.rows:,} delivered {run.total_seconds:.1f} s after the process started"
    return (
        f"only {run.delivered:,} of {run.rows:,} delivered when the bench stopped waiting,"
        f" {run.total_seconds:.0f} s after the process started (rate from what was delivered)"
    )


def render_section(m: NotifierMeasurements) -> str:
    """The notifier section of docs/benchmarks.md: its table rows and how they were taken."""
    raw, one, paced, same = m.aiohttp, m.backlog, m.paced, m.same_concurrency
    by_name = {c.client: c for c in m.clients}
    c = PUSH_CONCURRENCY
    unfinished = "" if one.finished else " (did NOT finish; see notes)"
    rows = [
        "| what | baseline | figure | ratio |",
        "|---|---:|---:|---:|",
        f"| notifier, 1 process, a backlog of {one.rows:,} deliveries to one subscription:"
        f" deliveries/s vs a raw aiohttp POST loop with the notifier's {ENDPOINT_CONCURRENCY}"
        f" in flight to one endpoint, to the same receiver (target {SHARE_TARGET:.2f}x)"
        f"{unfinished} | {_n(same.rate)} | {_n(one.rate)} | {_x(one.rate, same.rate)} |",
        f"| the same backlog vs the raw aiohttp loop with {c} in flight | {_n(raw.rate)} |"
        f" {_n(one.rate)} | {_x(one.rate, raw.rate)} |",
        f"| those notifier deliveries/s vs the {THROUGHPUT_TARGET:,.0f}/s target |"
        f" {_n(THROUGHPUT_TARGET)} | {_n(one.rate)} | {_x(one.rate, THROUGHPUT_TARGET)} |",
        f"| raw POST loop, {c} in flight, aiohttp {m.versions['aiohttp']} ClientSession"
        f" (the notifier's client): req/s | | {_n(raw.rate)} | |",
    ]
    for name, what in (
        ("httpx", f"httpx {m.versions['httpx']} AsyncClient"),
        (
            "httpx-aiohttp",
            f"httpx with the httpx-aiohttp {m.versions['httpx-aiohttp']} transport",
        ),
    ):
        run = by_name.get(name)
        if run is not None:
            rows.append(
                f"| raw POST loop, {c} in flight, {what} vs aiohttp: req/s | {_n(raw.rate)} |"
                f" {_n(run.rate)} | {_x(run.rate, raw.rate)} |"
            )
    rows += [
        f"| rated CDRs at a steady {paced.rate:,.0f}/s on cdr.rated.v1: publish to first push"
        f" attempt, p50, ms, vs the {LATENCY_TARGET_MS:,.0f} ms target |"
        f" {_n(LATENCY_TARGET_MS)} | {_n(paced.p50_ms)} | {_x(paced.p50_ms, LATENCY_TARGET_MS)} |",
        f"| the same, p99, ms, vs the {LATENCY_TARGET_MS:,.0f} ms target |"
        f" {_n(LATENCY_TARGET_MS)} | {_n(paced.p99_ms)} | {_x(paced.p99_ms, LATENCY_TARGET_MS)} |",
        f"| {HEALTHY + 1} subscriptions on {HEALTHY + 1} endpoints, one hanging past"
        f" CDR_PUSH_TIMEOUT={HANG_TIMEOUT:g} s: deliveries/s of the {HEALTHY} healthy vs the"
        f" same {HEALTHY} alone (target {HANG_SHARE_TARGET:.2f}x) | {_n(m.alone.rate)} |"
        f" {_n(m.with_hang.rate)} | {_x(m.with_hang.rate, m.alone.rate)} |",
    ]
    hang = m.with_hang
    notes = [
        "- Receiver: `bench/push_receiver.py`, one aiohttp server process (uvloop, no access"
        f' log) listening on {HEALTHY + 2} loopback ports, answering every POST `{{"Err":0}}`'
        " after reading its body; on the same cores as the notifier, PostgreSQL and the"
        " load. Every notifier run is one `python -m cdr_notifier` process (one uvicorn"
        f" worker) with its defaults: CDR_PUSH_CONCURRENCY={c},"
        f" CDR_PUSH_ENDPOINT_CONCURRENCY={ENDPOINT_CONCURRENCY},"
        f" CDR_PUSH_SUBSCRIPTION_CAP={SUBSCRIPTION_CAP}, CDR_PUSH_CLAIM_BATCH={CLAIM_BATCH};"
        " each on a tenant of its own, deleted afterwards with its deliveries; before each"
        " backlog run, `VACUUM delivery, delivery_attempt` and a `CHECKPOINT`, so that no run"
        " meets the dead rows and dirty pages of the runs before it.",
        f"- Backlog: {one.rows:,} pending `delivery` rows (the JSON record the rater renders"
        " for a rated call, about 670 bytes, one subscription, plain `whsec_` secret) COPYed"
        " in before the notifier starts; rate = rows delivered between 10% and 90% of those"
        f" delivered / that time, polled every {POLL_SECONDS:g} s (successful attempts recorded"
        " since the last poll, confirmed from the `delivery` table at the end);"
        f" {_drain(one)}; {one.attempts:,} attempts. With one endpoint the notifier keeps at"
        f" most {min(c, ENDPOINT_CONCURRENCY, SUBSCRIPTION_CAP)} pushes in flight (its"
        f" per-endpoint limit), the raw loop {c}. The notifier process used"
        f" {one.cpu_share:.2f} of a core over the window.",
        f"- Raw POST loops: {c} workers POSTing back to back, each a body and signed headers"
        " like the notifier's (precomputed, so neither signing nor the database is in them),"
        f" reading the answer and checking `Err`; {m.warmup:g} s warm-up, then {m.duration:g} s"
        f" counted; in the bench's process under uvloop (as the notifier runs), connection"
        f" pools of as many as in flight. The {ENDPOINT_CONCURRENCY}-in-flight baseline of the"
        f" backlog row is the mean of a run just before it ({_n(m.same_runs[0].rate)} req/s)"
        f" and one just after ({_n(m.same_runs[1].rate)} req/s). httpx is kept out of the push"
        " path for this reason (encode/httpx issue 3215).",
        f"- Steady feed: `CdrRated` events produced at {paced.rate:,.0f}/s (open loop; kept"
        f" {paced.achieved:,.0f}/s) by an aiokafka producer with the rater's settings (acks=all,"
        " linger 5 ms, keyed by tenant) to the topic of a running notifier with one"
        " subscription, after an unmeasured warm-up until a first push was seen;"
        f" {paced.attempted:,} of {paced.sent:,} measured events had a first attempt."
        " Latency = the attempt's start (`delivery_attempt.at`) minus the wall time of the"
        f" event's `send()`; max {paced.max_ms:,.0f} ms. Split: publish to the delivery row"
        f" (`created_at`, the recorder's transaction start) p50 {paced.recorded_p50_ms:,.0f} ms,"
        f" p99 {paced.recorded_p99_ms:,.0f} ms; row to first attempt p50"
        f" {paced.dispatched_p50_ms:,.0f} ms, p99 {paced.dispatched_p99_ms:,.0f} ms.",
        f"- Hanging endpoint: {m.per_subscription:,} pending deliveries for each subscription"
        f" (interleaved), each subscription to a port of its own; the tenth port answers"
        f" {HANG_TIMEOUT + 1:g} s after the request, past CDR_PUSH_TIMEOUT={HANG_TIMEOUT:g} s"
        f" (set for both runs). Rate of the nine as in the backlog row. {HANG_PAIRS} pairs,"
        " alone then with the hanging one, alternating; the row is the pair of the median"
        " ratio. Every pair, alone / with the hanging one: "
        + "; ".join(f"{_n(a.rate)} / {_n(h.rate)} ({_x(h.rate, a.rate)})" for a, h in m.hang_pairs)
        + ". The median pair alone: "
        f"{_drain(m.alone)}, the notifier using {m.alone.cpu_share:.2f} of a core. With the"
        f" hanging one: {_drain(hang)} ({hang.cpu_share:.2f} of a core); the hanging subscription"
        f" took {hang.other_attempts:,} attempts ({hang.other_failed:,} failed) in that time,"
        " its breaker holding the rest back.",
        f"- Machine: {m.cores} cores shared with whatever else runs; load average (1, 5, 15"
        f" min) {_load(m.load_before)} when this section started, {_load(m.load_after)} when"
        " it ended.",
    ]
    return "\n## Notifier\n\n" + "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n"


def _load(avg: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in avg)


def main() -> None:
    """`python bench/notifier_bench.py [deliveries]`: the notifier rows alone, on a throwaway
    PostgreSQL and Tansu, printed (`make bench` writes them into docs/benchmarks.md)."""
    from stack import standalone

    deliveries = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with standalone("notifier") as infra:
        result = measure_notifier(**infra.section_args(), deliveries=deliveries)
        print(render_section(result))


if __name__ == "__main__":
    main()
