"""Dedupe (50421) and the daily limit (50429) of the compat endpoint, in process against the
real PostgreSQL and Tansu: retries, concurrency, tenants' days, two ingest apps, pruning."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager

from cdr_ingest.app import create_app
from cdr_ingest.dedupe import KIND_EXTERNAL_ID, key_for
from cdr_ingest.pruner import dedupe_pruner
from cdr_ingest.publisher import Publisher
from cdr_ingest.settings import IngestSettings
from cdrmodel.db import make_engine
from cdrmodel.events import CdrSubmitted, new_cdr_id
from cdrmodel.kafka import SUBMITTED, KafkaClient, make_producer, topic_name
from cdrmodel.supervisor import Supervisor
from tests.conftest import Infra
from tests.helpers import ADMIN_TOKEN, Tenant, create_tenant, wait_for
from tests.inprocess.conftest import Pipeline

SUBMIT = "/api_submitcdr.aspx"


@asynccontextmanager
async def extra_ingest(
    infra: Infra, pipeline: Pipeline, clock: Callable[[], datetime] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """Another ingest app (a second replica) on the pipeline's database and topics."""
    settings = IngestSettings(
        database_url=pipeline.database_url,
        kafka_bootstrap=infra.bootstrap,
        topic_namespace=pipeline.namespace,
        admin_token=ADMIN_TOKEN,
        db_pool_size=4,
    )
    app = create_app(settings, clock=clock)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://ingest2", timeout=30
        ) as client:

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await wait_for(ready, timeout=60, what="second ingest ready")
            yield client


async def _stored(pipeline: Pipeline, tenant: Tenant) -> list[dict[str, object]]:
    rows = await pipeline.sql(
        "SELECT cdr_id, external_id FROM cdr WHERE database_id = $1", tenant.database_id
    )
    return [dict(r) for r in rows]


async def _limited(pipeline: Pipeline, limit: int | None, timezone: str = "UTC") -> Tenant:
    return await create_tenant(pipeline.rater, daily_limit=limit, timezone=timezone)


