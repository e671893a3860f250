"""A record a consumer cannot process is kept once in rejected_event, with where it came from
and its bytes, and the records around it are stored: for the rater and for the notifier,
including when the batch is replayed after a crash before the offset commit."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_notifier.consumer import DeliveryRecorder
from cdr_rater.consumer import RatingHandler
from cdrmodel.db import asyncpg_dsn
from cdrmodel.events import CdrRated, new_cdr_id
from cdrmodel.kafka import RATED, SUBMITTED, topic_name
from tests.conftest import Infra, Stack
from tests.helpers import ADMIN_TOKEN, Tenant, unique_id, wait_for
from tests.records import consumer_record, submitted

NAMESPACE = "poison."  # the rater's publish step goes here, away from the shared stack


@pytest.fixture(scope="module", autouse=True)
def poison_topics(infra: Infra) -> Iterator[None]:
    infra.create_topics(NAMESPACE)
    yield


async def _bare_tenant(db: asyncpg.Connection) -> str:
    """A tenant with no packages: its CDRs are stored unrated, which is all these tests need."""
    database_id = unique_id("PZ")
    await db.execute("INSERT INTO tenant (database_id, name) VALUES ($1, 'poison')", database_id)
    return database_id


async def _rejected(db: asyncpg.Connection, stage: str) -> list[tuple[int, str, bytes]]:
    rows = await db.fetch(
        'SELECT "offset", reason, value, error FROM rejected_event WHERE stage = $1'
        ' ORDER BY "offset"',
        stage,
    )
    assert all(r["error"] for r in rows), "every rejection says why"
    return [(r["offset"], r["reason"], r["value"]) for r in rows]


async def test_rater_keeps_each_poison_record_once_and_stores_its_neighbours(
    engine: AsyncEngine, db: asyncpg.Connection, producer: AIOKafkaProducer, infra: Infra
) -> None:
    database_id = await _bare_tenant(db)
    stage = unique_id("rater-test-")
    good = [submitted(database_id, "ACC", external_id=f"g{i}") for i in range(4)]
    nul = submitted(database_id, "ACC", external_id="bad\x00id")  # PostgreSQL text refuses NUL
    orphan = submitted("NO_SUCH_" + uuid.uuid4().hex[:8], "ACC")
    malformed = b'{"cdr_id": "not even a uuid"'
    values = [
        good[0].model_dump_json().encode(),
        good[1].model_dump_json().encode(),
        malformed,
        nul.model_dump_json().encode(),
        good[2].model_dump_json().encode(),
        orphan.model_dump_json().encode(),
        good[3].model_dump_json().encode(),
    ]
    records = [
        consumer_record(SUBMITTED, 100 + i, v, key=database_id.encode())
        for i, v in enumerate(values)
    ]
    rated_topic = topic_name(RATED, NAMESPACE)
    handler = RatingHandler(engine, producer, rated_topic, stage=stage)

    await handler.handle(records)
    await handler.handle(records)  # replayed, as after a crash before the offset commit

    stored = await db.fetch("SELECT cdr_id FROM cdr WHERE database_id = $1", database_id)
    assert {r["cdr_id"] for r in stored} == {e.cdr_id for e in good}
    assert await _rejected(db, stage) == [
        (102, "malformed", malformed),
        (103, "unstorable", values[3]),
        (105, "unknown_tenant", values[5]),
    ]
    # The neighbours were published on cdr.rated.v1 after their commit.
    published = await _rated_ids(infra, rated_topic, database_id, expect=len(good))
    assert published == {e.cdr_id for e in good}


async def _rated_ids(infra: Infra, topic: str, database_id: str, *, expect: int) -> set[uuid.UUID]:
    reader = AIOKafkaConsumer(
        topic, bootstrap_servers=infra.bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await reader.start()
    seen: set[uuid.UUID] = set()
    try:

        async def collected() -> bool:
            for part in (await reader.getmany(timeout_ms=200)).values():
                for rec in part:
                    event = CdrRated.model_validate_json(rec.value)
                    if event.database_id == database_id:
                        seen.add(event.cdr_id)
            return len(seen) >= expect

        await wait_for(collected, timeout=30, what="the rated events")
    finally:
        await reader.stop()
    return seen


async def test_notifier_keeps_each_poison_event_once_and_records_its_neighbours(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    database_id = await _bare_tenant(db)
    # Nothing listens on port 9: should a dispatcher push these, the attempts just fail.
    await db.execute(
        "INSERT INTO subscription (database_id, subscription_id, url, secret)"
        " VALUES ($1, 'crm', 'http://127.0.0.1:9/hook', 'whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAA')",
        database_id,
    )
    stage = unique_id("notifier-test-")

    def rated(feed_id: int, **record: object) -> CdrRated:
        return CdrRated(
            cdr_id=new_cdr_id(),
            database_id=database_id,
            feed_id=feed_id,
            record={"caller": "100", **record},
        )

    good = [rated(i + 1) for i in range(4)]
    nul = rated(10, caller="1\x00")  # jsonb refuses \u0000
    overflow = rated(2**63)  # over bigint: PostgreSQL refuses the feed_id
    malformed = b"\xff\xfe not json"
    events: list[CdrRated | bytes] = [good[0], malformed, good[1], nul, good[2], overflow, good[3]]
    values = [e if isinstance(e, bytes) else e.model_dump_json().encode() for e in events]
    records = [consumer_record(RATED, 7 + i, v, partition=3) for i, v in enumerate(values)]
    recorder = DeliveryRecorder(engine, asyncio.Event(), stage=stage)

    await recorder.handle(records)
    await recorder.handle(records)  # replayed, as after a crash before the offset commit

    recorded = await db.fetch("SELECT cdr_id FROM delivery WHERE database_id = $1", database_id)
    assert sorted(r["cdr_id"] for r in recorded) == sorted(e.cdr_id for e in good)
    assert await _rejected(db, stage) == [
        (8, "malformed", malformed),
        (10, "unstorable", values[3]),
        (12, "unstorable", values[5]),
    ]


@pytest.mark.slow
async def test_running_services_list_their_rejected_events_to_the_admin(
    infra: Infra, stack: Stack, tenant: Tenant
) -> None:
    marker = uuid.uuid4().hex
    good = [submitted(tenant.database_id, tenant.account, external_id=f"g{i}") for i in range(3)]
    poison = b'{"poison": "' + marker.encode() + b'"}'
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap, acks="all")
    await producer.start()
    try:
        key = tenant.database_id.encode()  # one key: one partition, poison between good ones
        values = [good[0].model_dump_json().encode(), poison]
        values += [e.model_dump_json().encode() for e in good[1:]]
        for value in values:
            await producer.send(SUBMITTED, value, key=key)
        await producer.send(RATED, poison, key=key)
        await producer.flush()
    finally:
        await producer.stop()

    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(timeout=10, headers=headers) as client:

        async def listed(url: str, stage: str) -> list[dict[str, object]]:
            resp = await client.get(
                f"{url}/v1/admin/rejected-events", params={"stage": stage, "limit": 1000}
            )
            resp.raise_for_status()
            return [e for e in resp.json()["rejected_events"] if marker in str(e["value_preview"])]

        for url, stage, topic in (
            (stack.rater.url, "cdr-rater", SUBMITTED),
            (stack.notifier.url, "cdr-notifier", RATED),
        ):
            found = await wait_for(lambda u=url, s=stage: listed(u, s), what=f"{stage}'s rejection")
            assert len(found) == 1
            entry = found[0]
            assert (entry["stage"], entry["topic"], entry["reason"]) == (stage, topic, "malformed")
            assert base64.b64decode(str(entry["value_base64"])) == poison
            assert entry["key"] == tenant.database_id
            anonymous = await client.get(
                f"{url}/v1/admin/rejected-events", headers={"authorization": ""}
            )
            assert anonymous.status_code == 401

    conn = await asyncpg.connect(asyncpg_dsn(infra.database_url))
    try:

        async def all_stored() -> bool:
            count = await conn.fetchval(
                "SELECT count(*) FROM cdr WHERE database_id = $1", tenant.database_id
            )
            return bool(count == len(good))

        await wait_for(all_stored, what="the neighbours stored")
    finally:
        await conn.close()
