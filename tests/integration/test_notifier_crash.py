"""kill -9 the notifier while it pushes 2,000 CDRs, or run two notifiers on one delivery table:
every CDR reaches the CRM at least once with one webhook-id, each delivery is recorded delivered
once, and no delivery is ever pushed by two notifiers at the same time."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import httpx
import orjson
import pytest

from cdrflow_dev.infra import free_port
from cdrflow_dev.processes import ServiceProcess
from cdrmodel.db import asyncpg_dsn
from tests.conftest import Infra
from tests.helpers import (
    ADMIN_TOKEN,
    Receiver,
    Tenant,
    create_tenant,
    running,
    submit_all,
    wait_for,
)

pytestmark = pytest.mark.slow

NAMESPACE = "ncrash."  # its own topics and consumer groups: the shared stack is not disturbed
OK = (200, '{"Err":0,"Errdesc":"OK"}', {"content-type": "application/json"})
# A short push timeout keeps the lease short (Dispatcher.__init__ derives it from the timeout):
# a restarted notifier waits that long for the rows the killed one held, so the test measures
# the lease from those rows. A breaker that opens on a passing stall waits 1 s, not 30 s.
NOTIFIER_ENV = {
    "CDR_TOPIC_NAMESPACE": NAMESPACE,
    "CDR_NOTIFIER_GROUP": "ncrash-notifier",
    "CDR_PUSH_TIMEOUT": "2",
    "CDR_PUSH_SUBSCRIPTION_CAP": "64",
    "CDR_PUSH_ENDPOINT_CONCURRENCY": "64",
    "CDR_RETRY_BASE_SECONDS": "0.1",
    "CDR_RETRY_MAX_SECONDS": "1",
    "CDR_BREAKER_OPEN_SECONDS": "1",
}


DATABASE = "ncrash"


@pytest.fixture(scope="module")
def database_url(infra: Infra) -> Iterator[str]:
    """A database of its own: every notifier claims from the `delivery` table of its database,
    so the session stack's notifier must not see (and push) these tests' deliveries."""
    with infra.own_database(DATABASE) as url:
        yield url


@pytest.fixture(scope="module")
def pipeline(infra: Infra, database_url: str) -> Iterator[dict[str, ServiceProcess]]:
    """Ingest and rater on the namespace's topics; each test starts its own notifiers."""
    infra.create_topics(NAMESPACE)
    env = infra.env(
        CDR_TOPIC_NAMESPACE=NAMESPACE, CDR_RATER_GROUP="ncrash-rater", CDR_DATABASE_URL=database_url
    )
    procs = {
        name: ServiceProcess(name, free_port(), env, log_path=infra.logs / f"ncrash-{name}.log")
        for name in ("ingest", "rater")
    }
    with running(procs.values()):
        yield procs


@pytest.fixture
def notifier_factory(infra: Infra, database_url: str) -> Iterator[Callable[[str], ServiceProcess]]:
    """Makes notifier processes (not started) on the namespace; all are stopped afterwards."""
    made: list[ServiceProcess] = []

    def make(name: str) -> ServiceProcess:
        proc = ServiceProcess(
            "notifier",
            free_port(),
            infra.env(**NOTIFIER_ENV, CDR_DATABASE_URL=database_url),
            log_path=infra.logs / f"ncrash-{name}.log",
        )
        made.append(proc)
        return proc

    try:
        yield make
    finally:
        for proc in made:
            proc.stop()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    yield conn
    await conn.close()


async def _ready(*procs: ServiceProcess) -> None:
    """Started and ready, waited for off the event loop: the receivers live on it."""
    for proc in procs:
        proc.start()
    await asyncio.gather(*(asyncio.to_thread(proc.wait_ready, 90) for proc in procs))