async def test_resubmitted_external_id_answers_50421_and_is_stored_once(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    assert await pipeline.submit(tenant, ExternalID="dup1") == "0"
    # Other fields may differ: the ExternalID alone names the call.
    assert await pipeline.submit(tenant, ExternalID="dup1", Duration="5") == "50421"
    assert await pipeline.submit(tenant, ExternalID="dup2") == "0"
    stored = await pipeline.wait_stored(tenant, 2)
    assert sorted(r["external_id"] for r in stored) == ["dup1", "dup2"]


async def test_natural_key_with_start_time_answers_50421_in_any_accepted_form(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    assert await pipeline.submit(tenant, StartDateTime="2026-01-05 10:00:00") == "0"
    # The same instant written in the seed's other form is the same call.
    assert await pipeline.submit(tenant, StartDateTime="2026-Jan-05 10:00:00") == "50421"
    # A different duration, destination or start is another call.
    assert await pipeline.submit(tenant, StartDateTime="2026-01-05 10:00:00", Duration="91") == "0"
    assert await pipeline.submit(tenant, StartDateTime="2026-01-05 10:00:01") == "0"
    # An unreadable start time is still part of the key (stored unrated, deduped on its text).
    assert await pipeline.submit(tenant, StartDateTime="garbage") == "0"
    assert await pipeline.submit(tenant, StartDateTime="garbage") == "50421"
    await pipeline.wait_stored(tenant, 4)


async def test_without_start_time_or_external_id_a_record_is_never_a_duplicate(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    for _ in range(3):
        assert await pipeline.submit(tenant) == "0"
    assert len(await pipeline.wait_stored(tenant, 3)) == 3
    keys = await pipeline.sql(
        "SELECT count(*) AS n FROM ingest_key WHERE database_id = $1", tenant.database_id
    )
    assert keys[0]["n"] == 0


async def test_dedupe_is_per_tenant(pipeline: Pipeline, tenant: Tenant) -> None:
    other = await pipeline.tenant()
    assert await pipeline.submit(tenant, ExternalID="shared") == "0"
    assert await pipeline.submit(other, ExternalID="shared") == "0"
    assert await pipeline.submit(other, ExternalID="shared") == "50421"


async def test_100_concurrent_identical_submissions_answer_one_0_and_store_one(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    params = tenant.submit_params(ExternalID="same100")
    answers = await asyncio.gather(
        *(pipeline.ingest.get(SUBMIT, params=params) for _ in range(100))
    )
    codes = Counter(r.text for r in answers)
    assert codes == {"0": 1, "50421": 99}
    await pipeline.wait_stored(tenant, 1)
    rows = await pipeline.sql(
        "SELECT count(*) AS n FROM cdr WHERE database_id = $1", tenant.database_id
    )
    assert rows[0]["n"] == 1


def _event(tenant: Tenant, external_id: str) -> CdrSubmitted:
    return CdrSubmitted(
        cdr_id=new_cdr_id(),
        database_id=tenant.database_id,
        api_account=tenant.account,
        received_at=datetime.now(UTC),
        originating_number="100",
        destination_number="16138220000",
        duration=90,
        external_id=external_id,
    )


async def test_publish_many_reports_failure_when_not_connected_or_too_slow(
    infra: Infra, pipeline: Pipeline, tenant: Tenant
) -> None:
    topic = topic_name(SUBMITTED, pipeline.namespace)
    events = [_event(tenant, "p1"), _event(tenant, "p2")]
    never = KafkaClient(lambda: make_producer(infra.bootstrap), name="unstarted")
    assert await Publisher(never, topic, timeout=5).publish_many(events) == [False, False]
    supervisor = Supervisor("test")
    client = KafkaClient(lambda: make_producer(infra.bootstrap), name="producer")
    client.begin(supervisor)
    try:
        await asyncio.wait_for(client.get(), timeout=30)
        # No broker acknowledges within a microsecond: every record is reported failed.
        slow = Publisher(client, topic, timeout=1e-6)
        assert await slow.publish_many(events) == [False, False]
        assert await Publisher(client, topic, timeout=10).publish_many(events) == [True, True]
    finally:
        await supervisor.stop()
        await client.close()


async def test_unacknowledged_key_is_answered_0_with_its_cdr_id_and_stored_once(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    # A key whose first produce failed (or whose answer was lost): its row names a cdr_id,
    # never acknowledged. The retry produces that very id and is answered 0, not 50421.
    event = _event(tenant, "retry1")
    key = key_for(event, start_given=False)
    assert key is not None and key.kind == KIND_EXTERNAL_ID
    await pipeline.sql(
        "INSERT INTO ingest_key (database_id, key_hash, kind, cdr_id, api_account)"
        " VALUES ($1, $2, $3, $4, $5)",
        tenant.database_id,
        key.digest,
        key.kind,
        event.cdr_id,
        tenant.account,
    )
    assert await pipeline.submit(tenant, ExternalID="retry1") == "0"
    assert await pipeline.submit(tenant, ExternalID="retry1") == "50421"
    stored = await pipeline.wait_stored(tenant, 1)
    assert [r["cdr_id"] for r in stored] == [str(event.cdr_id)]


async def test_a_failed_produce_answers_50503_and_the_retry_is_answered_0_once(
    pipeline: Pipeline, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Publisher.publish_many
    failures = iter([True])

    async def once_failing(self: Publisher, events: list[CdrSubmitted]) -> list[bool]:
        if next(failures, False):
            return [False] * len(events)  # the broker did not acknowledge
        return await real(self, events)

    monkeypatch.setattr(Publisher, "publish_many", once_failing)
    assert await pipeline.submit(tenant, ExternalID="fail1") == "50503"
    assert await pipeline.submit(tenant, ExternalID="fail1") == "0"
    assert await pipeline.submit(tenant, ExternalID="fail1") == "50421"
    stored = await pipeline.wait_stored(tenant, 1)
    assert len(stored) == 1


async def test_daily_limit_answers_50429_after_the_limit_and_counts_only_accepted(
    pipeline: Pipeline,
) -> None:
    tenant = await _limited(pipeline, 3)
    assert await pipeline.submit(tenant, ExternalID="a") == "0"
    # Neither a duplicate nor a rejected record takes a slot.
    assert await pipeline.submit(tenant, ExternalID="a") == "50421"
    assert await pipeline.submit(tenant, Duration="-1") == "50416"
    assert await pipeline.submit(tenant) == "0"
    assert await pipeline.submit(tenant, ExternalID="b") == "0"
    assert await pipeline.submit(tenant, ExternalID="c") == "50429"
    assert await pipeline.submit(tenant) == "50429"
    # Duplicates still answer 50421 (before 50429 in the contract's order).
    assert await pipeline.submit(tenant, ExternalID="b") == "50421"
    # A record refused for the limit left no key: tomorrow it is accepted, not a duplicate.
    keys = await pipeline.sql(
        "SELECT count(*) AS n FROM ingest_key WHERE database_id = $1", tenant.database_id
    )
    assert keys[0]["n"] == 2
    await pipeline.wait_stored(tenant, 3)


async def test_null_daily_limit_is_unlimited_and_zero_refuses_all(pipeline: Pipeline) -> None:
    unlimited = await _limited(pipeline, None)
    answers = [await pipeline.submit(unlimited, ExternalID=f"u{i}") for i in range(5)]
    assert answers == ["0"] * 5
    closed = await _limited(pipeline, 0)
    assert await pipeline.submit(closed, ExternalID="z") == "50429"


async def test_a_failed_keyless_produce_gives_its_slot_back(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await _limited(pipeline, 1)

    async def failing(self: Publisher, events: list[CdrSubmitted]) -> list[bool]:
        return [False] * len(events)

    with monkeypatch.context() as patch:
        patch.setattr(Publisher, "publish_many", failing)
        assert await pipeline.submit(tenant) == "50503"
    assert await pipeline.submit(tenant) == "0"
    assert await pipeline.submit(tenant) == "50429"


async def test_the_daily_limit_day_is_the_tenants_calendar_day(
    infra: Infra, pipeline: Pipeline
) -> None:
    # New York: 04:30 UTC on 1 March is still 28 February there; 05:30 UTC is 1 March.
    tenant = await _limited(pipeline, 1, timezone="America/New_York")
    now = [datetime(2026, 3, 1, 4, 30, tzinfo=UTC)]
    async with extra_ingest(infra, pipeline, clock=lambda: now[0]) as ingest:

        async def submit(**fields: object) -> str:
            return (await ingest.get(SUBMIT, params=tenant.submit_params(**fields))).text

        assert await submit() == "0"
        now[0] += timedelta(minutes=30)  # 05:00 UTC, 00:00 in New York: the next day
        assert await submit() == "0"
        now[0] += timedelta(minutes=30)  # same UTC day as the first, same New York day as before
        assert await submit() == "50429"
    days = await pipeline.sql(
        "SELECT day, used FROM ingest_usage WHERE database_id = $1 ORDER BY day",
        tenant.database_id,
    )
    assert [(str(r["day"]), r["used"]) for r in days] == [("2026-02-28", 1), ("2026-03-01", 1)]


async def test_400_concurrent_submissions_on_two_ingest_apps_accept_exactly_the_limit(
    infra: Infra, pipeline: Pipeline
) -> None:
    tenant = await _limited(pipeline, 100)
    async with extra_ingest(infra, pipeline) as second:
        clients = [pipeline.ingest, second]

        async def one(i: int) -> str:
            params = tenant.submit_params(ExternalID=f"L{i}")
            return (await clients[i % 2].get(SUBMIT, params=params)).text

        answers = await asyncio.gather(*(one(i) for i in range(400)))
    assert Counter(answers) == {"0": 100, "50429": 300}
    stored = await pipeline.wait_stored(tenant, 100, limit=500)
    assert len(stored) == 100
    used = await pipeline.sql(
        "SELECT used FROM ingest_usage WHERE database_id = $1", tenant.database_id
    )
    assert [r["used"] for r in used] == [100]


async def test_the_pruner_deletes_old_keys_in_bounded_batches_and_keeps_recent_ones(
    pipeline: Pipeline,
) -> None:
    database_id = f"PRUNE{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    for i in range(25):
        await pipeline.sql(
            "INSERT INTO ingest_key (database_id, key_hash, kind, cdr_id, api_account,"
            " created_at) VALUES ($1, $2, 1, $3, 'A', $4)",
            database_id,
            f"old{i}".encode(),
            uuid.uuid4(),
            now - timedelta(days=91 + i),
        )
    await pipeline.sql(
        "INSERT INTO ingest_key (database_id, key_hash, kind, cdr_id, api_account, created_at)"
        " VALUES ($1, 'recent', 1, $2, 'A', $3)",
        database_id,
        uuid.uuid4(),
        now - timedelta(days=89),
    )
    await pipeline.sql(
        "INSERT INTO ingest_usage (database_id, api_account, day, used) VALUES"
        " ($1, 'A', $2, 5), ($1, 'A', $3, 7)",
        database_id,
        (now - timedelta(days=30)).date(),
        now.date(),
    )
    engine = make_engine(pipeline.database_url, pool_size=1)
    try:
        pruner = dedupe_pruner(engine, keep_days=90, batch=10, pause=0, interval=60)
        counts = await pruner.sweep(now)
    finally:
        await engine.dispose()
    # Other tests' keys are recent: the 25 old ones go 10 at a time, then the old counter.
    assert counts[:3] == [10, 10, 5] and all(n <= 10 for n in counts)
    left = await pipeline.sql("SELECT key_hash FROM ingest_key WHERE database_id = $1", database_id)
    assert [bytes(r["key_hash"]) for r in left] == [b"recent"]
    days = await pipeline.sql("SELECT used FROM ingest_usage WHERE database_id = $1", database_id)
    assert [r["used"] for r in days] == [7]