async def _subscribe(notifier_url: str, tenant: Tenant, url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        resp = await client.put(
            f"{notifier_url}/v1/admin/tenants/{tenant.database_id}/subscriptions/crm",
            json={"url": url, "format": "json"},
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert resp.status_code == 200, resp.text


async def _count(db: asyncpg.Connection, sql: str, *args: object) -> int:
    return int(await db.fetchval(sql, *args))


async def _stored_cdr_ids(db: asyncpg.Connection, database_id: str) -> set[str]:
    rows = await db.fetch("SELECT cdr_id FROM cdr WHERE database_id = $1", database_id)
    return {str(r["cdr_id"]) for r in rows}


def _webhook_ids_by_cdr(requests: list[tuple[dict[str, str], bytes]]) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for headers, body in requests:
        seen[orjson.loads(body)["cdr_id"]].add(headers["webhook-id"])
    return seen


async def test_notifier_killed_mid_delivery_delivers_every_cdr_at_least_once(
    pipeline: dict[str, ServiceProcess],
    notifier_factory: Callable[[str], ServiceProcess],
    db: asyncpg.Connection,
) -> None:
    total, kill_at = 2000, 500
    ingest, rater = pipeline["ingest"], pipeline["rater"]
    notifier = notifier_factory("notifier")
    await _ready(notifier)
    tenant = await create_tenant(rater.url)
    dbid = tenant.database_id
    killed = asyncio.Event()

    def reply(n: int) -> tuple[int, str, dict[str, str]]:
        # Killed from inside a push: this request (and any others in flight) is answered to
        # nobody, so its outcome is never written and the delivery must be pushed again.
        if n == kill_at:
            notifier.kill()
            killed.set()
        return OK

    receiver = Receiver(reply=reply)
    await receiver.start()
    try:
        await _subscribe(notifier.url, tenant, receiver.url)
        sending = asyncio.create_task(submit_all(ingest.url, tenant, total, prefix="n"))
        await wait_for(killed.is_set, timeout=60, what=f"{kill_at} pushes before the kill")

        # What the killed notifier left: rows leased to nobody, for its lease.
        left = await db.fetchrow(
            "SELECT count(*) AS n, max(locked_until - updated_at) AS lease FROM delivery"
            " WHERE database_id = $1 AND status = 'pending' AND locked_until > now()",
            dbid,
        )
        assert left["n"] >= 1, "the kill left no delivery leased; the test proves nothing"
        lease = left["lease"].total_seconds()
        assert lease <= 40, f"a lease of {lease:.0f} s does not fit the test's budget"
        delivered_at_kill = await _count(
            db,
            "SELECT count(*) FROM delivery WHERE database_id = $1 AND status = 'delivered'",
            dbid,
        )
        assert delivered_at_kill < total, "all delivered before the kill; the test proves nothing"

        await _ready(notifier)
        codes = list((await sending).values())
        assert codes.count("0") == total, f"ingest answers: {set(codes)}"

        async def all_delivered() -> bool:
            if len(_webhook_ids_by_cdr(receiver.requests)) < total:
                return False
            return total == await _count(
                db,
                "SELECT count(*) FROM delivery WHERE database_id = $1 AND status = 'delivered'",
                dbid,
            )

        # The rows the killed notifier held come back once their lease expires.
        await wait_for(
            all_delivered, timeout=lease + 25, interval=0.5, what="every CDR pushed and delivered"
        )

        stored = await _stored_cdr_ids(db, dbid)
        assert len(stored) == total
        received = _webhook_ids_by_cdr(receiver.requests)
        assert set(received) == stored, "a CDR never reached the CRM"

        rows = await db.fetch(
            "SELECT d.cdr_id, d.webhook_id, d.status,"
            " count(a.id) FILTER (WHERE a.error IS NULL) AS ok"
            " FROM delivery d LEFT JOIN delivery_attempt a ON a.delivery_id = d.id"
            " WHERE d.database_id = $1 GROUP BY d.id",
            dbid,
        )
        assert len(rows) == total and {str(r["cdr_id"]) for r in rows} == stored
        assert all(r["status"] == "delivered" for r in rows)
        not_once = [str(r["cdr_id"]) for r in rows if r["ok"] != 1]
        assert not not_once, f"{len(not_once)} deliveries without exactly one recorded success"

        # Re-pushed, as at-least-once allows, but always under the delivery's one webhook-id.
        by_row = {str(r["cdr_id"]): r["webhook_id"] for r in rows}
        assert all(ids == {by_row[cdr_id]} for cdr_id, ids in received.items())
        in_flight = orjson.loads(receiver.requests[kill_at - 1][1])["cdr_id"]
        pushes = [orjson.loads(body)["cdr_id"] for _, body in receiver.requests]
        assert pushes.count(in_flight) >= 2, "the push cut by the kill was never made again"
    finally:
        await receiver.stop()


def _overlapping(receiver: Receiver) -> dict[str, list[tuple[float, float]]]:
    """The webhook-ids the receiver had two pushes of in flight at one moment."""
    by_id: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (headers, _), span in zip(receiver.requests, receiver.spans, strict=True):
        by_id[headers["webhook-id"]].append(span)
    return {
        webhook_id: sorted(spans)
        for webhook_id, spans in by_id.items()
        if any(b[0] < a[1] for a, b in itertools.pairwise(sorted(spans)))
    }


def _cdr_ids(receiver: Receiver) -> set[str]:
    return {orjson.loads(body)["cdr_id"] for _, body in receiver.requests}


async def _pushes_made(notifier: ServiceProcess) -> float:
    """The notifier's own count of push attempts, from its /metrics."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{notifier.url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cdrflow_notifier_push_attempts_total{")
    )


async def test_two_notifiers_never_push_one_delivery_at_the_same_time(
    pipeline: dict[str, ServiceProcess],
    notifier_factory: Callable[[str], ServiceProcess],
    db: asyncpg.Connection,
) -> None:
    total = 1000
    ingest, rater = pipeline["ingest"], pipeline["rater"]
    replicas = [notifier_factory("notifier-a"), notifier_factory("notifier-b")]
    await _ready(*replicas)
    tenant = await create_tenant(rater.url)
    receiver = Receiver(delay=lambda n: 0.02)
    await receiver.start()
    try:
        await _subscribe(replicas[0].url, tenant, receiver.url)
        codes = list((await submit_all(ingest.url, tenant, total, prefix="n")).values())
        assert codes.count("0") == total, f"ingest answers: {set(codes)}"

        async def all_delivered() -> bool:
            return len(_cdr_ids(receiver)) >= total and total == await _count(
                db,
                "SELECT count(*) FROM delivery WHERE database_id = $1 AND status = 'delivered'",
                tenant.database_id,
            )

        await wait_for(all_delivered, timeout=60, interval=0.2, what="every CDR delivered")

        assert _cdr_ids(receiver) == await _stored_cdr_ids(db, tenant.database_id)
        overlapping = _overlapping(receiver)
        assert not overlapping, f"pushed twice at once: {list(overlapping.items())[:5]}"
        made = [await _pushes_made(proc) for proc in replicas]
        assert all(n > 0 for n in made), f"push attempts per replica: {made}"
    finally:
        await receiver.stop()
